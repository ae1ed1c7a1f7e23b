"""The lean SSE client against a real socket that frames its answer awkwardly.

A chunked body may be cut anywhere by the network: inside a chunk's size line, its
CRLF, an event. Every event must arrive once, whole, in order.
"""

from __future__ import annotations

import asyncio

import pytest

from tasks import sse_client

EVENTS = [b'{"n": %d, "text": "%s"}' % (n, b"x" * n) for n in range(40)]


def _chunked(events: list[bytes]) -> bytes:
    body = b"".join(b"data: " + e + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    out, at, size = b"", 0, 7
    while at < len(body):
        piece = body[at : at + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        at, size = at + len(piece), size * 3 % 61 + 1
    return out + b"0\r\n\r\n"


async def _exchange(answer: bytes, pieces: int, status: int = 200) -> list[bytes]:
    head = (
        f"HTTP/1.1 {status} OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    whole = head + answer
    requests = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            requests += 1
            step = max(1, len(whole) // pieces)
            for at in range(0, len(whole), step):
                writer.write(whole[at : at + step])
                await writer.drain()
                await asyncio.sleep(0)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = sse_client.Client(f"http://127.0.0.1:{port}/v1", {}, timeout=5)
    got: list[bytes] = []
    try:
        for _ in range(2):  # the second on the kept-alive connection
            await client.post("/chat/completions", b"{}", got.append)
    finally:
        client.close()
        server.close()
    assert requests == 2
    return got


@pytest.mark.parametrize("pieces", [1, 7, 100, 10_000])
def test_every_event_arrives_once_whole_however_the_bytes_are_cut(
    pieces: int,
) -> None:
    got = asyncio.run(_exchange(_chunked(EVENTS), pieces))
    assert got == (EVENTS + [b"[DONE]"]) * 2


def test_an_error_status_carries_its_body() -> None:
    body = b'{"error": {"message": "no such model"}}'
    answer = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    with pytest.raises(sse_client.StatusError) as caught:
        asyncio.run(_exchange(answer, 3, status=404))
    assert (caught.value.status, caught.value.body) == (404, body)
