"""Thin Celery wrappers around the agent's steps; they take ids, never objects."""

import random

from celery import shared_task
from celery.signals import worker_process_init

from . import agent, openai_client
from .errors import TransientError

MAX_RETRIES = 5


@worker_process_init.connect
def _warm(**kwargs: object) -> None:
    # Each pool process builds its model client once, at start, so that the first
    # turn it takes does not wait for it (~50 ms).
    openai_client.warm()


def _backoff(retries: int) -> float:
    # 1, 2, 4, 8, 16 s, with jitter so that many retries do not stampede together.
    return min(2**retries, 30) * random.uniform(0.8, 1.2)


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def run_step(self, request_id: str, step: int) -> None:
    try:
        agent.run_step(request_id=request_id, step=step)
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            agent.step_gave_up(
                request_id=request_id,
                step=step,
                error=f"{exc} (gave up after {self.max_retries} retries)",
            )
            return
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def execute_action(self, action_id: str) -> None:
    try:
        agent.execute_action(action_id=action_id)
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            agent.action_gave_up(
                action_id=action_id,
                error=f"{exc} (gave up after {self.max_retries} retries)",
            )
            return
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from None


@shared_task(acks_late=True, ignore_result=True)
def sweep() -> dict:
    return agent.sweep()
