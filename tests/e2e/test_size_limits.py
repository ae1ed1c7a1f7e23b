"""Body and frame sizes through a real web process (the Procfile's web line)."""

import asyncio
import json

import pytest
import requests
import websockets

from tests.plugins.people import token_for

pytestmark = pytest.mark.e2e


def test_an_oversized_body_gets_413_json_declared_or_streamed(stack, room, bob):
    web = stack.web(REQUEST_MAX_BYTES="100000")
    url = f"{web}/api/rooms/triage/requests"
    headers = {"Authorization": f"Token {token_for(bob)}"}
    body = json.dumps({"text": "x" * 200_000}).encode()

    declared = requests.post(
        url, data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert "larger than 100000 bytes" in declared.json()["detail"]

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(body), 16384):
            yield body[start : start + 16384]

    streamed = requests.post(
        url, data=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["detail"]
    small = requests.post(url, json={"text": "hello"}, headers=headers, timeout=10)
    assert small.status_code == 202


def test_a_frame_far_past_the_limit_is_refused_by_the_server(stack, room, bob):
    web = stack.web()
    url = web.replace("http://", "ws://") + "/ws/rooms/triage/"
    headers = {"Authorization": f"Token {token_for(bob)}"}

    async def scenario() -> int | None:
        async with websockets.connect(
            url, additional_headers=headers, max_size=None
        ) as ws:
            await ws.recv()  # the snapshot
            await ws.send("x" * (1024 * 1024))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None

    # 1009: message too big, from uvicorn, before the whole megabyte is buffered.
    assert asyncio.run(scenario()) == 1009
