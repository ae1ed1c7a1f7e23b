"""Redis restarts under a running system: nothing durable is lost, nothing repeats."""

import asyncio
import os
import time

import pytest
import requests

from chat.models import Action, Message, Request
from stack.procs import free_port
from stack.redis import redis_answers, server_argv
from stack.supervisor import Proc
from tests.e2e.test_rooms_live import Watcher
from tests.plugins.people import token_for
from tests.plugins.stack import LOG_DIR, effects, wait_for

pytestmark = pytest.mark.e2e


class RestartableRedis:
    """A Redis of the test's own on a fixed port: it comes back at the same URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = server_argv(self.port, LOG_DIR)
        self.proc = Proc("redis", argv, os.environ, LOG_DIR / "redis-restart.log")
        self._wait()

    def start(self) -> None:
        self.proc.start()
        self._wait()

    def _wait(self) -> None:
        self.proc.wait_until(lambda: redis_answers(self.url), "answer PING", 10)

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def own_redis(stack):
    server = RestartableRedis()
    stack.env.update(REDIS_URL=server.url, REDIS_NAMESPACE="restart")
    yield server
    stack.stop()
    server.stop()


def test_a_redis_restart_loses_nothing_durable(
    stack, own_redis, room, alice, bob, linear_standin, openai_standin
):
    """Invariant: during and after a Redis restart, processes reconnect by themselves,
    a watcher that resyncs ends with every durable event and the full text once, and
    an action pending across the restart still resolves, once."""
    openai_standin.control("config", {"token_delay": 0.03})
    web = stack.web()
    stack.worker()
    stack.beat()
    bob_token, alice_token = token_for(bob), token_for(alice)
    headers = {"Authorization": f"Token {bob_token}"}

    def ask(text: str) -> Request:
        answer = requests.post(
            f"{web}/api/rooms/triage/requests",
            json={"text": text},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        return Request.objects.get(pk=answer.json()["id"])

    deletion = ask("delete ENG-3")
    wait_for(lambda: Action.objects.filter(request=deletion).exists(), timeout=30)

    async def scenario() -> Watcher:
        async with Watcher(web, bob_token) as watcher:
            counting = await asyncio.to_thread(ask, "count to 150")
            await watcher.until(lambda f: f["type"] == "delta")
            # In this thread: the server dies with the thread that started it.
            own_redis.stop()
            time.sleep(1.0)
            own_redis.start()
            await asyncio.to_thread(
                wait_for,
                lambda: _status(counting) == "completed",
                60,
                0.2,
                "the stream to finish after the restart",
            )
            last = max(f.get("seq") or 0 for f in watcher.frames)
            await watcher.send({"type": "resync", "after": last})
            await asyncio.sleep(1)
            await watcher.send({"type": "resync", "after": 0})
            final = await watcher.until(
                lambda f: (
                    f["type"] == "request"
                    and f["request"]["id"] == str(counting.pk)
                    and f["request"]["status"] == "completed"
                )
            )
            assert final
            return watcher, counting

    watcher, counting = asyncio.run(scenario())
    text = Message.objects.get(request=counting, role="assistant").content
    assert text == " ".join(map(str, range(1, 151))) + " "
    messages = {
        f["message"]["id"]: f["message"]["content"]
        for f in watcher.frames
        if f["type"] == "message"
    }
    assert text in messages.values()

    action = Action.objects.get(request=deletion)
    approved = requests.post(
        f"{web}/api/actions/{action.pk}/approve",
        json={},
        headers={"Authorization": f"Token {alice_token}"},
        timeout=10,
    )
    assert approved.status_code == 200, approved.text
    wait_for(lambda: _status(deletion) == "completed", timeout=60)
    assert len(effects(linear_standin, "issueDelete")) == 1


def _status(request: Request) -> str:
    request.refresh_from_db()
    return request.status
