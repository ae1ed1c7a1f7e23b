"""Requests: a member's message and the agent's turn for it, until it ends."""

import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agentsite import telemetry
from chat import enqueue, metrics
from chat.eligibility import Ballots
from chat.errors import Conflict, Forbidden, Invalid, NotFound, TooMany
from chat.models import Action, Message, Request, Room, User
from chat.redis_client import redis_client, redis_key
from chat.text import storable

from .access import can_decide, can_see, id_or_none, room_role
from .audit import audit_write
from .bots import room_bot
from .events import action_emit, message_emit, request_emit
from .leases import lease_end
from .locks import request_lock
from .notify import action_notify, request_notify
from .tracing import approval_traced

logger = logging.getLogger(__name__)


def request_start(*, room: Room, user: User, text: object) -> Request:
    """Post a member's message and queue the agent's turn for it.

    The turn is enqueued only after the transaction commits, so a worker never
    looks for a request that is not there yet; web processes never wait for the model.
    """
    if room_role(room=room, user=user) is None:
        raise NotFound("No such room.")
    if not isinstance(text, str):
        raise Invalid("text must be a string.")
    if not text.strip():
        raise Invalid("The message is empty.")
    if not storable(text):
        raise Invalid("The message contains a NUL character or invalid Unicode.")
    if len(text) > settings.AGENT_MAX_INPUT_CHARS:
        raise Invalid(
            f"The message is longer than {settings.AGENT_MAX_INPUT_CHARS} characters."
        )
    _check_daily_tokens(user)
    _check_pending_limit(user)
    with transaction.atomic():
        request = Request.objects.create(
            room=room, user=user, trace_context=telemetry.carrier()
        )
        telemetry.tag(request_id=request.pk, room=room.slug)
        message = Message.objects.create(
            room=room,
            request=request,
            role=Message.Role.USER,
            content=text,
            author=user,
        )
        message_emit(message)
        request_emit(request)
        # Last, so the user's row is locked only for the count and the commit: posts
        # of one user in many rooms do not queue behind each other's room locks.
        _check_active_limit(user, request)
        transaction.on_commit(
            lambda: enqueue.model_step(
                request_id=request.pk, step=request.step, trace=request.trace_context
            )
        )
    return request


def request_start_triggered(
    *, room: Room, text: str, trigger: dict[str, Any]
) -> Request:
    """Post `text` as the room's bot for a trigger or a schedule slot, and queue the
    agent's turn (contract: "Who posts them").

    `trigger` is the request's `trigger` field ({"kind": "webhook", ...} or
    {"kind": "schedule", ...}); the worker reads it to tell the model the message came
    from an outside event. Runs in the caller's transaction, so the delivery id or
    the slot it claims commits with the request or not at all. The bot is not held
    to the per-user limits: the trigger's rate and one request per slot bound it.
    """
    if not text.strip():
        raise Invalid("The message is empty.")
    if not storable(text):
        raise Invalid("The message contains a NUL character or invalid Unicode.")
    text = text[: settings.AGENT_MAX_INPUT_CHARS]
    bot = room_bot(room)
    with transaction.atomic():
        request = Request.objects.create(
            room=room, user=bot, trigger=trigger, trace_context=telemetry.carrier()
        )
        telemetry.tag(request_id=request.pk, room=room.slug)
        message = Message.objects.create(
            room=room,
            request=request,
            role=Message.Role.USER,
            content=text,
            author=bot,
        )
        message_emit(message)
        request_emit(request)
        transaction.on_commit(
            lambda: enqueue.model_step(
                request_id=request.pk, step=request.step, trace=request.trace_context
            )
        )
    return request


def _check_active_limit(user: User, new: Request) -> None:
    """At most AGENT_MAX_ACTIVE_PER_USER requests queued or running per user.

    Each costs a model call and holds a worker's slot; one awaiting approval holds
    neither. The user's row is locked so that a burst of posts is counted one by one;
    a refusal rolls the new request back with everything it emitted (events are
    published only after a commit).
    """
    # FOR NO KEY UPDATE, not FOR UPDATE: rows that reference the user (this very
    # request, its message) take KEY SHARE on its row, which FOR UPDATE would wait for
    # (a deadlock under a burst of posts, seen on PostgreSQL); posts of one user still
    # take this lock one at a time.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).first()
    limit = settings.AGENT_MAX_ACTIVE_PER_USER
    active = (
        Request.objects.filter(
            user=user, status__in=[Request.Status.QUEUED, Request.Status.RUNNING]
        )
        .exclude(pk=new.pk)
        .count()
    )
    if active >= limit:
        raise TooMany(
            f"You have {active} requests queued or running (the limit is {limit}); "
            "wait for one to finish or cancel one."
        )


def _check_pending_limit(user: User) -> None:
    """No new request while the user's requests have AGENT_MAX_PENDING_PER_USER
    actions pending: each one is mailed and webhooked to every approver and listed
    in every snapshot, so a member must not park hundreds of them.

    Requests already under way may still propose actions (several per answer), so
    the count can pass the cap; it stops new posts only.
    """
    limit = settings.AGENT_MAX_PENDING_PER_USER
    pending = Action.objects.filter(
        request__user=user, status=Action.Status.PENDING
    ).count()
    if pending >= limit:
        raise TooMany(
            f"Your requests have {pending} actions waiting for a decision (the "
            f"limit is {limit}); post again once some are decided or cancelled."
        )


def _check_daily_tokens(user: User) -> None:
    """At most AGENT_DAILY_TOKENS_PER_USER model tokens per user per UTC day (0: no
    limit), as the model reported them (`usage`) on the user's requests of the day.

    A turn under way may take the user past it; the next one is refused.
    """
    budget = settings.AGENT_DAILY_TOKENS_PER_USER
    if budget <= 0:
        return
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    spent = sum(
        int(usage.get("total_tokens", 0))
        for usage in Request.objects.filter(user=user, created__gte=today)
        .exclude(usage={})
        .values_list("usage", flat=True)
    )
    if spent >= budget:
        raise TooMany(
            f"You have used {spent} of your {budget} model tokens for today "
            "(AGENT_DAILY_TOKENS_PER_USER); the budget renews at midnight UTC."
        )


def request_get(*, request_id: str, user: User) -> Request:
    request = (
        Request.objects.select_related("room", "user")
        # pk=None (a malformed id) matches no row; the stubs refuse None.
        .filter(pk=id_or_none(request_id))  # type: ignore[misc]
        .first()
    )
    if request is None or not can_see(room=request.room, user=user):
        raise NotFound("No such request.")
    return request


def request_cancel(
    *, request_id: str, user: User, via: str = Action.Via.API
) -> Request:
    """Stop a request: its stream within a second, its pending actions at once."""
    request = request_get(request_id=request_id, user=user)
    if request.user_id != user.pk and not can_decide(room=request.room, user=user):
        raise Forbidden("Only its author or an approver may cancel a request.")
    with transaction.atomic():
        locked = request_lock(request_id=request.pk)
        assert locked is not None  # requests are deleted only with their room
        request = locked
        if request.ended:
            raise Conflict(f"The request already ended ({request.status}).")
        request.move_to(Request.Status.CANCELLED)
        lease_end(request)
        request.save(update_fields=["status", "lease_token", "lease_until", "updated"])
        stopped = Action.objects.filter(
            request=request, status__in=[Action.Status.PENDING, Action.Status.APPROVED]
        )
        stopped_list = list(stopped.select_related("room", "decided_by"))
        # Read once for all their events.
        ballots = Ballots(stopped_list, {a.pk: request.user_id for a in stopped_list})
        for action in stopped_list:
            waiting = action.status == Action.Status.PENDING
            action.move_to(Action.Status.CANCELLED)
            if waiting:
                approval_traced(action)
            action.save(update_fields=["status", "trace_context", "updated"])
            audit_write(
                room=request.room_id,
                kind="cancelled",
                actor=user,
                via=via,
                request=request.pk,
                action=action,
            )
            metrics.action_ended(
                tool=action.tool,
                outcome=action.status,
                pending_since=action.created if waiting else None,
            )
            announced = action_emit(action, ballots)
            action_notify(action, announced)
        request_emit(request)
        request_notify(request)
        metrics.request_ended(request.status)
        transaction.on_commit(lambda: _signal_cancel(request))
    return request


def _signal_cancel(request: Request) -> None:
    # The streaming worker polls this flag; the database says the same, more slowly.
    try:
        redis_client().set(redis_key("cancel", request.pk), 1, ex=3600)
    except Exception:
        logger.exception("could not flag the cancel of %s in Redis", request.pk)


def request_advance(*, request_id: uuid.UUID | str) -> None:
    """Set a request's status from its latest actions; go on once all are settled.

    Called whenever one of its actions changes. Enqueuing the next step twice is
    harmless: the step task claims its step and finds nothing to do the second time.
    """
    with transaction.atomic():
        request = request_lock(request_id=request_id)
        if request is None or request.ended:
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
            request.move_to(status)
            request.save(update_fields=["status", "updated"])
            request_emit(request)
        if not statuses.intersection(Action.ACTIVE):
            transaction.on_commit(
                lambda: enqueue.model_step(
                    request_id=request.pk,
                    step=request.step,
                    trace=request.trace_context,
                )
            )


def request_finish(*, request: Request, status: str, error: str = "") -> None:
    """End a request (inside the caller's transaction, with its row locked)."""
    request.move_to(status)
    request.error = error
    lease_end(request)
    request.save(
        update_fields=["status", "error", "lease_token", "lease_until", "updated"]
    )
    request_emit(request)
    request_notify(request)
    metrics.request_ended(status)
    if status == Request.Status.FAILED:
        _log_failed(request)


def _log_failed(request: Request) -> None:
    ids = {"request_id": str(request.pk), "room": request.room.slug}
    error = request.error
    transaction.on_commit(
        lambda: logger.error(
            "request %s failed: %s", ids["request_id"], error, extra=ids
        )
    )
