"""The agent's turn as small steps whose state lives in the database.

`model_step` makes one model call; `tool_call` runs one tool call. Each claims its
row through the domain (`chat.services`) before doing anything, so a redelivered or
duplicated task finds the work taken or done, and records what happened through it;
this module only talks to the model and the tools' services.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.utils import timezone
from opentelemetry.trace import SpanKind

from agentsite import logs, telemetry
from chat import metrics, services, tools
from chat.models import Action, Request, Room
from chat.redis_client import redis_client, redis_key

from . import model_client
from .context import build_context
from .delta import DeltaRelay
from .engine import Running, engine
from .errors import PermanentError, TransientError
from .executors import Executor, executor_for, turn_tools
from .heartbeat import Lease, keeper
from .model_client import Completion, Stopped

logger = logging.getLogger(__name__)
Status = Request.Status


# One model call --------------------------------------------------------------------


def model_step(*, request_id: str, step: int) -> None:
    """Make model call number `step` of a request and record what it answered.

    Waits for the answer; a transient failure raises (the lease given up for the
    retry). The Celery task uses `model_step_begin` and does not wait.
    """
    running = model_step_begin(request_id=request_id, step=step)
    if running is not None:
        running.result()


OnTransient = Callable[[TransientError], None]


def model_step_begin(
    *, request_id: str, step: int, on_transient: OnTransient | None = None
) -> Running[None] | None:
    """Claim model call `step` and hand its stream to the process's engine.

    None when there is nothing to stream (not ours to take, or the request ended
    here). Else a future that settles once the answer is recorded; a transient
    failure, after the lease is given up, goes to `on_transient` (run off the
    loop, in this call's context), or without one is the future's exception.
    """
    request = services.step_claim(request_id=request_id, step=step)
    if request is None:
        return None
    turn = {"request_id": str(request.pk), "room": request.room.slug}
    telemetry.tag(**turn)
    with logs.scope(**turn):
        return _model_step(request, turn, on_transient)


def _model_step(
    request: Request, turn: dict[str, str], on_transient: OnTransient | None
) -> Running[None] | None:
    if request.step >= settings.AGENT_MAX_STEPS:
        services.step_end(
            request=request,
            status=Status.FAILED,
            error=(
                f"The agent stopped after {settings.AGENT_MAX_STEPS} steps without "
                "finishing (AGENT_MAX_STEPS). Ask again with a narrower request."
            ),
        )
        return None
    messages = build_context(request)
    offered, left_out = turn_tools(tools.Scope.of(request.room))
    for server, text in left_out.items():
        _notice_once(request, server, text)
    # The stream takes seconds to minutes and needs no database: the connection goes
    # back to the pool meanwhile, so hundreds of streams share a few connections.
    connection.close()
    call = _model_call(
        request, messages, tools.openai_tools(offered), turn, on_transient
    )
    return engine().submit(call)


async def _model_call(
    request: Request,
    messages: list[dict[str, Any]],
    offered: list[dict[str, Any]],
    turn: dict[str, str],
    on_transient: OnTransient | None,
) -> None:
    """The stream, on the engine's loop; the database writes that end it, off it."""
    runner = engine()
    relay = DeltaRelay(request)
    cut = _Cut(runner.loop)

    def lost() -> None:
        relay.halt()
        cut.now()

    lease = Lease(
        renew=lambda until: services.step_renew(request=request, until=until),
        cancel_key=redis_key("cancel", request.pk),
        on_lost=lost,
    )
    try:
        with cut, keeper().hold(lease):
            if request.attempts > 1:
                relay.reset()
            completion = await model_client.chat(
                messages,
                offered,
                relay.add,
                relay.stop,
                trace_attributes=telemetry.turn_attributes(**turn),
            )
            relay.flush()
    except Stopped:
        return
    except TransientError as exc:
        await runner.in_thread(services.step_release, request=request)
        if on_transient is None:
            raise
        await runner.in_thread(on_transient, exc)
        return
    except PermanentError as exc:
        await runner.in_thread(
            services.step_end, request=request, status=Status.FAILED, error=str(exc)
        )
        return
    await runner.in_thread(_record, request, completion)


class _Cut:
    """Cuts the stream of the block it guards short from another thread (the lease
    keeper, on a cancel or a lost lease); once the block is left, a late cut does
    nothing (the answer is being recorded: the lease's token guards that write)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        self._task = asyncio.current_task()

    def __exit__(self, *exc: object) -> None:
        self._task = None

    def now(self) -> None:
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _notice_once(request: Request, server: str, text: str) -> None:
    """Say in the room that a turn goes without a server, once per request."""
    key = redis_key("notice", request.pk, server)
    if redis_client().set(key, "1", nx=True, ex=24 * 3600):
        services.request_notice(request=request, text=text)


def _record(request: Request, completion: Completion) -> None:
    # Read again, not the scope the tools were offered under: packs taken from the
    # room while the model answered are refused too.
    scope = tools.Scope.of(_room_now(request))
    # Capped before the previews: a call past the cap costs no Linear read either.
    calls = services.calls_within_cap(
        [
            tools.check_call(
                call_id=c.id, name=c.name, arguments=c.arguments, scope=scope
            )
            for c in completion.tool_calls
        ]
    )
    # Read before the request's lock is taken: a preview is a call to the service.
    readings = {
        c.id: tools.preview_call(c.spec, c.parsed, scope)
        for c in calls
        if c.spec and c.parsed is not None and _worth_reading(request, c.spec)
    }
    services.step_record(
        request=request,
        text=completion.text,
        calls=calls,
        previews={call_id: r.preview for call_id, r in readings.items()},
        names={call_id: r.names for call_id, r in readings.items()},
        usage=completion.usage,
        model=completion.model,
        first_token=completion.first_token,
    )


def _worth_reading(request: Request, spec: tools.ToolSpec) -> bool:
    """Whether the call's target is read before it is recorded: for the approvers'
    preview, or for a rule of the room that names a target (a read tool's call,
    previewed for no one, is read only then)."""
    if spec.preview != tools.Preview.NONE:
        return True
    return spec.target is not None and services.policy_names_target(
        room_id=request.room_id, spec=spec
    )


def _room_now(request: Request) -> Room:
    room: Room = request.room
    room.refresh_from_db(fields=["packs", "linear_teams"])
    return room


# One tool call ---------------------------------------------------------------------


def tool_call(*, action_id: str) -> None:
    """Run an approved (or approval-free) tool call at most once.

    A retry after a crash or a transient error first reads back whether the earlier
    attempt already took effect.
    """
    action = services.action_claim(action_id=action_id)
    if action is None:
        return
    turn = {
        "request_id": str(action.request_id),
        "room": action.room.slug,
        "action_id": str(action.pk),
    }
    telemetry.tag(**turn)
    with logs.scope(**turn):
        _tool_call(action, turn)


def _tool_call(action: Action, turn: dict[str, str]) -> None:
    # The room's packs as they are now: a pack taken from the room after the call
    # was proposed (or approved) stops it.
    spec = tools.catalogue(tools.Scope.of(action.room)).get(action.tool)
    if spec is None:
        services.action_finish(
            action=action,
            status=Action.Status.FAILED,
            error=f"The tool {action.tool} is no longer offered here; it did not run.",
        )
        return
    lease = Lease(renew=lambda until: services.action_renew(action=action, until=until))
    started, failure = time.monotonic(), ""
    try:
        with keeper().hold(lease):
            executor = executor_for(spec, tools.Scope.of(action.room))
            result = _traced_run(executor, spec, action, turn, lease)
    except TransientError:
        _executed(action, started, Action.Status.FAILED)
        services.action_release(action=action)
        raise
    except PermanentError as exc:
        failure = str(exc)
    if failure:
        _executed(action, started, Action.Status.FAILED)
        services.action_finish(
            action=action, status=Action.Status.FAILED, error=failure
        )
        return
    _executed(action, started, Action.Status.SUCCEEDED)
    services.action_finish(action=action, status=Action.Status.SUCCEEDED, result=result)


def _traced_run(
    executor: Executor,
    spec: tools.ToolSpec,
    action: Action,
    turn: dict[str, str],
    lease: Lease,
) -> dict[str, Any]:
    """`_run` as the span `execute_tool {tool}` when tracing is on."""
    if not telemetry.enabled():
        return _run(executor, spec, action, lease)
    attributes: dict[str, Any] = {
        **telemetry.turn_attributes(**turn),
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": action.tool,
        "gen_ai.tool.call.id": action.tool_call_id,
    }
    if telemetry.capture_content():
        attributes["gen_ai.tool.call.arguments"] = json.dumps(action.arguments)
    with telemetry.tracer.start_as_current_span(
        f"execute_tool {action.tool}",
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            result = _run(executor, spec, action, lease)
        except Exception as exc:
            telemetry.fail(span, type(exc).__name__, str(exc)[:300])
            raise
        if telemetry.capture_content():
            span.set_attribute("gen_ai.tool.call.result", json.dumps(result))
        return result


def _executed(action: Action, started: float, outcome: str) -> None:
    metrics.tool_executed(
        tool=action.tool, outcome=outcome, duration=time.monotonic() - started
    )


def _run(
    executor: Executor, spec: tools.ToolSpec, action: Action, lease: Lease
) -> dict[str, Any]:
    action_id: UUID = action.pk
    if action.attempts > 1:
        _wait_out_earlier_write(executor, spec, action, lease)
        recovered = executor.recover(spec, action.arguments, action_id)
        if recovered is not None:
            return recovered

    def sending(leaving: bool) -> None:
        if not services.action_sending(action=action, sending=leaving) and leaving:
            raise TransientError(
                "Another attempt took this tool call over; this one sent nothing."
            )

    # Every attempt checks the target against what the approvers saw: a retry whose
    # earlier attempt changed the record was found by `recover` above, so a record
    # changed since is someone else's change (or ours, changed again): refused, never
    # sent a second time.
    return executor.run(spec, action.arguments, action_id, action.preview, sending)


def _wait_out_earlier_write(
    executor: Executor, spec: tools.ToolSpec, action: Action, lease: Lease
) -> None:
    """Hold the retry (and its lease) until a write an earlier attempt sent can no
    longer land: a service may still be holding it (the attempt's worker was killed,
    or its client stopped waiting), and a read-back before it lands finds nothing,
    so the retry would send it a second time."""
    if action.sent_at is None:
        return
    until = action.sent_at + timedelta(seconds=executor.window(spec))
    remaining = (until - timezone.now()).total_seconds()
    if remaining <= 0:
        return
    logger.info(
        "waiting %.1f s for an earlier attempt's write to land before reading back",
        remaining,
    )
    if lease.lost.wait(remaining):
        raise TransientError(
            "Another attempt took this tool call over; this one sent nothing."
        )
