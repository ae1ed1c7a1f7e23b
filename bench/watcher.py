"""A watcher client process: many WebSocket connections on one asyncio loop.

`python -m bench.watcher --urls ws://a/...,ws://b/... --count 250 --offset 0
--mode app --token KEY --out FILE`

Connection i (counted from `--offset`) goes to url i mod len(urls), so several
processes spread one room's watchers over several servers. The process is steered
through stdin, one command a line, and answers each on stdout:

- (on start) connects everything: `connected <ok> <failed> <retried handshakes>`
- `count`: prints `count <frames received so far>` (the runner waits for quiet)
- `mark`: forgets every frame received so far (snapshots, presence) -> `marked`
- `dump`: writes the results so far to `--out`, then forgets them -> `dumped`
- `stop`: writes the results to `--out`, prints `done` and exits without closing
  the sockets politely (a close storm would only load the server being stopped)

The client is a bare RFC 6455 protocol on asyncio, not the `websockets` library:
with a few hundred connections per process and 100 frames/s each, a library's
per-frame machinery (futures, a queue, UTF-8 checks) made the clients, not the
servers, the bottleneck. A frame is stamped with the time its bytes were read from
the socket, kept as bytes, and parsed only at `stop`. Pings are answered (uvicorn
closes connections that do not); no compression is offered (browsers would offer
permessage-deflate: this measures fan-out, not zlib).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sys
import time
from urllib.parse import urlsplit

import uvloop

TOKEN = re.compile(rb"(\d+)@(\d+)")
# Handshakes in flight per process: enough to connect fast, few enough that a busy
# server answers each within its handshake timeout. A refused one is retried, as a
# browser would, and counted.
CONNECT_PARALLEL = 4
ATTEMPTS = 4
HANDSHAKE_TIMEOUT = 60
PING, PONG, CLOSE = 0x9, 0xA, 0x8


class Connection(asyncio.Protocol):
    """One WebSocket: the handshake, then frames stamped as their bytes arrive."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.frames: list[tuple[int, bytes]] = []
        self.partial = b""
        self.closed = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self.buffer += data
        if not self.opened.done():
            head, sep, _ = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(head[:200].decode("latin1")))
                self.transport.close()
                return
            del self.buffer[: len(head) + 4]
            self.opened.set_result(None)
        self._frames(now)

    def _frames(self, now: int) -> None:
        buf, at = self.buffer, 0
        while len(buf) - at >= 2:
            first, length = buf[at], buf[at + 1] & 0x7F
            start = at + 2
            if length == 126:
                length, start = int.from_bytes(buf[start : start + 2]), start + 2
            elif length == 127:
                length, start = int.from_bytes(buf[start : start + 8]), start + 8
            if len(buf) < start + length:
                break
            payload, at = bytes(buf[start : start + length]), start + length
            opcode = first & 0x0F
            if opcode == PING:
                self.send(PONG, payload)
            elif opcode == CLOSE:
                self.closed = True
            elif opcode in (0x0, 0x1, 0x2):  # continuation, text, binary
                if first & 0x80:
                    self.frames.append((now, self.partial + payload))
                    self.partial = b""
                else:
                    self.partial += payload
        del buf[:at]

    def send(self, opcode: int, payload: bytes) -> None:
        """A masked frame, as clients must send them (small payloads only)."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(
            bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during handshake"))


def handshake(url: str, token: str) -> bytes:
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if token:
        lines.append(f"Authorization: Token {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Watchers:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.urls = args.urls.split(",")
        self.connections: list[Connection] = []
        self.failed = 0
        self.retries = 0

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_PARALLEL)
        indexes = range(self.args.offset, self.args.offset + self.args.count)
        await asyncio.gather(*(self.connect_one(i, gate) for i in indexes))

    async def connect_one(self, index: int, gate: asyncio.Semaphore) -> None:
        url = self.urls[index % len(self.urls)]
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with gate:
                    connection = await self.open(url)
                self.connections.append(connection)
                return
            except Exception as exc:  # any failure: try again, then one watcher less
                print(f"connect {url}: {exc!r}", file=sys.stderr, flush=True)
                if attempt == ATTEMPTS:
                    self.failed += 1
                    return
                self.retries += 1
                await asyncio.sleep(attempt)

    async def open(self, url: str) -> Connection:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        request = handshake(url, self.args.token)
        _, connection = await loop.create_connection(
            lambda: Connection(request), parts.hostname, parts.port
        )
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            await connection.opened
        return connection

    def count(self) -> int:
        return sum(len(c.frames) for c in self.connections)

    def mark(self) -> None:
        for connection in self.connections:
            connection.frames.clear()

    def results(self) -> dict:
        parse = parse_app if self.args.mode == "app" else parse_relay
        return {
            "connected": len(self.connections),
            "failed": self.failed,
            "retries": self.retries,
            "closed": sum(c.closed for c in self.connections),
            "connections": [parse(c.frames) for c in self.connections],
        }


def parse_app(frames: list[tuple[int, bytes]]) -> dict:
    """Tokens of the app's `delta` frames: each token carries its emission time."""
    latencies, newest, seen, deltas = [], [], [], 0
    for received, data in frames:
        if not data.startswith(b'{"type":"delta"'):
            continue
        tokens = TOKEN.findall(json.loads(data)["text"].encode())
        if not tokens:
            continue
        deltas += 1
        for k, sent in tokens:
            seen.append(int(k))
            latencies.append((received - int(sent)) / 1e6)
        # The newest token of a delta waited for no coalescing: transport only.
        newest.append((received - int(tokens[-1][1])) / 1e6)
    return {"k": seen, "latency_ms": latencies, "newest_ms": newest, "frames": deltas}


def parse_relay(frames: list[tuple[int, bytes]]) -> dict:
    latencies, seen = [], []
    for received, data in frames:
        if match := TOKEN.match(data):
            seen.append(int(match.group(1)))
            latencies.append((received - int(match.group(2))) / 1e6)
    return {
        "k": seen,
        "latency_ms": latencies,
        "newest_ms": latencies,
        "frames": len(seen),
    }


async def commands(watchers: Watchers) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while line := (await reader.readline()).decode().strip():
        if line == "count":
            say(f"count {watchers.count()}")
        elif line == "mark":
            watchers.mark()
            say("marked")
        elif line in ("dump", "stop"):
            with open(watchers.args.out, "w") as out:
                json.dump(watchers.results(), out)
            if line == "stop":
                say("done")
                return
            watchers.mark()
            say("dumped")


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    watchers = Watchers(args)
    await watchers.connect_all()
    ok, failed, retries = len(watchers.connections), watchers.failed, watchers.retries
    say(f"connected {ok} {failed} {retries}")
    await commands(watchers)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", required=True, help="comma-separated ws:// URLs")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--mode", choices=["app", "relay"], required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
    sys.stdout.flush()
    os._exit(0)
