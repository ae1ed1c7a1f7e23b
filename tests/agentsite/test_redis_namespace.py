"""Every Redis name of a deployment starts with a namespace of its database's own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentsite.env import database_from_url, redis_namespace

ROOT = Path(__file__).resolve().parents[2]

SHOW = """
import json, django
django.setup()
from django.conf import settings
from chat.realtime import room_channel
from chat.redis_client import redis_key
print(json.dumps({
    "namespace": settings.REDIS_NAMESPACE,
    "names": [
        settings.CACHES["default"]["KEY_PREFIX"],
        settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"],
        settings.CELERY_TASK_DEFAULT_QUEUE,
        *[route["queue"] for route in settings.CELERY_TASK_ROUTES.values()],
        *[queue.name for queue in settings.CELERY_TASK_QUEUES],
        room_channel(1),
        redis_key("hub"),
        redis_key("presence", 1),
    ],
}))
"""


def _redis_names(**env: str) -> dict:
    """The Redis names a process started with `env` (and default prefix) uses."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_PREFIX", "REDIS_NAMESPACE")
    }
    done = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "agentsite.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # three Python processes that set Django up
def test_two_deployments_with_the_default_prefix_share_no_redis_name(tmp_path):
    """Invariant: two checkouts on one Redis (their own SQLite files, any database
    number) name no key, channel or queue alike; every name starts with the
    deployment's namespace; two processes of one deployment (web and worker, one
    environment) name everything the same."""
    env_a = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    a, a_again = _redis_names(**env_a), _redis_names(**env_a)
    b = _redis_names(
        DATABASE_URL=f"sqlite:///{tmp_path / 'b.sqlite3'}",
        REDIS_URL="redis://127.0.0.1:6379/1",
    )
    assert a == a_again
    assert a["namespace"] != b["namespace"]
    for mine, other in ((a, b), (b, a)):
        assert mine["namespace"].startswith("agentsite-")
        for name in mine["names"]:
            assert name.startswith(mine["namespace"]), name
            assert not name.startswith(other["namespace"]), name


def test_the_namespace_follows_the_database_not_the_credentials():
    """The same database under another user is the same deployment; another name,
    host or port is another; the password never shows in a key."""

    def of(url: str, prefix: str = "agentsite") -> str:
        return redis_namespace(prefix, database_from_url(url, ROOT))

    one = of("postgres://app:secret@db.internal:5432/agentsite")
    assert of("postgres://other:pw@db.internal:5432/agentsite") == one
    assert of("postgres://app@db.internal/agentsite") == one  # the default port
    assert of("postgres://app@db.internal:5432/agentsite_b") != one
    assert of("postgres://app@db2.internal:5432/agentsite") != one
    assert of("postgres://app@db.internal:5433/agentsite") != one
    assert of("sqlite:///a.sqlite3") != of("sqlite:///b.sqlite3")
    assert "secret" not in one
    # An operator's prefix still leads (REDIS_PREFIX per tenant, say).
    assert of("postgres://app@db.internal/agentsite", "tenant-a").startswith(
        "tenant-a-"
    )
