"""The Celery entry points: thin, ids not objects, every one safe to run twice.

They register under the names the domain sends (`chat.enqueue`); the work itself is
in `tasks.steps`, the rules in `chat.services`.
"""

import logging
import random
from typing import Any

from celery import current_app, shared_task
from celery.signals import (
    after_task_publish,
    beat_init,
    heartbeat_sent,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from agentsite import logs
from chat import enqueue, probes, services

from . import deliver as deliver_
from . import engine, mcp_client, model_client, steps
from .errors import TransientError

logger = logging.getLogger(__name__)

MAX_RETRIES = 5
SHUTDOWN_WAIT_SECONDS = 300


@worker_process_init.connect  # each process of a prefork pool
@worker_ready.connect  # the threads pool's one process
def _warm(**kwargs: object) -> None:
    # The model client is built once, at start, so that the first turn does not
    # wait for it (~50 ms).
    model_client.warm()
    # Each MCP server is connected and its tools listed now, not at the first turn.
    mcp_client.hub()


@worker_shutdown.connect
def _drain(**kwargs: object) -> None:
    # A warm shutdown waits for the tasks it runs, which handed their streams to
    # the engine and returned: the streams are waited for here, as the tasks were
    # before (a stream still running when the process ends is taken over after its
    # lease, as after a crash).
    if not engine.drain(timeout=SHUTDOWN_WAIT_SECONDS):
        logger.warning("shutting down with model streams still running")


@heartbeat_sent.connect
def _consuming(**kwargs: object) -> None:
    # Celery's own heartbeat (every 2 s, on the consumer's timer): it stops when the
    # worker stops consuming, which a thread of ours would not notice.
    _readiness(probes.WORKER)


_in_beat = False


@beat_init.connect
def _beat_started(**kwargs: object) -> None:
    global _in_beat
    _in_beat = True


@after_task_publish.connect
def _beat_ticked(sender: object = None, **kwargs: object) -> None:
    # Written when beat sends the sweep, not when a worker runs it: a stopped
    # worker must not mark beat down. Web processes and workers never send it.
    if _in_beat and sender == enqueue.SWEEP:
        _readiness(probes.BEAT)


def _readiness(role: str) -> None:
    try:
        probes.heartbeat_write(role)
    except Exception:
        logger.warning("could not write the %s heartbeat", role, exc_info=True)


def _backoff(retries: int) -> float:
    # 1, 2, 4, 8, 16 s, with jitter so that many retries do not stampede together.
    return float(min(2**retries, 30) * random.uniform(0.8, 1.2))


@shared_task(
    name=enqueue.MODEL_STEP, bind=True, acks_late=True, max_retries=MAX_RETRIES
)
def model_step(self, request_id: str, step: int) -> None:  # type: ignore[no-untyped-def]
    with logs.scope(request_id=request_id):
        _model_step(self, request_id, step)


def _model_step(self, request_id: str, step: int) -> None:  # type: ignore[no-untyped-def]
    retries = self.request.retries

    def retry_later(exc: TransientError) -> None:
        # The stream failed after this task returned (it ran on the engine's loop):
        # the retry is sent as `self.retry` would send it, counted the same way.
        if _gave_up(request_id, step, retries, exc):
            return
        countdown = _backoff(retries)
        logger.info("model step retried in %.1f s: %s", countdown, exc)
        current_app.send_task(
            enqueue.MODEL_STEP,
            args=(request_id, step),
            countdown=countdown,
            retries=retries + 1,
        )

    try:
        # Returns once the stream is handed to the engine: this slot is free while
        # the answer streams.
        steps.model_step_begin(
            request_id=request_id, step=step, on_transient=retry_later
        )
    except TransientError as exc:
        if _gave_up(request_id, step, retries, exc):
            return
        raise self.retry(exc=exc, countdown=_backoff(retries)) from None


def _gave_up(request_id: str, step: int, retries: int, exc: TransientError) -> bool:
    if retries < MAX_RETRIES:
        return False
    services.step_gave_up(
        request_id=request_id,
        step=step,
        error=f"{exc} (gave up after {MAX_RETRIES} retries)",
    )
    return True


@shared_task(name=enqueue.TOOL_CALL, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def tool_call(self, action_id: str) -> None:  # type: ignore[no-untyped-def]
    with logs.scope(action_id=action_id):
        _tool_call(self, action_id)


def _tool_call(self, action_id: str) -> None:  # type: ignore[no-untyped-def]
    try:
        steps.tool_call(action_id=action_id)
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            services.action_gave_up(
                action_id=action_id,
                error=f"{exc} (gave up after {self.max_retries} retries)",
            )
            return
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None


@shared_task(name=enqueue.SWEEP, acks_late=True, ignore_result=True)
def sweep() -> dict[str, Any]:
    return services.sweep()


@shared_task(name=enqueue.DELIVER, bind=True, acks_late=True, max_retries=None)
def deliver(self, delivery_id: str) -> None:  # type: ignore[no-untyped-def]
    # The row counts the attempts and gives up (DELIVERY_MAX_ATTEMPTS), not Celery:
    # its count survives a lost task, which the sweep sends again.
    with logs.scope(delivery_id=delivery_id):
        countdown = deliver_.deliver(delivery_id=delivery_id)
    if countdown is not None:
        raise self.retry(countdown=countdown)
