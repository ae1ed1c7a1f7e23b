"""Rooms in real time across processes: two web processes, a worker, real sockets."""

import asyncio
import json

import pytest
import requests
import websockets

from tests.plugins.people import token_for
from tests.plugins.stack import effects

pytestmark = pytest.mark.e2e


class Watcher:
    """A WebSocket client of a room that keeps every frame it receives."""

    def __init__(self, base_url: str, token: str, slug: str = "triage") -> None:
        self.url = base_url.replace("http://", "ws://") + f"/ws/rooms/{slug}/"
        self.token = token
        self.frames: list[dict] = []

    async def __aenter__(self) -> "Watcher":
        self.ws = await websockets.connect(
            self.url, additional_headers={"Authorization": f"Token {self.token}"}
        )
        self.frames.append(json.loads(await self.ws.recv()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def until(self, predicate, timeout: float = 30) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                if predicate(frame):
                    return frame

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    def durable(self) -> list[tuple[int, str]]:
        return [
            (f["seq"], f["type"])
            for f in self.frames
            if f.get("seq") and f["type"] != "snapshot"
        ]

    def streamed(self) -> dict[str, str]:
        texts: dict[str, str] = {}
        for f in self.frames:
            if f["type"] == "delta":
                old = texts.get(f["message"], "")
                texts[f["message"]] = old[: f["offset"]] + f["text"]
        return texts


def is_action(status: str):
    return lambda f: f["type"] == "action" and f["action"]["status"] == status


def is_request(status: str):
    return lambda f: f["type"] == "request" and f["request"]["status"] == status


async def post(url: str, token: str, body: dict | None = None) -> requests.Response:
    return await asyncio.to_thread(
        requests.post,
        url,
        json=body or {},
        timeout=10,
        headers={"Authorization": f"Token {token}"},
    )


def test_two_watchers_on_two_web_processes_decide_together(
    stack, room, alice, bob, linear_standin, openai_standin
):
    """Two web processes and two workers against one Redis and one database: both
    watchers see the same durable events in order, whichever process serves them,
    and a decision made through one web process resumes the turn on a free worker."""
    stack.worker("worker-1")
    stack.worker("worker-2")
    web1, web2 = stack.web("web-1"), stack.web("web-2")
    alice_token, bob_token = token_for(alice), token_for(bob)

    async def scenario() -> tuple[Watcher, Watcher, list]:
        async with Watcher(web1, alice_token) as a, Watcher(web2, bob_token) as b:
            asked = await post(
                f"{web2}/api/rooms/triage/requests",
                bob_token,
                {"text": "Please delete ENG-3"},
            )
            assert asked.status_code == 202, asked.text
            pending = await a.until(is_action("pending"))
            await b.until(is_action("pending"))
            action_id = pending["action"]["id"]

            refused = [await post(f"{web2}/api/actions/{action_id}/approve", bob_token)]
            await b.send({"type": "decide", "action": action_id, "decision": "approve"})
            refused.append(await b.until(lambda f: f["type"] == "error"))

            await a.send({"type": "decide", "action": action_id, "decision": "approve"})
            for watcher in (a, b):
                await watcher.until(is_request("completed"))
            return a, b, refused

    a, b, refused = asyncio.run(scenario())

    assert refused[0].status_code == 403
    assert refused[1]["frame"] == "decide"
    assert a.durable() == b.durable()
    seqs = [seq for seq, _ in a.durable()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finished = {
        f["message"]["id"]: f["message"]["content"]
        for f in a.frames
        if f["type"] == "message" and f["message"]["role"] == "assistant"
    }
    assert "deleted ENG-3" in list(finished.values())[-1]
    for watcher in (a, b):
        streamed = watcher.streamed()
        assert streamed, "no delta was seen"
        for message_id, text in streamed.items():
            assert finished[message_id] == text
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_an_idle_socket_stays_open_past_fifteen_seconds(stack, room, bob):
    web = stack.web()
    token = token_for(bob)

    async def scenario() -> dict:
        async with Watcher(web, token) as watcher:
            await asyncio.sleep(16)
            asked = await post(
                f"{web}/api/rooms/triage/requests", token, {"text": "still there?"}
            )
            assert asked.status_code == 202
            return await watcher.until(lambda f: f["type"] == "message", timeout=10)

    frame = asyncio.run(scenario())
    assert frame["message"]["content"] == "still there?"


def test_a_watcher_that_stops_reading_slows_no_one_and_catches_up(
    stack, room, bob, openai_standin
):
    """Invariant: a stalled socket holds back no other watcher; when it reads again
    it resyncs from its last seq and ends with the same durable events and text."""
    openai_standin.control("config", {"token_delay": 0.002})
    stack.worker()
    web = stack.web()
    token = token_for(bob)

    async def scenario() -> tuple[Watcher, Watcher, float]:
        async with Watcher(web, token) as lively, Watcher(web, token) as stalled:
            started = asyncio.get_running_loop().time()
            asked = await post(
                f"{web}/api/rooms/triage/requests", token, {"text": "count to 3000"}
            )
            assert asked.status_code == 202
            await lively.until(is_request("completed"), timeout=60)
            took = asyncio.get_running_loop().time() - started
            # Only now does the stalled watcher read what piled up for it.
            await stalled.until(is_request("completed"), timeout=60)
            last = max(seq for seq, _ in stalled.durable())
            await stalled.send({"type": "resync", "after": last})
            await stalled.send({"type": "resync", "after": 0})
            await stalled.until(lambda f: f.get("seq") == last)
            return lively, stalled, took

    lively, stalled, took = asyncio.run(scenario())
    assert took < 30
    durable = sorted(set(stalled.durable()))
    assert [seq for seq, _ in durable] == list(range(1, len(durable) + 1))
    assert set(lively.durable()) <= set(durable)
    text = " ".join(map(str, range(1, 3001))) + " "
    assert list(lively.streamed().values()) == [text]
    assert list(stalled.streamed().values()) == [text]
