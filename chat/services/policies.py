"""A room's approval policy: rules as data, and which rule a tool call falls under.

The REST API, the admin's inline and the room page's panel all write rules through
`policy_create` / `policy_update`, which validate with `rule_clean`; the turn copies
the resolved rule onto each action it creates (`rule_resolve`), so changing the
policy later does not change actions already proposed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat.errors import Forbidden, Invalid, NotFound
from chat.models import Action, PolicyRule, Room, User
from chat.payloads import PolicyPayload, RulePayload, rule_payload
from chat.realtime import event_emit
from chat.tools import Scope, ToolSpec, catalogue, name_of, target_names
from chat.tools.spec import unstorable

from .access import can_decide, id_or_none
from .audit import audit_write
from .notify import policy_notify

FIELDS = set(PolicyRule.FIELDS)
MAX_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Resolution:
    """The approval rule an action is created under, as copied onto it."""

    mode: str
    approvals_required: int = 1
    approvers: list[str] | None = None
    requester_may_approve: bool = True
    timeout: int = 0
    delay: int = 0
    escalate_after: int | None = None
    escalate_to: list[str] | None = None
    rule_id: str | None = None
    # The rule in words, for refusals that must name it; not copied onto the action.
    summary: str = field(default="", compare=False)

    def describe(self) -> dict[str, Any]:
        described = asdict(self)
        del described["summary"]
        return described

    @property
    def named(self) -> str:
        """How a refusal names it: "rule 7, delete_issue with {...}: never"."""
        return f"rule {self.rule_id}, {self.summary}" if self.rule_id else self.summary

    def as_vote(self) -> Resolution:
        """The rule as an approver's edit meets it: one that runs at once still
        needs the editor's approval, and only that."""
        if self.mode != PolicyRule.Mode.AUTO:
            return self
        return replace(self, mode=PolicyRule.Mode.ASK, approvals_required=1)


def rule_resolve(
    *,
    room_id: int,
    spec: ToolSpec,
    arguments: dict[str, Any],
    names: Iterable[str] = (),
) -> Resolution:
    """The rule a call falls under: a named tool beats "*", then more matching
    argument keys beat fewer, then the newest wins; with none, the tool's default.

    `names`: what the call's pack knows its target by (a Linear issue's identifier
    and id), besides the argument's own value; a rule's value for the target
    matches any of them.
    """
    known = target_names(spec, arguments, names)
    best: tuple[tuple[int, int, float], PolicyRule] | None = None
    rules = PolicyRule.objects.filter(room_id=room_id, tool__in=[spec.name, "*"])
    # From its expires_at on a rule matches nothing, whether or not the sweep has
    # reported the expiry yet.
    for rule in rules.filter(_in_force(timezone.now())):
        if not _matches(rule, spec, arguments, known):
            continue
        rank = (rule.tool != "*", len(rule.arguments or {}), rule.created.timestamp())
        if best is None or rank > best[0]:
            best = (rank, rule)
    timeout = settings.AGENT_APPROVAL_TIMEOUT
    if best is None:
        mode = PolicyRule.Mode.ASK if spec.needs_approval else PolicyRule.Mode.AUTO
        return Resolution(
            mode=mode, timeout=timeout, summary=f"the default for {spec.name}: {mode}"
        )
    rule = best[1]
    if spec.pinned_changed and rule.mode == PolicyRule.Mode.AUTO:
        # A tool whose listing changed since it was pinned asks until the change is
        # accepted: no `auto` rule lowers it (a `never` or an `ask` rule stands).
        return Resolution(
            mode=PolicyRule.Mode.ASK,
            timeout=timeout,
            summary=(f"{spec.name} changed since it was pinned: ask"),
        )
    return Resolution(
        mode=rule.mode,
        approvals_required=rule.approvals_required,
        approvers=list(rule.approvers) or None,
        requester_may_approve=rule.requester_may_approve,
        timeout=rule.timeout or timeout,
        delay=rule.delay,
        escalate_after=rule.escalate_after,
        escalate_to=list(rule.escalate_to or []) or None,
        rule_id=str(rule.pk),
        summary=rule_summary(rule),
    )


def _in_force(now: datetime) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def _matches(
    rule: PolicyRule, spec: ToolSpec, arguments: dict[str, Any], names: tuple[str, ...]
) -> bool:
    """Each of the rule's keys matches the call's value (trimmed, strings caseless;
    the target by any of its names); an `auto` rule also covers every argument
    but the target, so that allowing a state change does not allow a rewrite."""
    wanted = rule.arguments or {}
    if not isinstance(wanted, dict):
        return False
    for key, value in wanted.items():
        if key not in arguments:
            return False
        if key == spec.target:
            if name_of(value) not in names:
                return False
        elif _canonical(value) != _canonical(arguments[key]):
            return False
    if wanted and rule.mode == PolicyRule.Mode.AUTO:
        return set(arguments) - {spec.target} <= set(wanted)
    return True


def _canonical(value: object) -> object:
    """A JSON value as rules compare it: strings trimmed and caseless, at any depth;
    true stays apart from 1."""
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), repr(_canonical(v))) for k, v in value.items()))
    return value


def rule_copy(*, action: Action, rule: Resolution) -> None:
    """Copy the rule's fields onto the action (in memory, unsaved): who may vote,
    how many must approve, the delay; the turn does it for a new call and an
    approver's edit for the edited one."""
    action.rule = rule.describe() if rule.rule_id else None
    action.requires_approval = rule.mode == PolicyRule.Mode.ASK
    action.approvals_required = rule.approvals_required
    action.approvers = rule.approvers
    action.requester_may_approve = rule.requester_may_approve
    action.delay = rule.delay
    if action.escalated_at is None:
        # An edit does not undo an escalation; before one, the edit's rule says
        # whether and when it escalates (counted from the action's creation).
        after = rule.escalate_after if rule.mode == PolicyRule.Mode.ASK else None
        action.escalate_to = rule.escalate_to if after else None
        since = action.created or timezone.now()
        action.escalates_at = since + timedelta(seconds=after) if after else None


def policy_names_target(*, room_id: int, spec: ToolSpec) -> bool:
    """Whether a rule of the room that may apply to `spec` names its target, so the
    call's target must be read (its other names) before its rule is resolved."""
    if spec.target is None:
        return False
    return PolicyRule.objects.filter(
        _in_force(timezone.now()),
        room_id=room_id,
        tool__in=[spec.name, "*"],
        arguments__has_key=spec.target,
    ).exists()


def rule_clean(data: object, *, partial: bool = False) -> dict[str, Any]:
    """Check a rule's fields as a client sent them; the clean values, or Invalid."""
    if not isinstance(data, dict):
        raise Invalid("A rule is a JSON object.")
    read_only = set(data) & set(PolicyRule.READ_ONLY)
    if read_only:
        raise Invalid(f"Read-only field(s): {', '.join(sorted(read_only))}.")
    unknown = set(data) - FIELDS
    if unknown:
        raise Invalid(f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}.")
    if not partial and "tool" not in data:
        raise Invalid('tool: a tool name (GET /api/tools) or "*" is required.')
    clean: dict[str, Any] = {}
    if "tool" in data:
        tool = data["tool"]
        if not isinstance(tool, str) or (tool != "*" and tool not in catalogue()):
            raise Invalid(f'tool: unknown tool {tool!r}; see GET /api/tools, or "*".')
        clean["tool"] = tool
    if "arguments" in data:
        arguments = data["arguments"]
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict) or len(str(arguments)) > 2000:
            raise Invalid("arguments: an object of argument values to match.")
        if unstorable(arguments):
            # PostgreSQL's jsonb cannot hold NUL or broken Unicode; no tool takes it.
            raise Invalid("arguments: NUL characters or invalid Unicode.")
        clean["arguments"] = arguments
    if "mode" in data:
        if data["mode"] not in PolicyRule.Mode.values:
            raise Invalid("mode: one of ask, auto, never.")
        clean["mode"] = data["mode"]
    if "approvals_required" in data:
        clean["approvals_required"] = _integer(data, "approvals_required", 1, 50)
    if "approvers" in data:
        clean["approvers"] = _usernames(data["approvers"])
    if "requester_may_approve" in data:
        if not isinstance(data["requester_may_approve"], bool):
            raise Invalid("requester_may_approve: true or false.")
        clean["requester_may_approve"] = data["requester_may_approve"]
    if "timeout" in data:
        clean["timeout"] = (
            None
            if data["timeout"] is None
            else _integer(data, "timeout", 1, MAX_SECONDS)
        )
    if "delay" in data:
        clean["delay"] = _integer(data, "delay", 0, 24 * 3600)
    if "escalate_after" in data:
        clean["escalate_after"] = (
            None
            if data["escalate_after"] is None
            else _integer(data, "escalate_after", 1, MAX_SECONDS)
        )
    if "escalate_to" in data:
        names = _usernames(data["escalate_to"], "escalate_to")
        if len(names) > 20:
            raise Invalid("escalate_to: at most 20 usernames.")
        clean["escalate_to"] = names
    if "expires_at" in data:
        clean["expires_at"] = _future(data["expires_at"])
    return clean


def _future(value: object) -> datetime | None:
    """An ISO 8601 time in the future (naive: UTC), or None."""
    if value is None:
        return None
    when = value if isinstance(value, datetime) else None
    if isinstance(value, str) and len(value) <= 64:
        try:
            when = parse_datetime(value.strip())
        except ValueError:
            when = None
    if when is None:
        raise Invalid("expires_at: an ISO 8601 time, or null.")
    try:
        if timezone.is_naive(when):
            when = timezone.make_aware(when, UTC)
        # Stored in UTC: a time whose offset takes it past year 9999 cannot be.
        when = when.astimezone(UTC)
    except (OverflowError, ValueError):
        raise Invalid("expires_at: an ISO 8601 time, or null.") from None
    if when <= timezone.now():
        raise Invalid("expires_at: must be in the future.")
    return when


def rule_check_scope(*, room: Room, tool: str) -> None:
    """Refuse a rule naming a tool the room's packs do not offer (Invalid): it
    could never apply, and would read as if the room used that tool."""
    if tool == "*" or tool in catalogue(Scope.of(room)):
        return
    raise Invalid(
        f"tool: {tool!r} is not offered in this room (its packs: "
        f"{', '.join(room.packs)}); see GET /api/tools?room={room.slug}."
    )


def _integer(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data[name]
    # bool is an int in Python, not in JSON.
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise Invalid(f"{name}: an integer from {low} to {high}.")
    return value


def _usernames(value: object, name: str = "approvers") -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{name}: a list of usernames.")
    names = sorted(set(value))
    known = set(
        User.objects.filter(username__in=names).values_list("username", flat=True)
    )
    missing = [n for n in names if n not in known]
    if missing:
        raise Invalid(f"{name}: no user {', '.join(map(repr, missing))}.")
    return names


def policy_list(*, room: Room) -> list[PolicyRule]:
    return list(room.policy_rules.select_related("created_by").order_by("created"))


def policy_create(
    *, room: Room, actor: User, data: object, via: str = Action.Via.API
) -> PolicyRule:
    """Add a rule to the room's policy; approvers (and deciders) only."""
    _check_may_edit(room, actor)
    clean = rule_clean(data)
    rule_check_scope(room=room, tool=clean["tool"])
    rule = PolicyRule(room=room, created_by=actor, **clean)
    rule_check_consistent(rule)
    with transaction.atomic():
        rule.save()
        policy_changed(room=room, change="created", rule=rule, actor=actor, via=via)
    return rule


def policy_update(
    *,
    room: Room,
    actor: User,
    rule_id: str,
    data: object,
    via: str = Action.Via.API,
) -> PolicyRule:
    _check_may_edit(room, actor)
    clean = rule_clean(data, partial=True)
    if "tool" in clean:
        rule_check_scope(room=room, tool=clean["tool"])
    with transaction.atomic():
        rule = _rule_get(room, rule_id, lock=True)
        for field, value in clean.items():
            setattr(rule, field, value)
        rule_check_consistent(rule)
        rule_saved(rule)
        policy_changed(room=room, change="updated", rule=rule, actor=actor, via=via)
    return rule


def policy_delete(
    *, room: Room, actor: User, rule_id: str, via: str = Action.Via.API
) -> None:
    _check_may_edit(room, actor)
    with transaction.atomic():
        rule = _rule_get(room, rule_id, lock=True)
        policy_deleted(rule=rule, actor=actor, via=via)


def rule_saved(rule: PolicyRule) -> None:
    """Save a changed rule; one whose expires_at moved to the future (or away) is
    reported again when it next expires."""
    if not rule.expired_at(timezone.now()):
        rule.expiry_reported_at = None
    rule.save()


def policy_deleted(
    *, rule: PolicyRule, actor: User | None, via: str = Action.Via.API
) -> None:
    """Delete a rule and report it (as it was), in the caller's transaction."""
    room = Room.objects.get(pk=rule.room_id)
    gone = rule_payload(rule)
    rule.delete()
    policy_changed(
        room=room, change="deleted", rule=rule, actor=actor, shown=gone, via=via
    )


def policy_changed(
    *,
    room: Room,
    change: str,
    rule: PolicyRule,
    actor: User | None,
    action: Action | None = None,
    shown: RulePayload | None = None,
    via: str = Action.Via.API,
    data: dict[str, object] | None = None,
) -> PolicyPayload:
    """Announce a change of the room's policy, in the transaction that made it: the
    room's durable `policy` event and the `policy.changed` webhooks. Every path
    that changes a policy (the API, the room page through it, the admin, a grant,
    an expiry) comes here. `actor` None: the system (an expiry). `shown`: the rule
    as the event shows it (a deleted one, as it was)."""
    payload = PolicyPayload(
        change=change,
        rule=shown or rule_payload(rule),
        actor=actor.username if actor is not None else "system",
        action=None if action is None else str(action.pk),
    )
    event = event_emit(room_id=room.pk, type="policy", payload=payload)
    policy_notify(room=room, payload=payload, change=f"{room.pk}:{event.seq}")
    audit_write(
        room=room,
        kind=f"policy.{change}",
        actor=actor,
        via=via,
        action=action,
        # The rule as the event shows it (a deleted one has no row any more).
        rule=payload["rule"],
        data=data,
    )
    return payload


def _rule_get(room: Room, rule_id: str, lock: bool = False) -> PolicyRule:
    rules = room.policy_rules.all()
    if lock:
        rules = rules.select_for_update(no_key=True)
    rule = rules.filter(pk=id_or_none(rule_id)).first()  # type: ignore[misc]
    if rule is None:
        raise NotFound("No such rule.")
    return rule


def _check_may_edit(room: Room, actor: User) -> None:
    if not can_decide(room=room, user=actor):
        raise Forbidden("Only approvers of this room may change its policy.")


def rule_check_consistent(rule: PolicyRule) -> None:
    """Refuse a rule whose fields contradict each other (Invalid)."""
    if rule.approvers and rule.approvals_required > len(rule.approvers):
        raise Invalid(
            f"approvals_required is {rule.approvals_required} but only "
            f"{len(rule.approvers)} approvers are named: no action could be approved."
        )
    if bool(rule.escalate_after) != bool(rule.escalate_to):
        raise Invalid(
            "escalate_after and escalate_to: give both (or neither): when an action "
            "escalates, and to whom."
        )
    if rule.escalate_after and rule.mode != PolicyRule.Mode.ASK:
        raise Invalid(
            f"escalate_after: only ask rules escalate; this rule is {rule.mode}."
        )


def rule_summary(rule: PolicyRule) -> str:
    """A rule in words, for the model and the admin."""
    target = "any tool" if rule.tool == "*" else rule.tool
    if rule.arguments:
        target += f" with {rule.arguments}"
    return f"{target}: {rule.mode}"


__all__ = [
    "Resolution",
    "policy_changed",
    "policy_deleted",
    "policy_names_target",
    "rule_check_consistent",
    "rule_saved",
    "rule_copy",
    "policy_create",
    "policy_delete",
    "policy_list",
    "policy_update",
    "rule_check_scope",
    "rule_clean",
    "rule_resolve",
    "rule_summary",
]
