"""Actions: the tool calls people decide, and the decisions themselves."""

import copy
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from chat import enqueue, metrics
from chat.eligibility import Ballots
from chat.errors import Conflict, Forbidden, Invalid, NotFound
from chat.models import Action, PolicyRule, User, Vote
from chat.text import storable
from chat.tools import InvalidCall, Reading, Scope, ToolSpec, preview_call, validate

from .access import can_see, id_or_none
from .audit import audit_record, audit_save, audit_write
from .events import action_emit, tool_result_emit
from .grants import grant_check, grant_clean, grant_create
from .locks import action_lock
from .notify import action_notify
from .policies import rule_copy, rule_resolve
from .requests import request_advance
from .tracing import approval_traced


def action_get(*, action_id: str, user: User) -> Action:
    action = (
        Action.objects.select_related("room", "request", "decided_by")
        # pk=None (a malformed id) matches no row; the stubs refuse None.
        .filter(pk=id_or_none(action_id))  # type: ignore[misc]
        .first()
    )
    if action is None or not can_see(room=action.room, user=user):
        raise NotFound("No such action.")
    return action


def action_list(
    *,
    user: User,
    status: str | None,
    room_slug: str | None,
    limit: int,
    awaiting_me: bool = False,
) -> list[Action]:
    """Actions the user may see, newest first: their rooms', or all for deciders.

    `awaiting_me`: only pending ones the user may still vote on, soonest to expire
    first (the inbox).
    """
    if status is not None and status not in Action.Status.values:
        raise Invalid(f"status must be one of {', '.join(Action.Status.values)}.")
    actions = Action.objects.select_related("room", "decided_by", "request")
    if not user.has_perm("chat.decide_action"):
        actions = actions.filter(room__memberships__user=user)
    if status:
        actions = actions.filter(status=status)
    if room_slug:
        actions = actions.filter(room__slug=room_slug)
    if awaiting_me:
        return _awaiting(actions, user, limit)
    return list(actions.order_by("-created")[:limit])


def _awaiting(actions: QuerySet[Action], user: User, limit: int) -> list[Action]:
    voted = Vote.objects.filter(
        action=OuterRef("pk"), user=user, ballot=OuterRef("ballot")
    )
    # The rule copied onto each action says who may vote; checked row by row, on
    # the few pending actions the query leaves.
    candidates = (
        actions.filter(status=Action.Status.PENDING)
        .exclude(Exists(voted))
        .order_by(F("expires_at").asc(nulls_last=True), "created")
    )
    rows = list(candidates[: limit * 4])
    ballots = Ballots(rows)
    return [action for action in rows if ballots.may_vote(action, user)][:limit]


def action_decide(
    *,
    action_id: str,
    user: User,
    decision: str,
    reason: str = "",
    arguments: dict[str, Any] | None = None,
    via: str = Action.Via.API,
    grant: object = None,
) -> Action:
    """`action_grant` without the grant's rule: the action as the vote left it."""
    return action_grant(
        action_id=action_id,
        user=user,
        decision=decision,
        reason=reason,
        arguments=arguments,
        via=via,
        grant=grant,
    )[0]


def action_grant(
    *,
    action_id: str,
    user: User,
    decision: str,
    reason: str = "",
    arguments: dict[str, Any] | None = None,
    via: str = Action.Via.API,
    grant: object = None,
) -> tuple[Action, PolicyRule | None]:
    """Record `user`'s vote on a pending action, under the rule copied onto it.

    The vote that completes the quorum (`approvals_required` distinct eligible
    users) approves it; one eligible deny ends it. A vote with other arguments is
    judged under the rule of those arguments, resolved as for a new call: refused
    (403, nothing changed) under `never` or when `user` may not vote under it;
    otherwise the action takes that rule, the arguments (validated like the model's,
    previewed afresh) replace the old, the earlier votes are cleared and this one
    counts for the new ones. Later votes get 409. A denial reaches the model as the
    tool's result, with the reason.

    `grant` (`{seconds}`, an approval only): the vote also makes an expiring `auto`
    rule for the action's tool and target, in the same transaction (chat.services.
    grants); returned beside the action. Refused with nothing recorded (400, 403)
    where it would lower a bar.
    """
    action = action_get(action_id=action_id, user=user)
    if decision not in ("approve", "deny"):
        raise Invalid("decision must be approve or deny.")
    reason = reason_clean(reason)
    seconds = None
    if grant is not None:
        seconds = grant_clean(
            grant, decision=decision, arguments=arguments, action=action
        )
    edit: tuple[ToolSpec, Reading] | None = None
    if arguments is not None:
        if decision != "approve":
            raise Invalid("Only an approval may edit the arguments.")
        try:
            spec = validate(action.tool, arguments)
        except InvalidCall as exc:
            raise Invalid(str(exc)) from None
        # Read before the lock: approvers see the edited call's target, not the
        # model's, and its rule is resolved by every name of that target.
        edit = (spec, preview_call(spec, arguments, Scope.of(action.room)))
    with transaction.atomic():
        locked = action_lock(action_id=action.pk)
        assert locked is not None  # actions are deleted only with their room
        request, action = locked
        # Who may vote and the votes so far, read once under the lock: the check,
        # the quorum and the room's event all answer from them.
        ballots = Ballots([action], requesters={action.pk: request.user_id})
        _check_may_vote(action, ballots, user)
        if action.status != Action.Status.PENDING:
            raise Conflict(f"This action is no longer pending: {_state(action)}.")
        if arguments is not None and arguments != action.arguments:
            assert edit is not None
            _judge_edit(action, *edit, arguments, ballots, user)
        elif any(v.user_id == user.pk for v in ballots.current_votes(action)):
            raise Conflict("You already voted on this action's current arguments.")
        if seconds is not None:
            grant_check(action=action, room=request.room, user=user)
        vote = Vote.objects.create(
            action=action,
            user=user,
            ballot=action.ballot,
            decision=decision,
            reason=reason,
            via=via,
        )
        ballots.record(action, vote)
        audited = [
            audit_record(
                room=action.room_id,
                kind="vote",
                actor=user,
                via=via,
                action=action,
                decision=decision,
                reason=reason,
            )
        ]
        # Only votes whose voters may still vote count (a removed or demoted
        # approver's vote is dropped, and would not count if it were not yet).
        approvals = len(ballots.approvals(action))
        if decision == "deny":
            _record_decision(action, user, Action.Status.DENIED, reason, via)
            tool_result_emit(action)
        elif approvals >= action.approvals_required:
            _record_decision(action, user, Action.Status.APPROVED, reason, via)
            _schedule(action)
        else:
            action.save()
            _log_vote(action, user, via, approvals)
        if action.status != Action.Status.PENDING:
            audited.append(
                audit_record(
                    room=action.room_id,
                    kind=action.status,  # approved, denied
                    actor=user,
                    via=via,
                    action=action,
                    reason=reason,
                )
            )
        # The vote and the decision it made: one seq bump, one insert.
        audit_save(*audited)
        # The room sees the vote; approvers outside it hear of a decision, or of
        # edited arguments that wait for their votes afresh.
        announced = action_emit(action, ballots)
        action_notify(action, announced)
        granted = None
        if seconds is not None:
            granted = grant_create(
                action=action, room=request.room, user=user, seconds=seconds, via=via
            )
    request_advance(request_id=action.request_id)
    return action, granted


def action_retract(
    *, action_id: str, user: User, reason: str = "", via: str = Action.Via.API
) -> Action:
    """Put an approved action that waits out its delay back to pending, no votes.

    Any user eligible to vote on it may; once its tool started or it ended, 409.
    The model hears of the retraction with the action's final result.
    """
    action = action_get(action_id=action_id, user=user)
    reason = reason_clean(reason)
    with transaction.atomic():
        locked = action_lock(action_id=action.pk)
        assert locked is not None
        request, action = locked
        ballots = Ballots([action], requesters={action.pk: request.user_id})
        _check_may_vote(action, ballots, user)
        waiting = action.status == Action.Status.APPROVED and action.runs_at
        if not waiting or action.runs_at <= timezone.now():  # type: ignore[operator]
            raise Conflict(
                "Only an approval still waiting out its delay can be retracted: "
                + _state(action)
                + "."
            )
        action.move_to(Action.Status.PENDING)
        action.ballot += 1
        action.ballot_started = timezone.now()
        action.runs_at = None
        action.decided_by, action.decided_at, action.decided_via = None, None, ""
        action.retractions = [
            *action.retractions,
            {
                "username": user.username,
                "at": timezone.now().isoformat(),
                "reason": reason,
            },
        ]
        action.save()
        audit_write(
            room=action.room_id,
            kind="retracted",
            actor=user,
            via=via,
            action=action,
            reason=reason,
        )
        LogEntry.objects.log_actions(
            user.pk,
            [action],
            CHANGE,
            single_object=True,
            change_message=f"Retracted the approval in the {via}. "
            + (f"Reason: {reason}" if reason else "No reason given."),
        )
        # Approvers outside the room hear that it waits for them again. (The
        # ballots read above: its votes were for the ballot this one replaced.)
        announced = action_emit(action, ballots)
        action_notify(action, announced)
    request_advance(request_id=action.request_id)
    return action


def _check_may_vote(
    action: Action, ballots: Ballots, user: User, edited: str = ""
) -> None:
    """403 unless `user` may vote under the rule on `action`; `edited` names the
    rule of an edit's arguments, which the refusal then speaks of."""
    detail = ballots.refusal(action, user)
    if detail is None:
        return
    if edited:
        detail = (
            f"{detail.rstrip('.')} (under the rule for the edited arguments: "
            f"{edited}); the edit was refused and nothing changed."
        )
    raise Forbidden(detail)


def _judge_edit(
    action: Action,
    spec: ToolSpec,
    reading: Reading,
    arguments: dict[str, Any],
    ballots: Ballots,
    user: User,
) -> None:
    """Put the action under the rule of the edited arguments, as for a new call (a
    rule that would run it at once asks this approval only), or refuse the edit:
    an edit must not walk a call past `never`, a quorum, four eyes, named
    approvers or a delay."""
    rule = rule_resolve(
        room_id=action.room_id, spec=spec, arguments=arguments, names=reading.names
    ).as_vote()
    if rule.mode == PolicyRule.Mode.NEVER:
        raise Forbidden(
            f"The room's policy never allows {spec.name} with these arguments "
            f"({rule.named}); the edit was refused and nothing changed."
        )
    # Judged on a copy: a refusal leaves the locked row as it was.
    judged = copy.copy(action)
    rule_copy(action=judged, rule=rule)
    _check_may_vote(judged, ballots, user, edited=rule.named)
    rule_copy(action=action, rule=rule)
    action.expires_at = timezone.now() + timedelta(seconds=rule.timeout)
    if action.proposed_arguments is None:
        action.proposed_arguments = action.arguments
    action.arguments = arguments
    action.preview = reading.preview
    action.ballot += 1  # the votes so far were for other arguments
    action.ballot_started = timezone.now()


def _schedule(action: Action) -> None:
    """Queue the approved tool call, at once or when its delay has passed."""
    if action.delay:
        action.runs_at = timezone.now() + timedelta(seconds=action.delay)
        action.save(update_fields=["runs_at"])
    delay = action.delay
    transaction.on_commit(
        lambda: enqueue.tool_call(
            action_id=action.pk, countdown=delay, trace=action.trace_context
        )
    )


def _state(action: Action) -> str:
    """What became of an action, as a clause: "it is already executing (approved by
    alice)", "it was already denied by bob", "it has expired"."""
    by = action.decided_by.username if action.decided_by else None
    status = Action.Status(action.status)
    if status == Action.Status.PENDING:
        return "it is pending, not approved"
    if status in (
        Action.Status.APPROVED,
        Action.Status.DENIED,
        Action.Status.CANCELLED,
    ):
        return f"it was already {status.value}" + (f" by {by}" if by else "")
    approved = f" (approved by {by})" if by else ""
    if status == Action.Status.EXECUTING:
        return f"it is already executing{approved}"
    if status == Action.Status.EXPIRED:
        return "it has expired"
    return f"it has already {status.value}{approved}"  # succeeded, failed


def reason_clean(reason: object) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > 2000 or not storable(reason):
        raise Invalid("reason must be text of at most 2000 characters.")
    return reason.strip()


def _record_decision(
    action: Action, user: User, status: str, reason: str, via: str
) -> None:
    action.move_to(status)
    action.decided_by, action.decided_at = user, timezone.now()
    action.decided_via, action.reason = via, reason
    approval_traced(action)
    action.save()
    if status == Action.Status.DENIED:
        metrics.action_ended(
            tool=action.tool, outcome=status, pending_since=action.created
        )
    else:
        metrics.approval_decided(
            tool=action.tool, decision=status, pending_since=action.created
        )
    _log_decision(action, user)


def _log_decision(action: Action, user: User) -> None:
    """Every decision, from any interface, also lands in Django's admin log."""
    verb = "Approved" if action.status == Action.Status.APPROVED else "Denied"
    parts = [f"{verb} in the {action.decided_via}."]
    parts.append(f"Reason: {action.reason}" if action.reason else "No reason given.")
    if action.edited:
        parts.append(
            f"Arguments edited from {action.proposed_arguments} to {action.arguments}."
        )
    LogEntry.objects.log_actions(
        user.pk, [action], CHANGE, change_message=" ".join(parts), single_object=True
    )


def _log_vote(action: Action, user: User, via: str, approvals: int) -> None:
    LogEntry.objects.log_actions(
        user.pk,
        [action],
        CHANGE,
        single_object=True,
        change_message=(
            f"Voted to approve in the {via} ({approvals} of "
            f"{action.approvals_required} approvals)."
        ),
    )


def action_expire_overdue() -> int:
    """Expire pending actions past their rule's `expires_at`; the model is told."""
    now = timezone.now()
    legacy = now - timedelta(seconds=settings.AGENT_APPROVAL_TIMEOUT)
    overdue = Action.objects.filter(status=Action.Status.PENDING).filter(
        Q(expires_at__lte=now) | Q(expires_at__isnull=True, created__lt=legacy)
    )
    expired = 0
    for action_id, request_id in overdue.values_list("id", "request_id")[:200]:
        with transaction.atomic():
            locked = action_lock(action_id=action_id)
            if locked is None or locked[1].status != Action.Status.PENDING:
                continue
            action = locked[1]
            action.move_to(Action.Status.EXPIRED)
            action.decided_at, action.decided_via = timezone.now(), Action.Via.SYSTEM
            approval_traced(action)
            action.save()
            # Under the lock and after the status check: once per action, however
            # many sweeps overlap.
            audit_write(
                room=action.room_id,
                kind="expired",
                actor="system",
                via="system",
                action=action,
            )
            metrics.action_ended(
                tool=action.tool, outcome=action.status, pending_since=action.created
            )
            announced = action_emit(action)
            action_notify(action, announced)
            tool_result_emit(action)
        request_advance(request_id=request_id)
        expired += 1
    return expired
