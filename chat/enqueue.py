"""The domain's one way to start work in the worker: Celery tasks sent by name.

The domain never imports the worker package; it names the worker's entry points
here, and `tasks.tasks` registers its tasks under these names. Every send happens
after the commit that made the work visible (callers use `on_commit`), and a send
that fails is only logged: the sweep finds work whose enqueue was lost.

`trace` is the context stored with the row (`trace_context`): the task is sent, and
so runs, in its turn's trace, whoever sends it and however late.
"""

import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from celery import current_app

from agentsite import telemetry

logger = logging.getLogger(__name__)

MODEL_STEP = "agent.model_step"
TOOL_CALL = "agent.tool_call"
SWEEP = "agent.sweep"


Trace = Mapping[str, Any] | None


def model_step(*, request_id: UUID | str, step: int, trace: Trace = None) -> None:
    """Queue model call number `step` of a request."""
    _send(MODEL_STEP, str(request_id), step, trace=trace)


def tool_call(
    *, action_id: UUID | str, countdown: float = 0, trace: Trace = None
) -> None:
    """Queue the execution of an approved (or approval-free) action.

    With `countdown` it is delivered when an approval's delay has passed; the claim
    refuses it before `runs_at` all the same, and the sweep sends it again if this
    message is lost to a restart.
    """
    _send(TOOL_CALL, str(action_id), countdown=countdown, trace=trace)


def _send(name: str, *args: object, countdown: float = 0, trace: Trace = None) -> None:
    try:
        with telemetry.under(trace):
            current_app.send_task(name, args=args, countdown=countdown or None)
    except Exception:
        logger.exception("could not enqueue %s%r; the sweep will find it", name, args)


DELIVER = "notify.deliver"


def deliver(*, delivery_id: UUID | str, countdown: float = 0) -> None:
    """Queue the sending of an outbox row (a webhook POST or an email)."""
    _send(DELIVER, str(delivery_id), countdown=countdown)
