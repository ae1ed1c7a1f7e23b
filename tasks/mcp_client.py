"""The worker's MCP client: one session per server of `AGENT_MCP_SERVERS`.

The official SDK (`mcp`) is asyncio; the worker runs tasks on threads. So each
worker process has one hub: a daemon thread running an event loop that keeps a
session to every server open, lists its tools when it connects (so at worker start)
and again whenever the server says they changed, and stores each listing through
the domain (`chat.services.mcp_listing_store`) for every process to read. Task
threads call tools through `McpHub.call`, which waits for the loop's answer.

Each session lives in one task from open to close (`_Server.run`), as anyio, under
the SDK, requires; calls reach it through a queue. A session with nothing to do is
checked by listing again every PING_SECONDS; one that broke is opened again, and
a call not yet sent waits for the next session instead of failing.

A server that is down is retried in the background with backoff; meanwhile
`McpHub.tools` answers None for it and turns go on without its tools.
"""

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
from django.conf import settings
from django.db import close_old_connections
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    CallToolResult,
)

from .errors import PermanentError, TransientError

logger = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 1.0, 30.0
# A session without change events (servers before the 2026-07-28 protocol, or
# without `listen`) is listed again this often, so a dead one or an unannounced
# change is noticed.
PING_SECONDS = 15.0
MAX_PAGES = 20
# Errors with which a server refuses a call it understood: repeating cannot help.
REFUSALS = {INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND}


class Unreachable(TransientError):
    """The server cannot be reached now; nothing was sent to it."""


@dataclass(eq=False)
class _Job:
    """One tool call, queued for the task that owns the server's session."""

    tool: str
    arguments: dict[str, Any]
    sent: Callable[[], None]
    future: "asyncio.Future[CallToolResult]"
    was_sent: bool = False


def _settle(job: _Job, *, result: Any = None, error: Exception | None = None) -> None:
    if job.future.done():
        return  # the caller gave up waiting
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result)


class _Server:
    """One configured server: its session, owned from open to close by `run`'s task.

    anyio (under the SDK) requires a cancel scope to be left by the task that
    entered it: a transport opened in one task and closed in another dies with
    "Attempted to exit cancel scope in a different task". So nothing else touches
    the session's lifetime: callers put a `_Job` on `jobs`, and the owning task
    serves each in a child of a task group nested inside the session. A job not yet
    sent when a session breaks waits in the queue for the next one.
    """

    def __init__(self, config: dict[str, Any], timeout: float) -> None:
        self.name: str = config["name"]
        self.config = config
        self.timeout = timeout
        self.client: Client | None = None
        self.tools: list[dict[str, Any]] | None = None
        self.error = "not connected yet"
        self.up = asyncio.Event()
        self.broken = asyncio.Event()
        self.changed = asyncio.Event()
        self.jobs: asyncio.Queue[_Job] = asyncio.Queue()

    def _transport(self, stack: AsyncExitStack) -> Any:
        if "url" in self.config:
            http = httpx2.AsyncClient(
                headers=self.config.get("headers") or {},
                timeout=httpx2.Timeout(self.timeout, read=None),
            )
            stack.push_async_callback(http.aclose)
            return streamable_http_client(self.config["url"], http_client=http)
        command = self.config["command"]
        return StdioServerParameters(
            command=command[0], args=command[1:], env=self.config.get("env") or None
        )

    async def run(self) -> None:
        """Connect, list, serve calls, follow changes; on any failure wait and
        start over."""
        delay = RETRY_FIRST
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure of a session: retry it
                self.error = _describe(exc)
                logger.warning("MCP server %s: %s", self.name, self.error)
            if self.up.is_set():
                delay = RETRY_FIRST  # it was up: the first retry comes soon
            self._down()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _session(self) -> None:
        # One scope around everything, so the connect deadline nests outside the
        # transport's own scopes (a timeout around entering alone would be left
        # while they are still open).
        with anyio.CancelScope(deadline=anyio.current_time() + self.timeout) as scope:
            async with AsyncExitStack() as stack:
                client = Client(
                    self._transport(stack),
                    read_timeout_seconds=self.timeout,
                    message_handler=self._on_message,
                )
                await stack.enter_async_context(client)
                self.client = client
                self.broken.clear()
                await self._relist(client)
                scope.deadline = math.inf
                self.up.set()
                logger.info("MCP server %s: %d tools", self.name, len(self.tools or []))
                async with anyio.create_task_group() as group:
                    group.start_soon(self._follow, client)
                    group.start_soon(self._watch)
                    while True:
                        job = await self.jobs.get()
                        group.start_soon(self._serve, client, job)
        if scope.cancelled_caught:
            raise TimeoutError(f"no session within {self.timeout:g} s")

    async def _watch(self) -> None:
        await self.broken.wait()
        raise ConnectionError("a call found the session broken")

    async def _follow(self, client: Client) -> None:
        """Relist on every change the server reports, until the session breaks."""
        try:
            async with client.listen(tools_list_changed=True) as events:
                async for _event in events:
                    await self._relist(client)
            raise ConnectionError("the server closed its change stream")
        except ListenNotSupportedError:
            pass  # an older protocol: the server notifies unasked (`_on_message`)
        except MCPError as exc:
            if exc.code != METHOD_NOT_FOUND:
                raise
            # A server on the current protocol that does not offer `listen` (the
            # reference servers on PyPI): list again now and then instead.
        while True:
            with anyio.move_on_after(PING_SECONDS):
                await self.changed.wait()
            # A change, or a quiet while: listing again is both the check that the
            # session still answers (ping is gone from the current protocol) and
            # the way to see changes a server does not announce.
            self.changed.clear()
            with anyio.fail_after(self.timeout):
                await self._relist(client)

    async def _on_message(self, message: Any) -> None:
        method = getattr(getattr(message, "root", message), "method", None)
        if method == "notifications/tools/list_changed":
            self.changed.set()

    async def _relist(self, client: Client) -> None:
        listed: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            listed += [
                tool.model_dump(mode="json", by_alias=True, exclude_none=True)
                for tool in page.tools
            ]
            cursor = page.next_cursor
            if cursor is None:
                break
        if listed != self.tools:
            self.tools = listed
            await asyncio.to_thread(_store, self.name, listed)

    def _down(self) -> None:
        self.up.clear()
        self.client = None

    async def _serve(self, client: Client, job: _Job) -> None:
        """Send one queued call on this session and settle its future."""
        try:
            # A session closing as this task starts cancels it here, before `sent`.
            await anyio.lowlevel.checkpoint()
            if job.future.done():
                return  # its caller stopped waiting before it could be sent
            if _closed(client):
                # The server went away while idle (a stdio process that exited):
                # end the session and hold the call, unsent, until the
                # cancellation hands it to the next session (below).
                self.broken.set()
                await anyio.sleep_forever()
            job.sent()
            job.was_sent = True
            with anyio.fail_after(self.timeout):
                answer = await client.call_tool(job.tool, job.arguments)
        except anyio.get_cancelled_exc_class():
            # The session is closing under this call (another part of it broke).
            if job.was_sent:
                _settle(job, error=self._lost(job.tool))
            else:
                self.jobs.put_nowait(job)  # the next session sends it
            raise
        except TimeoutError:
            _settle(job, error=self._no_answer(job.tool))
        except MCPError as exc:
            if exc.code in REFUSALS:
                # The server understood the call and refused it (an unknown tool,
                # arguments it does not take): repeating cannot help.
                _settle(
                    job,
                    error=PermanentError(
                        f"MCP server {self.name} refused {job.tool}: {_describe(exc)}"
                    ),
                )
                return
            self._failed(job, exc)
        except Exception as exc:
            self._failed(job, exc)
        else:
            _settle(job, result=answer)

    def _failed(self, job: _Job, exc: Exception) -> None:
        # The session may be gone: `_watch` ends it and `run` reconnects.
        self.broken.set()
        _settle(
            job,
            error=TransientError(
                f"MCP server {self.name}: {job.tool} failed: {_describe(exc)}"
            ),
        )

    def _lost(self, tool: str) -> TransientError:
        return TransientError(
            f"MCP server {self.name}: the session closed during {tool}"
        )

    def _no_answer(self, tool: str) -> TransientError:
        return TransientError(
            f"MCP server {self.name}: no answer to {tool} within {self.timeout:g} s"
        )

    async def call(
        self, tool: str, arguments: dict[str, Any], sent: Callable[[], None]
    ) -> CallToolResult:
        """Queue the call for the session's task and wait for its answer; a call
        no session could take within the timeout was never sent (Unreachable)."""
        job = _Job(tool, arguments, sent, asyncio.get_running_loop().create_future())
        self.jobs.put_nowait(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.timeout)
        except TimeoutError:
            if not job.was_sent:
                job.future.cancel()
                raise Unreachable(
                    f"MCP server {self.name} cannot be reached ({self.error})"
                ) from None
        # Sent: `_serve` settles it within its own timeout.
        try:
            return await asyncio.wait_for(job.future, self.timeout + 5)
        except TimeoutError:
            raise self._no_answer(tool) from None

    async def connected(self, wait: float) -> None:
        try:
            await asyncio.wait_for(self.up.wait(), timeout=wait)
        except TimeoutError:
            raise Unreachable(
                f"MCP server {self.name} cannot be reached ({self.error})"
            ) from None


class McpHub:
    """The process's sessions to every configured MCP server, on one loop thread."""

    def __init__(self, servers: list[dict[str, Any]], timeout: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers = {s["name"]: _Server(s, timeout) for s in servers}
        self.timeout = timeout
        self._thread = threading.Thread(target=self._serve, name="mcp-hub", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        for server in self.servers.values():
            self.loop.create_task(server.run())
        self.loop.run_forever()

    def _wait(self, future: "Future[Any]", limit: float) -> Any:
        try:
            return future.result(timeout=limit)
        except FutureTimeout:
            future.cancel()
            raise TransientError("the MCP client did not answer in time") from None

    def tools(self, name: str, wait: float) -> list[dict[str, Any]] | None:
        """The server's tools, waiting up to `wait` s for it to connect; None while
        it cannot be reached."""
        server = self.servers[name]

        async def listed() -> list[dict[str, Any]] | None:
            try:
                await server.connected(wait)
            except Unreachable:
                return None
            return server.tools

        future = asyncio.run_coroutine_threadsafe(listed(), self.loop)
        found: list[dict[str, Any]] | None = self._wait(future, wait + 5)
        return found

    def close(self) -> None:
        """End every session (a stdio server's process stops) and the loop."""

        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    def error(self, name: str) -> str:
        return self.servers[name].error

    def call(
        self,
        name: str,
        tool: str,
        arguments: dict[str, Any],
        sent: Callable[[], None],
    ) -> CallToolResult:
        """Call `tool`; `sent()` runs just before the request leaves (after the
        session is known to be up), so a crash after it is known to be ambiguous."""
        server = self.servers.get(name)
        if server is None:
            raise PermanentError(f"No MCP server {name!r} is configured.")
        future = asyncio.run_coroutine_threadsafe(
            server.call(tool, arguments, sent), self.loop
        )
        answer: CallToolResult = self._wait(future, 2 * self.timeout + 5)
        return answer


def _store(name: str, tools: list[dict[str, Any]]) -> None:
    from chat import services

    try:
        services.mcp_listing_store(server=name, tools=tools)
    finally:
        close_old_connections()


def _closed(client: Client) -> bool:
    """Whether the session's connection is known to be closed (the server's end
    of a stdio pipe reached EOF). The SDK notices at once but says so only to the
    next request, after we would have marked it sent; so this reads its
    dispatcher's flag, and answers False if a later SDK moves it."""
    dispatcher = getattr(client.session, "_dispatcher", None)
    return getattr(dispatcher, "_closed", False) is True


def _describe(exc: BaseException) -> str:
    # Exception groups (anyio task groups) hide the cause one level down.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_hub: McpHub | None = None
_hub_lock = threading.Lock()


def hub() -> McpHub | None:
    """The process's hub, started on first use; None without MCP servers."""
    global _hub
    if not settings.AGENT_MCP_SERVERS:
        return None
    with _hub_lock:
        if _hub is None or not _hub._thread.is_alive():
            _hub = McpHub(settings.AGENT_MCP_SERVERS, settings.MCP_TIMEOUT)
        return _hub
