"""Actions: the tool calls people decide, and the decisions themselves."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat import enqueue
from chat.errors import Conflict, Forbidden, Invalid, NotFound
from chat.models import Action
from chat.text import storable
from chat.tools import InvalidCall, validate

from .access import can_decide, can_see, id_or_none
from .events import action_emit, tool_result_emit
from .locks import action_lock
from .requests import request_advance


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
    *, user: User, status: str | None, room_slug: str | None, limit: int
) -> list[Action]:
    """Actions the user may see, newest first: their rooms', or all for deciders."""
    if status is not None and status not in Action.Status.values:
        raise Invalid(f"status must be one of {', '.join(Action.Status.values)}.")
    actions = Action.objects.select_related("room", "decided_by")
    if not user.has_perm("chat.decide_action"):
        actions = actions.filter(room__memberships__user=user)
    if status:
        actions = actions.filter(status=status)
    if room_slug:
        actions = actions.filter(room__slug=room_slug)
    return list(actions.order_by("-created")[:limit])


def action_decide(
    *,
    action_id: str,
    user: User,
    decision: str,
    reason: str = "",
    arguments: dict[str, Any] | None = None,
    via: str = Action.Via.API,
) -> Action:
    """Approve or deny a pending action; the first decision wins, later ones get 409.

    An approval may edit the arguments (validated like the model's); the tool then
    runs with them and the model is told. A denial reaches the model as the tool's
    result, with the reason.
    """
    action = action_get(action_id=action_id, user=user)
    if not can_decide(room=action.room, user=user):
        raise Forbidden("Only approvers of this room may decide its actions.")
    if decision not in ("approve", "deny"):
        raise Invalid("decision must be approve or deny.")
    reason = _clean_reason(reason)
    if arguments is not None:
        if decision != "approve":
            raise Invalid("Only an approval may edit the arguments.")
        try:
            validate(action.tool, arguments)
        except InvalidCall as exc:
            raise Invalid(str(exc)) from None
    with transaction.atomic():
        locked = action_lock(action_id=action.pk)
        assert locked is not None  # actions are deleted only with their room
        action = locked[1]
        if action.status != Action.Status.PENDING:
            raise Conflict(f"This action is no longer pending: {_state(action)}.")
        _record_decision(action, user, decision, reason, arguments, via)
        action_emit(action)
        if decision == "deny":
            tool_result_emit(action)
        else:
            transaction.on_commit(lambda: enqueue.tool_call(action_id=action.pk))
    request_advance(request_id=action.request_id)
    return action


def _state(action: Action) -> str:
    """What became of an action, as a clause: "it is already executing (approved by
    alice)", "it was already denied by bob", "it has expired"."""
    by = action.decided_by.username if action.decided_by else None
    status = Action.Status(action.status)
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


def _clean_reason(reason: object) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > 2000 or not storable(reason):
        raise Invalid("reason must be text of at most 2000 characters.")
    return reason.strip()


def _record_decision(
    action: Action,
    user: User,
    decision: str,
    reason: str,
    arguments: dict[str, Any] | None,
    via: str,
) -> None:
    approve = decision == "approve"
    action.move_to(Action.Status.APPROVED if approve else Action.Status.DENIED)
    action.decided_by, action.decided_at = user, timezone.now()
    action.decided_via, action.reason = via, reason
    if arguments is not None and arguments != action.arguments:
        action.proposed_arguments, action.arguments = action.arguments, arguments
    action.save()
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


def action_expire_overdue() -> int:
    """Expire actions nobody decided in AGENT_APPROVAL_TIMEOUT; the model is told."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENT_APPROVAL_TIMEOUT)
    overdue = Action.objects.filter(status=Action.Status.PENDING, created__lt=cutoff)
    expired = 0
    for action_id, request_id in overdue.values_list("id", "request_id")[:200]:
        with transaction.atomic():
            locked = action_lock(action_id=action_id)
            if locked is None or locked[1].status != Action.Status.PENDING:
                continue
            action = locked[1]
            action.move_to(Action.Status.EXPIRED)
            action.decided_at, action.decided_via = timezone.now(), Action.Via.SYSTEM
            action.save()
            action_emit(action)
            tool_result_emit(action)
        request_advance(request_id=request_id)
        expired += 1
    return expired
