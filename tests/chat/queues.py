"""What the domain enqueued: the Celery messages of this test run, read from Redis.

Like `task_queue` in test_api_actions.py, but over every queue a task may be routed
to (model steps and tool calls wait in queues of their own), so a test sees what
was sent wherever it went. Import the fixture into a test module to use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from chat.redis_client import redis_client


def queue_keys() -> list[str]:
    """The Redis lists of every queue the tasks are sent to."""
    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    names |= {route["queue"] for route in routes.values() if "queue" in route}
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    return sorted(prefix + name for name in names)


@pytest.fixture
def task_queue() -> Iterator[Callable[[], list[dict]]]:
    """The Celery messages this test enqueued, newest first; removed afterwards."""
    client = redis_client()
    keys = queue_keys()
    before = {key: set(client.lrange(key, 0, -1)) for key in keys}
    seen: list[tuple[str, str]] = []

    def read() -> list[dict]:
        seen[:] = [
            (key, raw)
            for key in keys
            for raw in client.lrange(key, 0, -1)
            if raw not in before[key]
        ]
        return [{"raw": raw, **json.loads(raw)["headers"]} for _, raw in seen]

    yield read
    read()
    for key, raw in seen:
        client.lrem(key, 0, raw)
