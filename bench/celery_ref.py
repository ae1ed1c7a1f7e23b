"""The Celery reference: no-op tasks on the app's own Celery configuration.

The worker runs as `celery -A bench.celery_ref worker ...` with the Procfile's flags,
against the same broker, prefix and settings as `agentsite` (its `CELERY_*`
Django settings), on a queue of its own. Each
task does one Redis write so the runner can see it ran (~0.1 ms, a tenth of what a
task costs); the runner waits on a list (BLPOP), it does not poll.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery, chain

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")


def _config() -> dict:
    """The app's `CELERY_*` settings, on a queue of the benchmark's own."""
    from django.conf import settings

    names = [name for name in dir(settings) if name.startswith("CELERY_")]
    config = {
        name.removeprefix("CELERY_").lower(): getattr(settings, name) for name in names
    }
    # Never the app's queue: its worker must not take these tasks, nor ours its.
    config["task_default_queue"] = f"{settings.REDIS_NAMESPACE}.bench-ref"
    # The app's model/tools queues would be all this worker consumes, never its own.
    config.pop("task_queues", None)
    config.pop("task_routes", None)
    return config


app = Celery("bench_ref")
app.config_from_object(_config())

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client


@app.task(name="bench.noop")
def noop(counter: str, last: int) -> None:
    # The task that completes the batch says so; the runner waits on a list, not a poll.
    if _redis().incr(counter) == last:
        _redis().rpush(f"{counter}:done", time.time_ns())


@app.task(name="bench.pass")
def pass_() -> None:
    pass


@app.task(name="bench.stamp")
def stamp(key: str) -> None:
    _redis().rpush(key, time.time_ns())


def chain_of_three(key: str) -> chain:
    """Three tasks in a row, the last one stamping when it ran."""
    return chain(pass_.si(), pass_.si(), stamp.si(key))
