"""The write path: every change to rooms, requests and actions goes through here.

The REST views, the WebSocket consumer, the admin and the worker all call these
functions, so each rule (who may decide, the first decision wins, what a cancel
stops) is written once. Lock order, to keep PostgreSQL free of deadlocks:
request row, then action rows, then the room row (taken by `event_emit`).
"""

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from . import redis as rds
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import Action, Membership, Message, Request, Room
from .realtime import event_emit
from .serializers import ActionSerializer, MessageSerializer, request_event
from .text import storable

logger = logging.getLogger(__name__)

ACTIVE_ACTIONS = (
    Action.Status.PENDING,
    Action.Status.APPROVED,
    Action.Status.EXECUTING,
)


# Who may do what -------------------------------------------------------------------


def room_role(*, room: Room, user: AbstractBaseUser) -> str | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(room=room, user=user)
        .values_list("role", flat=True)
        .first()
    )


def room_get_for_member(*, slug: str, user: AbstractBaseUser) -> Room:
    """The room if `user` belongs to it; outsiders cannot tell it from a missing one."""
    room = Room.objects.filter(slug=slug).first()
    if room is None or room_role(room=room, user=user) is None:
        raise NotFound("No such room.")
    return room


def can_decide(*, room: Room, user: AbstractBaseUser) -> bool:
    if user.has_perm("chat.decide_action"):
        return True
    return room_role(room=room, user=user) == Membership.Role.APPROVER


def _can_see(*, room: Room, user: AbstractBaseUser) -> bool:
    return room_role(room=room, user=user) is not None or user.has_perm(
        "chat.decide_action"
    )


# Rooms -----------------------------------------------------------------------------


def room_create(*, user: AbstractBaseUser, name: str, slug: str = "") -> Room:
    """Create a room; its creator is its first approver."""
    name = name.strip()
    if not name or len(name) > 120 or not storable(name + slug):
        raise Invalid("A room needs a name of 1 to 120 characters.")
    slug = slugify(slug or name)[:60]
    if not slug:
        raise Invalid("The slug must contain letters or digits.")
    with transaction.atomic():
        if Room.objects.filter(slug=slug).exists():
            raise Conflict(f"A room with the slug {slug!r} already exists.")
        room = Room.objects.create(slug=slug, name=name, created_by=user)
        Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return room


def member_add(
    *, room: Room, actor: AbstractBaseUser, username: str, role: str
) -> Membership:
    """Add someone to a room, or change their role; approvers only."""
    from django.contrib.auth import get_user_model

    if room_role(room=room, user=actor) != Membership.Role.APPROVER:
        raise Forbidden("Only approvers of this room may add members.")
    if role not in Membership.Role.values:
        raise Invalid(f"role must be one of {', '.join(Membership.Role.values)}.")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise Invalid(f"There is no user {username!r}.")
    membership, _ = Membership.objects.update_or_create(
        room=room, user=user, defaults={"role": role}
    )
    return membership


# Requests --------------------------------------------------------------------------


def request_start(*, room: Room, user: AbstractBaseUser, text: str) -> Request:
    """Post a member's message and queue the agent's turn for it.

    The turn is enqueued only after the transaction commits, so a worker never
    looks for a request that is not there yet; web processes never wait for the model.
    """
    if room_role(room=room, user=user) is None:
        raise NotFound("No such room.")
    if not isinstance(text, str) or not text.strip():
        raise Invalid("The message is empty.")
    if not storable(text):
        raise Invalid("The message contains a NUL character or invalid Unicode.")
    if len(text) > settings.AGENT_MAX_INPUT_CHARS:
        raise Invalid(
            f"The message is longer than {settings.AGENT_MAX_INPUT_CHARS} characters."
        )
    with transaction.atomic():
        request = Request.objects.create(room=room, user=user)
        message = Message.objects.create(
            room=room,
            request=request,
            role=Message.Role.USER,
            content=text,
            author=user,
        )
        message_emit(message)
        request_emit(request)
        transaction.on_commit(lambda: enqueue_step(request))
    return request


def request_get(*, request_id: str, user: AbstractBaseUser) -> Request:
    request = (
        Request.objects.select_related("room", "user").filter(pk=request_id).first()
    )
    if request is None or not _can_see(room=request.room, user=user):
        raise NotFound("No such request.")
    return request


def request_cancel(*, request_id: str, user: AbstractBaseUser) -> Request:
    """Stop a request: its stream within a second, its pending actions at once."""
    request = request_get(request_id=request_id, user=user)
    if request.user_id != user.pk and not can_decide(room=request.room, user=user):
        raise Forbidden("Only its author or an approver may cancel a request.")
    with transaction.atomic():
        request = (
            Request.objects.select_for_update()
            .select_related("room")
            .get(pk=request.pk)
        )
        if request.ended:
            raise Conflict(f"The request already ended ({request.status}).")
        request.status = Request.Status.CANCELLED
        request.lease_token, request.lease_until = "", None
        request.save(update_fields=["status", "lease_token", "lease_until", "updated"])
        stopped = Action.objects.filter(
            request=request, status__in=[Action.Status.PENDING, Action.Status.APPROVED]
        )
        for action in stopped.select_related("room", "decided_by"):
            action.status = Action.Status.CANCELLED
            action.save(update_fields=["status", "updated"])
            action_emit(action)
        request_emit(request)
        transaction.on_commit(lambda: _signal_cancel(request))
    return request


def _signal_cancel(request: Request) -> None:
    # The streaming worker polls this flag; the database says the same, more slowly.
    try:
        rds.client().set(rds.key("cancel", request.pk), 1, ex=3600)
    except Exception:
        logger.exception("could not flag the cancel of %s in Redis", request.pk)


def request_advance(*, request_id: str) -> None:
    """Set a request's status from its latest actions; go on once all are settled.

    Called whenever one of its actions changes. Enqueuing the next step twice is
    harmless: the step task claims its step and finds nothing to do the second time.
    """
    with transaction.atomic():
        request = Request.objects.select_for_update().get(pk=request_id)
        if request.ended:
            return
        statuses = set(
            request.actions.filter(step=request.step - 1).values_list(
                "status", flat=True
            )
        )
        status = (
            Request.Status.AWAITING_APPROVAL
            if Action.Status.PENDING in statuses
            else Request.Status.RUNNING
        )
        if status != request.status:
            request.status = status
            request.save(update_fields=["status", "updated"])
            request_emit(request)
        if not statuses.intersection(ACTIVE_ACTIONS):
            transaction.on_commit(lambda: enqueue_step(request))


def request_finish(*, request: Request, status: str, error: str = "") -> None:
    """End a request (inside the caller's transaction, with its row locked)."""
    request.status = status
    request.error = error
    request.lease_token, request.lease_until = "", None
    request.save(
        update_fields=["status", "error", "lease_token", "lease_until", "updated"]
    )
    request_emit(request)


# Actions ---------------------------------------------------------------------------


def action_get(*, action_id: str, user: AbstractBaseUser) -> Action:
    action = (
        Action.objects.select_related("room", "request", "decided_by")
        .filter(pk=action_id)
        .first()
    )
    if action is None or not _can_see(room=action.room, user=user):
        raise NotFound("No such action.")
    return action


def action_list(
    *, user: AbstractBaseUser, status: str | None, room_slug: str | None, limit: int
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
    user: AbstractBaseUser,
    decision: str,
    reason: str = "",
    arguments: dict | None = None,
    via: str = Action.Via.API,
) -> Action:
    """Approve or deny a pending action; the first decision wins, later ones get 409.

    An approval may edit the arguments (validated like the model's); the tool then
    runs with them and the model is told. A denial reaches the model as the tool's
    result, with the reason.
    """
    from tasks.tools import InvalidCall, validate

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
        Request.objects.select_for_update().filter(pk=action.request_id).first()
        action = Action.objects.select_related("room", "request").get(pk=action.pk)
        if action.status != Action.Status.PENDING:
            who = f" by {action.decided_by}" if action.decided_by else ""
            raise Conflict(
                f"This action is no longer pending: it was {action.status}{who}."
            )
        _record_decision(action, user, decision, reason, arguments, via)
        action_emit(action)
        if decision == "deny":
            tool_result_emit(action)
        else:
            transaction.on_commit(lambda: enqueue_action(action))
    request_advance(request_id=action.request_id)
    return action


def _clean_reason(reason: object) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > 2000 or not storable(reason):
        raise Invalid("reason must be text of at most 2000 characters.")
    return reason.strip()


def _record_decision(
    action: Action,
    user: AbstractBaseUser,
    decision: str,
    reason: str,
    arguments: dict | None,
    via: str,
) -> None:
    approve = decision == "approve"
    action.status = Action.Status.APPROVED if approve else Action.Status.DENIED
    action.decided_by, action.decided_at = user, timezone.now()
    action.decided_via, action.reason = via, reason
    if arguments is not None and arguments != action.arguments:
        action.proposed_arguments, action.arguments = action.arguments, arguments
    action.save()
    _log_decision(action, user)


def _log_decision(action: Action, user: AbstractBaseUser) -> None:
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
            Request.objects.select_for_update().filter(pk=request_id).first()
            action = Action.objects.select_related("room").get(pk=action_id)
            if action.status != Action.Status.PENDING:
                continue
            action.status = Action.Status.EXPIRED
            action.decided_at, action.decided_via = timezone.now(), Action.Via.SYSTEM
            action.save()
            action_emit(action)
            tool_result_emit(action)
        request_advance(request_id=request_id)
        expired += 1
    return expired


# Events ----------------------------------------------------------------------------


def message_emit(message: Message) -> None:
    event_emit(
        room_id=message.room_id, type="message", payload=MessageSerializer(message).data
    )


def action_emit(action: Action) -> None:
    event_emit(
        room_id=action.room_id, type="action", payload=ActionSerializer(action).data
    )


def request_emit(request: Request) -> None:
    event_emit(room_id=request.room_id, type="request", payload=request_event(request))


def tool_result_content(action: Action) -> str:
    """What the model reads as the result of its tool call."""
    body: dict = {"tool": action.tool, "status": action.status}
    if action.status == Action.Status.SUCCEEDED:
        body["result"] = action.result
    elif action.status == Action.Status.FAILED:
        body["error"] = action.error
    elif action.status == Action.Status.DENIED:
        body.update(
            denied=True,
            reason=action.reason or "(no reason given)",
            note=f"{action.decided_by} denied this action; it did not run.",
        )
    elif action.status == Action.Status.EXPIRED:
        body["note"] = (
            "Nobody approved this action in time; it expired and did not run."
        )
    if action.edited:
        body["edited"] = {
            "proposed": action.proposed_arguments,
            "ran_with": action.arguments,
        }
        body["note"] = "A person edited your call's arguments before approving it."
    return json.dumps(body, ensure_ascii=False, default=str)


def tool_result_emit(action: Action) -> Message:
    message = Message.objects.create(
        room_id=action.room_id,
        request_id=action.request_id,
        role=Message.Role.TOOL,
        content=tool_result_content(action),
        tool_call_id=action.tool_call_id,
    )
    message_emit(message)
    return message


# Enqueueing ------------------------------------------------------------------------


def enqueue_step(request: Request) -> None:
    """Queue the request's next model call; a lost enqueue is found by the sweep."""
    from tasks.tasks import run_step

    try:
        run_step.delay(str(request.pk), request.step)
    except Exception:
        logger.exception("could not enqueue step %s of %s", request.step, request.pk)


def enqueue_action(action: Action) -> None:
    from tasks.tasks import execute_action

    try:
        execute_action.delay(str(action.pk))
    except Exception:
        logger.exception("could not enqueue action %s", action.pk)
