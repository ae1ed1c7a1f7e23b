"""How actions, messages and requests look on the wire: the room's events, the
snapshot, the webhooks' bodies and the REST answers all carry these payloads.

Built here, in the domain, as typed data ready for JSON (ids and datetimes as
strings), so that the services announce a change without the API layer; the REST
serializers (chat/api/serializers.py) answer the same dicts, and only describe them for
the OpenAPI schema. An action's `approvals` and `eligible` come from `Ballots`, read
once for many actions: building many payloads costs a fixed number of queries.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypedDict

from django.utils import timezone

from .eligibility import Ballots
from .links import decide_url
from .models import Action, Message, PolicyRule, Request


class ApprovalPayload(TypedDict):
    username: str
    at: str


class ActionPayload(TypedDict):
    id: str
    request: str
    room: str  # the room's slug
    tool: str
    pack: str
    arguments: dict[str, Any]
    proposed_arguments: dict[str, Any] | None
    requires_approval: bool
    preview: dict[str, Any] | None
    status: str
    decided_by: str | None
    decided_at: str | None
    decided_via: str  # "" until decided
    reason: str
    result: Any
    error: str
    created: str
    approvals_required: int
    approvals: list[ApprovalPayload]
    approvers: list[str] | None
    requester_may_approve: bool
    expires_at: str | None
    runs_at: str | None
    escalate_to: list[str] | None
    escalates_at: str | None
    escalated_at: str | None
    eligible: list[str]
    rule: dict[str, Any] | None
    retractions: list[dict[str, Any]]
    decide_url: str


class RulePayload(TypedDict):
    """A rule of a room's approval policy, as the API lists it and `policy` events
    carry it."""

    id: str
    tool: str
    arguments: dict[str, Any]
    mode: str
    approvals_required: int
    approvers: list[str]
    requester_may_approve: bool
    timeout: int | None
    delay: int
    escalate_after: int | None
    escalate_to: list[str]
    expires_at: str | None
    expired: bool
    created_by: str | None
    created: str
    source_action: str | None


class PolicyPayload(TypedDict):
    """What a `policy` event and a `policy.changed` webhook say of a change."""

    change: str  # created, updated, deleted, granted, expired
    rule: RulePayload
    actor: str  # a username, or "system"
    action: str | None  # a grant's action


class MessagePayload(TypedDict):
    id: str
    role: str
    content: str
    author: str | None
    request: str | None
    action: str | None  # a tool message's action (the call it answers)
    created: str


class RequestPayload(TypedDict):
    """The small form of a request that `request` events carry."""

    id: str
    status: str
    error: str
    # null for a person's request; what posted it otherwise (contract: "Who posts
    # them").
    trigger: dict[str, Any] | None


def iso(value: datetime | None) -> str | None:
    """A datetime as the API has always written it: ISO 8601 in the current time
    zone, microseconds kept, UTC as `Z` (DRF's DateTimeField)."""
    if value is None:
        return None
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def action_payload(action: Action, ballots: Ballots | None = None) -> ActionPayload:
    """`action` as it now is; `ballots`: its votes and voters as the caller read
    them (read here, in four queries, when not given)."""
    if ballots is None or action.pk not in ballots.actions:
        ballots = Ballots([action])
    decided_by = action.decided_by.username if action.decided_by else None
    approvals = [
        ApprovalPayload(username=a["username"], at=a["at"])
        for a in ballots.approvals(action)
    ]
    approvers = action.approvers
    return ActionPayload(
        id=str(action.pk),
        request=str(action.request_id),
        room=action.room.slug,
        tool=action.tool,
        pack=action.pack,
        arguments=action.arguments,
        proposed_arguments=action.proposed_arguments,
        requires_approval=bool(action.requires_approval),
        preview=action.preview,
        status=str(action.status),
        decided_by=decided_by,
        decided_at=iso(action.decided_at),
        decided_via=str(action.decided_via),
        reason=action.reason,
        result=action.result,
        error=action.error,
        created=_when(action.created),
        approvals_required=int(action.approvals_required),
        approvals=approvals,
        approvers=None if approvers is None else [str(n) for n in approvers],
        requester_may_approve=bool(action.requester_may_approve),
        expires_at=iso(action.expires_at),
        runs_at=iso(action.runs_at),
        escalate_to=None
        if action.escalate_to is None
        else [str(n) for n in action.escalate_to],
        escalates_at=iso(action.escalates_at),
        escalated_at=iso(action.escalated_at),
        eligible=ballots.eligible(action),
        rule=action.rule,
        retractions=action.retractions,
        decide_url=decide_url(action),
    )


def action_payloads(actions: Iterable[Action]) -> list[ActionPayload]:
    """Many actions' payloads; their ballots read once for all."""
    actions = list(actions)
    ballots = Ballots(actions)
    return [action_payload(action, ballots) for action in actions]


def rule_payload(rule: PolicyRule, now: datetime | None = None) -> RulePayload:
    created_by = rule.created_by.username if rule.created_by else None
    return RulePayload(
        id=str(rule.pk),
        tool=rule.tool,
        arguments=rule.arguments or {},
        mode=str(rule.mode),
        approvals_required=int(rule.approvals_required),
        approvers=[str(n) for n in rule.approvers or []],
        requester_may_approve=bool(rule.requester_may_approve),
        timeout=rule.timeout,
        delay=int(rule.delay),
        escalate_after=rule.escalate_after,
        escalate_to=[str(n) for n in rule.escalate_to or []],
        expires_at=iso(rule.expires_at),
        expired=rule.expired_at(now or timezone.now()),
        created_by=created_by,
        created=_when(rule.created),
        source_action=None
        if rule.source_action_id is None
        else str(rule.source_action_id),
    )


def message_payload(message: Message) -> MessagePayload:
    author = message.author.username if message.author else None
    return MessagePayload(
        id=str(message.pk),
        role=str(message.role),
        content=message.content,
        author=author,
        request=None if message.request_id is None else str(message.request_id),
        action=None if message.action_id is None else str(message.action_id),
        created=_when(message.created),
    )


def request_payload(request: Request) -> RequestPayload:
    return RequestPayload(
        id=str(request.pk),
        status=str(request.status),
        error=request.error,
        trigger=request.trigger,
    )


def _when(value: datetime) -> str:
    text = iso(value)
    assert text is not None
    return text
