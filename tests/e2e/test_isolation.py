"""Two deployments on one Redis server: nothing of one reaches the other.

Both use the default prefix, the same Redis server and database number, and a room
with the same id; only their databases differ (the test database, and a SQLite file
of the test's own), as two checkouts' `make run` or a test run beside one would.
"""

import asyncio
import json
import subprocess
import sys

import pytest
import redis

from agentsite.env import database_from_url, redis_namespace
from chat.models import Request
from tests.e2e.test_rooms_live import Watcher, is_request, post
from tests.plugins.people import token_for
from tests.plugins.stack import ROOT

pytestmark = pytest.mark.e2e

# Unset (empty is unset for settings): each deployment derives its own namespace
# from the default prefix and its database, as one deployed by hand does.
DEFAULT_NAMESPACE = {"REDIS_PREFIX": "", "REDIS_NAMESPACE": ""}

SETUP_B = """
import json
from chat.models import User
from chat.models import Membership, Room
from chat.services import token_issue
carol = User.objects.create_user("carol")
room = Room.objects.create(id={room_id}, slug="triage", name="Triage", created_by=carol)
Membership.objects.create(room=room, user=carol, role=Membership.Role.APPROVER)
print(json.dumps(token_issue(user=carol)[1]))
"""


def _deployment_b(database_url: str, env: dict, room_id: int) -> str:
    """Migrate B's database, give it the room `room_id` and its member carol;
    answer carol's API token."""
    env = {**env, **DEFAULT_NAMESPACE, "DATABASE_URL": database_url}
    manage = [sys.executable, "manage.py"]
    for argv in (
        [*manage, "migrate", "--noinput", "-v", "0"],
        [*manage, "shell", "-c", SETUP_B.format(room_id=room_id)],
    ):
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _forget(redis_url: str, database_urls: list[str]) -> None:
    client = redis.Redis.from_url(redis_url)
    for url in database_urls:
        namespace = redis_namespace("agentsite", database_from_url(url, ROOT))
        for key in client.scan_iter(match=f"{namespace}*", count=500):
            client.delete(key)
    client.close()


def test_two_deployments_on_one_redis_never_hear_each_other(
    stack, room, alice, bob, openai_standin, tmp_path
):
    """Invariant: deployment B's watcher of its room (same id, same slug) sees none of
    A's events, streamed text or presence, and B's worker never takes A's turn,
    which waits for A's own worker and then completes."""
    url_a, url_b = stack.env["DATABASE_URL"], f"sqlite:///{tmp_path / 'b.sqlite3'}"
    carol_token = _deployment_b(url_b, stack.env, room.pk)
    alice_token, bob_token = token_for(alice), token_for(bob)
    env_b = {**DEFAULT_NAMESPACE, "DATABASE_URL": url_b}
    web_a = stack.web("web-a", **DEFAULT_NAMESPACE)
    web_b = stack.web("web-b", **env_b)
    worker_b = stack.worker("worker-b", **env_b)

    async def scenario() -> tuple[Watcher, Watcher]:
        async with Watcher(web_a, alice_token) as a, Watcher(web_b, carol_token) as b:
            asked = await post(
                f"{web_a}/api/rooms/triage/requests", bob_token, {"text": "count to 40"}
            )
            assert asked.status_code == 202, asked.text
            await a.until(lambda f: f["type"] == "message")
            # No worker of A runs yet: the turn must stay in A's queue, untouched by
            # B's worker, which listens on the same Redis.
            await asyncio.sleep(3)
            assert "received" not in worker_b.output(), "B's worker took A's turn"
            request = await asyncio.to_thread(
                Request.objects.get, pk=asked.json()["id"]
            )
            assert request.status == Request.Status.QUEUED
            await asyncio.to_thread(stack.worker, "worker-a", **DEFAULT_NAMESPACE)
            await a.until(is_request("completed"), timeout=60)
            # Whatever B would have heard of it has arrived by now.
            with pytest.raises(TimeoutError):
                await b.until(lambda f: False, timeout=2)
            return a, b

    try:
        a, b = asyncio.run(scenario())
    finally:
        _forget(stack.env["REDIS_URL"], [url_a, url_b])

    # A heard its own room: the message, the streamed text, its watcher's presence.
    assert list(a.streamed().values()) == [" ".join(map(str, range(1, 41))) + " "], (
        a.frames
    )
    assert any(f["type"] == "presence" and "alice" in f["users"] for f in a.frames)
    # B heard nothing of it: its snapshot, then at most its own presence.
    snapshot, *rest = b.frames
    assert snapshot["type"] == "snapshot"
    assert snapshot["presence"] in (None, [], ["carol"]), snapshot["presence"]
    assert {f["type"] for f in rest} <= {"presence"}, rest
    assert all(f["users"] == ["carol"] for f in rest), rest
    assert "received" not in worker_b.output()
