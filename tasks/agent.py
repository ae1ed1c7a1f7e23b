"""The agent's turn as small steps whose state lives in the database.

`run_step` makes one model call; `execute_action` runs one tool call. Each claims its
row with a lease before doing anything, so a redelivered or duplicated task finds the
work taken or done; `sweep` hands work whose lease ran out (a dead worker) to another.
"""

import json
import logging
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat import redis as rds
from chat import services
from chat.models import Action, Message, Request
from chat.realtime import delta_send, partial_clear

from .context import build_context
from .errors import PermanentError, ServiceError, TransientError
from .heartbeat import Heartbeat
from .openai_client import Completion, Stopped, stream_chat
from .tools import TOOLS, InvalidCall, linear_client, preview, validate

logger = logging.getLogger(__name__)
Status = Request.Status


# One model call --------------------------------------------------------------------


def run_step(*, request_id: str, step: int) -> None:
    """Make model call number `step` of a request and record what it answered."""
    request = _claim_request(request_id, step)
    if request is None:
        return
    if request.step >= settings.AGENT_MAX_STEPS:
        _end_request(
            request,
            Status.FAILED,
            (
                f"The agent stopped after {settings.AGENT_MAX_STEPS} steps without "
                "finishing "
                "(AGENT_MAX_STEPS). Ask again with a narrower request."
            ),
        )
        return
    relay = DeltaRelay(request)
    heartbeat = Heartbeat(
        renew=lambda until: _renew_request(request, until),
        cancel_key=rds.key("cancel", request.pk),
        tick=relay.flush_due,
    )
    heartbeat.on_lost = relay.stop.set
    try:
        with heartbeat:
            if request.attempts > 1:
                relay.reset()
            completion = stream_chat(
                build_context(request),
                [t.openai_spec() for t in TOOLS.values()],
                on_text=relay.add,
                stop=relay.stop,
                on_open=relay.set_closer,
            )
            relay.flush()
    except Stopped:
        return
    except TransientError:
        _release_request(request)
        raise
    except PermanentError as exc:
        _end_request(request, Status.FAILED, str(exc))
        return
    _record_answer(request, completion)


def step_gave_up(*, request_id: str, step: int, error: str) -> None:
    """Fail the request when its model call kept failing after every retry."""
    with transaction.atomic():
        request = Request.objects.select_for_update().get(pk=request_id)
        if not request.ended and request.step == step:
            services.request_finish(request=request, status=Status.FAILED, error=error)


def _claim_request(request_id: str, step: int) -> Request | None:
    now = timezone.now()
    with transaction.atomic():
        # Only the request's row is locked (`of`); the room's comes last, in
        # event_emit. The room is read here so that no query follows the commit.
        request = (
            Request.objects.select_for_update(of=("self",))
            .select_related("room")
            .filter(pk=request_id)
            .first()
        )
        if (
            request is None
            or request.step != step
            or request.ended
            or request.status == Status.AWAITING_APPROVAL
            or (request.lease_until and request.lease_until > now)
            # A step's actions are created as the request moves past it: step 0,
            # every turn's first, has none to wait for.
            or (step > 0 and request.actions.filter(status__in=Action.ACTIVE).exists())
        ):
            return None
        if request.attempts >= settings.AGENT_MAX_ATTEMPTS:
            services.request_finish(
                request=request,
                status=Status.FAILED,
                error=(
                    f"The agent's worker failed {request.attempts} times on this "
                    "request; "
                    "giving up."
                ),
            )
            return None
        previous = request.status
        request.status = Status.RUNNING
        request.lease_token = uuid.uuid4().hex
        request.lease_until = now + timedelta(seconds=settings.AGENT_LEASE_SECONDS)
        request.attempts += 1
        request.save(
            update_fields=[
                "status",
                "lease_token",
                "lease_until",
                "attempts",
                "updated",
            ]
        )
        if previous != Status.RUNNING:
            services.request_emit(request)
    return request


def _renew_request(request: Request, until: object) -> bool:
    return bool(
        Request.objects.filter(
            pk=request.pk, lease_token=request.lease_token, status=Status.RUNNING
        ).update(lease_until=until)
    )


def _release_request(request: Request) -> None:
    # Let the retry claim at once instead of waiting for the lease to run out.
    Request.objects.filter(pk=request.pk, lease_token=request.lease_token).update(
        lease_until=None
    )


def _locked_if_ours(request: Request) -> Request | None:
    locked = (
        Request.objects.select_for_update().select_related("room").get(pk=request.pk)
    )
    if locked.status != Status.RUNNING or locked.lease_token != request.lease_token:
        return None  # cancelled meanwhile, or our lease ran out and another took over
    return locked


def _end_request(request: Request, status: str, error: str = "") -> None:
    with transaction.atomic():
        if locked := _locked_if_ours(request):
            services.request_finish(request=locked, status=status, error=error)
            transaction.on_commit(lambda: partial_clear(request.draft_message_id))


def _record_answer(request: Request, completion: Completion) -> None:
    calls = [_check_call(call) for call in completion.tool_calls]
    previews = {
        c["id"]: _preview(c) for c in calls if c["tool"] and c["tool"].needs_approval
    }
    with transaction.atomic():
        locked = _locked_if_ours(request)
        if locked is None:
            return
        _store_assistant_message(locked, completion, calls)
        actions = [_create_action(locked, c, previews.get(c["id"])) for c in calls]
        locked.step += 1
        locked.attempts = 0
        locked.lease_token, locked.lease_until = "", None
        locked.usage = _add_usage(locked.usage, completion.usage)
        locked.save()
        if not calls:
            services.request_finish(request=locked, status=Status.COMPLETED)
        for action in filter(None, actions):
            services.action_emit(action)
            if action.status == Action.Status.EXECUTING:
                transaction.on_commit(lambda a=action: services.enqueue_action(a))
        transaction.on_commit(lambda: partial_clear(request.draft_message_id))
    if calls:
        services.request_advance(request_id=request.pk)


def _check_call(call: object) -> dict:
    """Validate a tool call; an invalid one answers the model, never an action."""
    entry = {
        "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
        "name": call.name,
        "arguments": call.arguments,
        "tool": None,
        "parsed": None,
        "error": "",
    }
    try:
        parsed = json.loads(call.arguments or "{}")
        entry["tool"] = validate(call.name, parsed)
        entry["parsed"] = parsed
    except json.JSONDecodeError:
        entry["error"] = f"The arguments of {call.name} are not valid JSON."
    except InvalidCall as exc:
        entry["error"] = str(exc)
    return entry


def _preview(call: dict) -> dict | None:
    try:
        return preview(call["tool"], call["parsed"])
    except ServiceError as exc:
        return {"unavailable": str(exc)}


def _store_assistant_message(
    request: Request, completion: Completion, calls: list
) -> None:
    message = Message.objects.create(
        id=request.draft_message_id,
        room_id=request.room_id,
        request=request,
        role=Message.Role.ASSISTANT,
        content=completion.text,
        tool_calls=[
            {"id": c["id"], "name": c["name"], "arguments": c["arguments"]}
            for c in calls
        ],
    )
    if message.content:
        services.message_emit(message)
    for call in calls:
        if call["error"]:
            error = Message.objects.create(
                room_id=request.room_id,
                request=request,
                role=Message.Role.TOOL,
                tool_call_id=call["id"],
                content=json.dumps(
                    {"tool": call["name"], "status": "invalid", "error": call["error"]}
                ),
            )
            services.message_emit(error)


def _create_action(request: Request, call: dict, preview: dict | None) -> Action | None:
    tool = call["tool"]
    if tool is None:
        return None
    return Action.objects.create(
        request=request,
        room_id=request.room_id,
        step=request.step,
        tool=tool.name,
        tool_call_id=call["id"],
        arguments=call["parsed"],
        requires_approval=tool.needs_approval,
        preview=preview,
        status=Action.Status.PENDING
        if tool.needs_approval
        else Action.Status.EXECUTING,
    )


def _add_usage(total: dict, usage: dict) -> dict:
    keys = set(total) | set(usage)
    return {k: int(total.get(k, 0)) + int(usage.get(k, 0)) for k in sorted(keys)}


class DeltaRelay:
    """Publishes streamed text as `delta` events, coalesced but never held >50 ms."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.message_id = request.draft_message_id
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._pending = ""
        self._last = 0.0
        self._interval = settings.AGENT_DELTA_INTERVAL_MS / 1000
        self._closer = None

    def set_closer(self, close: object) -> None:
        self._closer = close

    def reset(self) -> None:
        # A retried call streams under the same message id: watchers clear the old text.
        self._send(0, "")

    def add(self, text: str) -> None:
        with self._lock:
            self._pending += text
            if time.monotonic() - self._last >= self._interval:
                self._flush_locked()

    def flush_due(self) -> None:
        if self.stop.is_set() and self._closer:
            self._closer()  # cut a silent stream short; the reader sees Stopped
            self._closer = None
        with self._lock:
            if self._pending and time.monotonic() - self._last >= self._interval:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self.stop.is_set():
            return
        text, self._pending = self._pending, ""
        self._send(self._sent, text)
        self._sent += len(text)
        self._last = time.monotonic()

    def _send(self, offset: int, text: str) -> None:
        delta_send(
            room_id=self.request.room_id,
            request_id=self.request.pk,
            message_id=self.message_id,
            offset=offset,
            text=text,
        )


# One tool call ---------------------------------------------------------------------


def execute_action(*, action_id: str) -> None:
    """Run an approved (or approval-free) tool call at most once.

    The claim is a lease with a token; a retry after a crash or a transient error
    first reads back whether the earlier attempt already took effect.
    """
    action = _claim_action(action_id)
    if action is None:
        return
    tool = TOOLS[action.tool]
    client = linear_client()
    heartbeat = Heartbeat(renew=lambda until: _renew_action(action, until))
    try:
        with heartbeat:
            result = None
            if action.attempts > 1 and tool.recover:
                result = tool.recover(client, action.arguments, action.pk)
            if result is None:
                result = tool.run(client, action.arguments, action.pk)
    except TransientError:
        Action.objects.filter(pk=action.pk, lease_token=action.lease_token).update(
            lease_until=None
        )
        raise
    except PermanentError as exc:
        _finish_action(action, Action.Status.FAILED, error=str(exc))
        return
    _finish_action(action, Action.Status.SUCCEEDED, result=result)


def action_gave_up(*, action_id: str, error: str) -> None:
    action = Action.objects.filter(pk=action_id, status=Action.Status.EXECUTING).first()
    if action is not None:
        _finish_action(action, Action.Status.FAILED, error=error)


def _claim_action(action_id: str) -> Action | None:
    now = timezone.now()
    with transaction.atomic():
        # The request's row first (the lock order), found through the action; the
        # action is read after the lock, as it stands once earlier writers are done.
        request = (
            Request.objects.select_for_update(of=("self",))
            .filter(actions=action_id)
            .first()
        )
        if request is None:
            return None
        action = Action.objects.select_related("room", "decided_by").get(pk=action_id)
        if (
            request.ended
            or action.status not in (Action.Status.APPROVED, Action.Status.EXECUTING)
            or (action.lease_until and action.lease_until > now)
        ):
            return None
        if action.attempts >= settings.AGENT_MAX_ATTEMPTS:
            _settle(
                action,
                Action.Status.FAILED,
                error=(f"The tool call failed {action.attempts} times; giving up."),
            )
            transaction.on_commit(
                lambda: services.request_advance(request_id=request.pk)
            )
            return None
        previous = action.status
        action.status = Action.Status.EXECUTING
        action.lease_token = uuid.uuid4().hex
        action.lease_until = now + timedelta(seconds=settings.AGENT_LEASE_SECONDS)
        action.attempts += 1
        action.save(
            update_fields=[
                "status",
                "lease_token",
                "lease_until",
                "attempts",
                "updated",
            ]
        )
        if previous != action.status:
            services.action_emit(action)
    return action


def _renew_action(action: Action, until: object) -> bool:
    return bool(
        Action.objects.filter(
            pk=action.pk, lease_token=action.lease_token, status=Action.Status.EXECUTING
        ).update(lease_until=until)
    )


def _finish_action(
    action: Action, status: str, *, result: dict | None = None, error: str = ""
) -> None:
    with transaction.atomic():
        Request.objects.select_for_update().filter(pk=action.request_id).first()
        current = Action.objects.select_related("room", "decided_by").get(pk=action.pk)
        if current.status != Action.Status.EXECUTING or (
            action.lease_token and current.lease_token != action.lease_token
        ):
            return  # another attempt finished it
        _settle(current, status, result=result, error=error)
    services.request_advance(request_id=action.request_id)


def _settle(
    action: Action, status: str, *, result: dict | None = None, error: str = ""
) -> None:
    action.status, action.result, action.error = status, result, error
    action.lease_until = None
    action.save()
    services.action_emit(action)
    services.tool_result_emit(action)


# Recovery --------------------------------------------------------------------------


def sweep() -> dict:
    """Find work that lost its worker or its enqueue, and expire overdue approvals."""
    from .tasks import execute_action as execute_task
    from .tasks import run_step as step_task

    settle = timezone.now() - timedelta(seconds=settings.AGENT_SWEEP_GRACE_SECONDS)
    now = timezone.now()
    stale = Q(lease_until__lt=now) | Q(lease_until__isnull=True, updated__lt=settle)
    requests = (
        Request.objects.filter(stale, status__in=[Status.QUEUED, Status.RUNNING])
        .exclude(actions__status__in=Action.ACTIVE)
        .values_list("id", "step")[:500]
    )
    actions = Action.objects.filter(
        stale, status__in=[Action.Status.APPROVED, Action.Status.EXECUTING]
    ).values_list("id", flat=True)[:500]
    for request_id, step in requests:
        step_task.delay(str(request_id), step)
    for action_id in actions:
        execute_task.delay(str(action_id))
    expired = services.action_expire_overdue()
    return {"steps": len(requests), "actions": len(actions), "expired": expired}
