"""Rooms in real time across processes: two web processes, a worker, real sockets."""

import asyncio
import base64
import json
import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest
import requests
import websockets
from websockets.sync import client as ws_sync

from chat import realtime
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


def test_a_watcher_that_never_reads_is_let_go_and_the_room_goes_on(stack, room, bob):
    """Invariant: a socket that stops draining costs the server at most
    WS_MAX_BACKLOG queued frames; past that it is closed with 4408 (the client
    reconnects and catches up by snapshot), and every other watcher still gets
    every frame, in order."""
    web = stack.web(WS_MAX_BACKLOG="20")
    url = web.replace("http://", "ws://") + "/ws/rooms/triage/"
    token = token_for(bob)
    stalled = RawSocket(url, token)
    assert json.loads(stalled.frame()[1])["type"] == "snapshot"
    headers = {"Authorization": f"Token {token}"}
    with ws_sync.connect(url, additional_headers=headers) as lively:
        assert json.loads(lively.recv(timeout=10))["type"] == "snapshot"

        size, count = 32 * 1024, 200  # 6.4 MB: far more than the socket buffers hold
        for i in range(count):
            realtime.delta_send(
                room_id=room.pk,
                request_id=uuid.UUID(int=1),
                message_id=uuid.UUID(int=2),
                offset=i * size,
                text=str(i % 10) * size,
            )
        realtime.publisher.flush(timeout=10)

        offsets = []
        while len(offsets) < count:
            frame = json.loads(lively.recv(timeout=20))
            if frame["type"] == "delta":
                offsets.append(frame["offset"])
        assert offsets == [i * size for i in range(count)]

    # Reading again, the stalled watcher finds what had reached its buffers, then
    # the close: the server kept nothing more for it.
    texts = []
    while (frame := stalled.frame())[0] == OP_TEXT:
        texts.append(frame[1])
    assert frame[0] == OP_CLOSE
    assert int.from_bytes(frame[1][:2], "big") == 4408
    assert 0 < len(texts) < count


OP_TEXT, OP_CLOSE = 0x1, 0x8


class RawSocket:
    """A WebSocket client that reads only when told to: no library reads ahead."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket()
        # A tiny receive window, so the server's buffers fill after a few frames.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(20)
        self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Token {token}\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def frame(self) -> tuple[int, bytes]:
        """The next (opcode, payload) from the server (unmasked, unfragmented)."""
        first, second = self._read(2)
        length = second & 0x7F
        if length >= 126:
            length = int.from_bytes(self._read(2 if length == 126 else 8), "big")
        return first & 0x0F, self._read(length)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def test_a_removed_member_is_closed_on_every_web_process_within_two_seconds(
    stack, room, alice, bob
):
    """Contract semantic 8: the removal reaches the sockets on every web process."""
    web1, web2 = stack.web("web-1"), stack.web("web-2")
    alice_token, bob_token = token_for(alice), token_for(bob)

    async def scenario() -> tuple[list[int | None], float, int]:
        async with Watcher(web1, bob_token) as a, Watcher(web2, bob_token) as b:
            loop = asyncio.get_running_loop()
            started = loop.time()
            removed = await asyncio.to_thread(
                requests.delete,
                f"{web1}/api/rooms/triage/members/bob",
                headers={"Authorization": f"Token {alice_token}"},
                timeout=10,
            )
            assert removed.status_code == 204, removed.text
            codes = []
            for watcher in (a, b):
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await watcher.until(lambda f: False, timeout=2)
                codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
            took = loop.time() - started
            later = await asyncio.to_thread(
                requests.get,
                f"{web2}/api/rooms/triage",
                headers={"Authorization": f"Token {bob_token}"},
                timeout=10,
            )
            return codes, took, later.status_code

    codes, took, later = asyncio.run(scenario())
    assert codes == [4403, 4403]
    assert took < 2
    assert later == 404
