"""A lean HTTP/1.1 client for one thing: POST a JSON body, read an SSE answer.

The model's answer arrives as a few hundred small chunks. Through httpx (anyio,
httpcore, h11, the SDK's SSE decoder) each cost the worker several times what a bare
socket spends reading it (`make bench`: CPU per streamed chunk). Here the engine's
loop hands each read straight to a protocol that splits the chunked body into SSE
events and calls `on_event` with each event's data, in the same callback: no task
wake-up, no objects per chunk beyond the event's bytes.

Plain HTTP and HTTPS, kept-alive connections reused per host; the proxy settings
of the environment are the SDK's to honour (`tasks.model_client` uses the SDK then).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from functools import cache
from typing import cast
from urllib.parse import urlsplit

OnEvent = Callable[[bytes], None]


class StatusError(Exception):
    """The server answered with an error status; `body` is what it said."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class BrokenOff(ConnectionError):
    """The connection ended before the answer did."""


class Unreachable(ConnectionError):
    """No connection could be made (refused, unresolvable, timed out)."""


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Answer(asyncio.Protocol):
    """One connection; reads one response at a time (kept alive between them)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reset(None, None)

    def _reset(
        self, on_event: OnEvent | None, done: asyncio.Future[None] | None
    ) -> None:
        self._on_event = on_event
        self._done = done
        self._head = b""
        self._status = 0
        self._chunked = False
        self._length: int | None = None  # of the body, when not chunked
        self._keep = True
        self._body = b""  # an error's body
        self._rest = b""  # chunked framing not yet complete
        self._size = -1  # bytes left in the current chunk; -1 reading its size
        self._line = b""  # an SSE line not yet complete
        self._data = b""  # the current event's data
        self.received = 0
        self.last = 0.0

    def start(self, on_event: OnEvent, done: asyncio.Future[None]) -> None:
        self._reset(on_event, done)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio's classes; they have its methods.)
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            if self._status == 200 and self._length is None and not self._chunked:
                self._end()  # a body that lasts until the connection closes
            else:
                self._done.set_exception(
                    BrokenOff("the connection closed before the answer ended")
                )

    def data_received(self, data: bytes) -> None:
        if self._done is None or self._done.done():
            return
        self.received += len(data)
        try:
            if self._status == 0:
                data = self._read_head(data)
                if not data:
                    return
            self._read_body(data)
        except Exception as exc:
            self._fail(exc)

    def _read_head(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 65536:
                raise BrokenOff("the answer's head is too long")
            return b""
        head, data = self._head[:end], self._head[end + 4 :]
        lines = head.split(b"\r\n")
        self._status = int(lines[0].split(b" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
            elif name == b"content-length":
                self._length = int(value)
            elif name == b"connection" and value == b"close":
                self._keep = False
        if self._chunked:
            self._length = None
        if self._length == 0:
            self._end()
        return data

    def _read_body(self, data: bytes) -> None:
        if not self._chunked:
            if self._length is not None:
                self._length -= len(data)
            self._content(data)
            if self._length is not None and self._length <= 0:
                self._end()
            return
        buffer = self._rest + data if self._rest else data
        self._rest = b""
        at, end = 0, len(buffer)
        while at < end:
            if self._size < 0:  # at a chunk's size line
                line_end = buffer.find(b"\r\n", at)
                if line_end < 0:
                    self._rest = buffer[at:]
                    return
                size = int(buffer[at:line_end].split(b";", 1)[0], 16)
                at = line_end + 2
                if size == 0:
                    self._end()  # (trailers, if any, are not read: none are sent)
                    return
                self._size = size
            if self._size > 0:
                take = min(self._size, end - at)
                self._content(buffer[at : at + take])
                at += take
                self._size -= take
                if self._size > 0:
                    return
            if end - at < 2:  # the CRLF that ends the chunk
                self._rest = buffer[at:]
                return
            at += 2
            self._size = -1

    def _content(self, data: bytes) -> None:
        if self._status != 200:
            self._body += data
            return
        lines = (self._line + data).split(b"\n")
        self._line = lines.pop()
        on_event = self._on_event
        assert on_event is not None
        for line in lines:
            if line.startswith(b"data:"):
                value = line[5:].strip()
                self._data = self._data + b"\n" + value if self._data else value
            elif self._data and not line.strip():
                event, self._data = self._data, b""
                on_event(event)

    def _end(self) -> None:
        if self._status != 200:
            self._fail(StatusError(self._status, self._body))
            return
        line = self._line
        if line.startswith(b"data:"):  # a last event that no blank line ended
            value = line[5:].strip()
            self._data = self._data + b"\n" + value if self._data else value
        if self._data:
            assert self._on_event is not None
            self._on_event(self._data)
        assert self._done is not None
        if not self._done.done():
            self._done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._keep = False
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    @property
    def reusable(self) -> bool:
        return self._keep and not self.closed and self._status == 200

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Client:
    """POSTs to one base URL from the loop it was built on, connections kept alive."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        self._path = parts.path.rstrip("/")
        netloc = parts.netloc.rpartition("@")[2]
        self._head = "".join(
            f"{name}: {value}\r\n"
            for name, value in {
                "Host": netloc,
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
                **headers,
            }.items()
        )
        self.timeout = timeout
        self._idle: list[_Answer] = []

    async def _connect(self) -> _Answer:
        loop = asyncio.get_running_loop()
        try:
            _, answer = await asyncio.wait_for(
                loop.create_connection(
                    _Answer,
                    self._host,
                    self._port,
                    ssl=_tls() if self._tls else None,
                ),
                self.timeout,
            )
        except OSError as exc:  # TimeoutError too
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return answer

    async def post(self, path: str, body: bytes, on_event: OnEvent) -> None:
        """Send `body`; call `on_event` with each SSE event's data until the answer
        ends. Raises StatusError, BrokenOff, TimeoutError, OSError."""
        request = (
            f"POST {self._path}{path} HTTP/1.1\r\n{self._head}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        while self._idle:
            answer = self._idle.pop()
            if answer.closed:
                continue
            try:
                return await self._exchange(answer, request, on_event)
            except BrokenOff:
                # A kept-alive connection the server closed meanwhile: if it said
                # nothing, the request never reached it; try a new connection.
                if answer.received:
                    raise
        answer = await self._connect()
        await self._exchange(answer, request, on_event)

    async def _exchange(
        self, answer: _Answer, request: bytes, on_event: OnEvent
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        answer.start(on_event, done)
        assert answer.transport is not None
        answer.transport.write(request)
        watch = _Watch(loop, answer, done, self.timeout)
        try:
            await done
        except BaseException:
            answer.close()
            raise
        finally:
            watch.cancel()
        if answer.reusable:
            self._idle.append(answer)
        else:
            answer.close()

    def close(self) -> None:
        for answer in self._idle:
            answer.close()
        self._idle.clear()


class _Watch:
    """Fails the answer when nothing arrived for `timeout` seconds (one timer per
    answer, re-armed from the bytes count, not per read)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        answer: _Answer,
        done: asyncio.Future[None],
        timeout: float,
    ) -> None:
        self._loop, self._answer, self._done = loop, answer, done
        self._timeout = timeout
        self._seen = answer.received
        self._handle = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        if self._done.done():
            return
        if self._answer.received == self._seen:
            self._done.set_exception(TimeoutError("the model went silent"))
            return
        self._seen = self._answer.received
        self._handle = self._loop.call_later(self._timeout, self._check)

    def cancel(self) -> None:
        self._handle.cancel()
