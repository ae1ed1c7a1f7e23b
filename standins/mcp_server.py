"""A local MCP server (a small notes service), for development, tests and the demo.

Built on the official MCP Python SDK (`mcp` 2.x): the tools are registered on the
SDK's `MCPServer`, which serves both protocol eras - the 2026-07-28 per-request
envelope (what a default `mcp.Client` negotiates) and the 2025 `initialize`
handshake - over Streamable HTTP at `/mcp` (uvicorn) or over stdio. Notes live in
memory, seeded with three. Control endpoints under `/_control/` (HTTP only, no
auth) let tests read the calls and effects logs, inject faults and change the tool
list at run time; a change is announced to clients on `subscriptions/listen`
streams (2026-07-28) and as `notifications/tools/list_changed` on handshake-era
sessions.

    python -m standins.mcp_server --host 127.0.0.1 --port 8004 [--token T]
    python -m standins.mcp_server --stdio

With `--stdio`, effects are appended as JSON lines to the file named by
`MCP_STANDIN_EFFECTS`, when set.
"""

import argparse
import hmac
import json
import logging
import os
import re
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("standins.mcp_server")

SERVER_NAME = "notes-standin"
MCP_PATH = "/mcp"
CONTROL_PREFIX = "/_control/"
EFFECTS_ENV = "MCP_STANDIN_EFFECTS"
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LEGACY_SESSIONS = 256
NOTIFY_TIMEOUT = 2.0

SEED = [
    (
        "Launch checklist",
        "Confirm the release notes, tag v2.4 and tell support before Friday.",
        "2025-01-06T09:00:00Z",
    ),
    (
        "Customer call: Acme",
        "Acme wants single sign-on by March; follow up with pricing for 50 seats.",
        "2025-01-07T14:30:00Z",
    ),
    (
        "Groceries",
        "Oat milk, coffee beans, lemons and a birthday candle.",
        "2025-01-08T18:15:00Z",
    ),
]


def now() -> str:
    """The current UTC time, as the notes and logs write it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Results, as published in the tools' output schemas


class Note(BaseModel):
    """One note."""

    id: str = Field(description="The note's id, such as n1.")
    title: str
    text: str
    created: str = Field(description="When the note was created (UTC, ISO 8601).")


class NoteList(BaseModel):
    """The notes a search found."""

    notes: list[Note]


class Deletion(BaseModel):
    """What delete_note did."""

    id: str
    deleted: bool = Field(description="False when there was no such note.")


# The store


class NotesStore:
    """The notes plus the calls, effects and faults logs, guarded by one lock.

    Tools run on the server's event loop; the lock is for readers in other threads
    (tests holding the store of an in-process server).
    """

    def __init__(self, effects_path: str | Path | None = None) -> None:
        self.lock = threading.RLock()
        self.effects_path = Path(effects_path) if effects_path else None
        self.reset()

    def reset(self) -> None:
        """Reseed the notes and forget calls, effects and faults."""
        with self.lock:
            self.notes: dict[str, dict] = {}
            for number, (title, text, created) in enumerate(SEED, start=1):
                note_id = f"n{number}"
                self.notes[note_id] = {
                    "id": note_id,
                    "title": title,
                    "text": text,
                    "created": created,
                }
            self.next_number = len(SEED) + 1  # ids are never reused
            self.calls: list[dict] = []
            self.effects: list[dict] = []
            self.faults: list[dict] = []

    # Notes

    def search(self, query: str, limit: int) -> list[dict]:
        """Notes containing every word of `query` (case-insensitive), oldest first."""
        words = query.lower().split()
        with self.lock:
            found = [
                dict(note)
                for note in self.notes.values()
                if all(w in f"{note['title']}\n{note['text']}".lower() for w in words)
            ]
        return found[:limit]

    def get(self, note_id: str) -> dict | None:
        with self.lock:
            note = self.notes.get(note_id.strip())
            return dict(note) if note else None

    def add(self, title: str, text: str) -> dict:
        with self.lock:
            note_id = f"n{self.next_number}"
            self.next_number += 1
            note = {"id": note_id, "title": title, "text": text, "created": now()}
            self.notes[note_id] = note
            return dict(note)

    def delete(self, note_id: str) -> bool:
        with self.lock:
            return self.notes.pop(note_id.strip(), None) is not None

    # Logs

    def record_call(self, tool: Any, arguments: Any) -> None:
        with self.lock:
            self.calls.append({"tool": tool, "arguments": arguments, "at": now()})

    def record_effect(self, tool: str, arguments: dict, result: Any) -> None:
        """Log a change of the store; in stdio mode also append it to the file."""
        effect = {"tool": tool, "arguments": arguments, "result": result}
        with self.lock:
            self.effects.append(effect)
            if self.effects_path is not None:
                with self.effects_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(effect) + "\n")

    # Faults

    def add_faults(self, faults: list[dict]) -> None:
        """Queue faults; each answers `count` matching calls (default 1)."""
        with self.lock:
            for fault in faults:
                self.faults.append({"count": 1, **fault})

    def take_fault(self, tool: str) -> dict | None:
        """The first queued fault for `tool` (or `*`), used up by one call."""
        with self.lock:
            for fault in self.faults:
                if fault.get("tool", "*") in ("*", tool):
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                    return dict(fault)
        return None

    def snapshot(self) -> dict:
        """Calls, effects and faults, copied (for the control endpoints)."""
        with self.lock:
            return json.loads(
                json.dumps(
                    {
                        "calls": self.calls,
                        "effects": self.effects,
                        "faults": self.faults,
                    }
                )
            )


def check_faults(body: Any) -> list[dict] | str:
    """The faults of a `/_control/faults` body, or what is wrong with it."""
    faults = body.get("faults") if isinstance(body, dict) else None
    if not isinstance(faults, list):
        return 'expected {"faults": [{"tool": ..., ...}]}'
    for fault in faults:
        if not isinstance(fault, dict) or not isinstance(fault.get("tool", "*"), str):
            return "each fault is an object with a tool name (or '*')"
        unknown = set(fault) - {"tool", "delay", "error", "after_apply", "count"}
        if unknown:
            return f"unknown fault keys: {sorted(unknown)}"
        delay = fault.get("delay", 0)
        if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
            return "delay is a number of seconds"
        if "error" in fault and not isinstance(fault["error"], str):
            return "error is the text the call answers with"
        if not isinstance(fault.get("after_apply", False), bool):
            return "after_apply is a boolean"
        count = fault.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            return "count is a positive integer"
    return faults


# Tool results


def text_result(text: str, structured: Any = None) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured
    )


def error_result(text: str) -> CallToolResult:
    """A tool error: the model sees `text`; it is not a protocol error."""
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def render_note(note: dict) -> str:
    heading = f"{note['id']}: {note['title']}"
    return f"{heading}\n\n{note['text']}\n\n(created {note['created']})"


def render_search(query: str, notes: list[dict]) -> str:
    if not notes:
        return f"No notes match {query!r}."
    lines = [f"{len(notes)} note(s) match {query!r}:"]
    for note in notes:
        snippet = note["text"] if len(note["text"]) <= 80 else note["text"][:77] + "..."
        lines.append(f"- {note['id']} {note['title']}: {snippet}")
    return "\n".join(lines)


# The server

NoteId = Annotated[
    str, Field(description="The note's id, such as n1.", min_length=1, max_length=32)
]


class NotesServer:
    """The SDK's `MCPServer` over one store, plus what the control endpoints change.

    The four note tools are registered with typed, described parameters, so the SDK
    derives their input schemas (and output schemas from the result models).
    A middleware logs every `tools/call`, remembers handshake-era sessions so a tool
    list change can be pushed to them, and advertises `tools.listChanged` in the
    `initialize` result (the SDK leaves it false on that path).
    """

    def __init__(self, store: NotesStore | None = None) -> None:
        self.store = store if store is not None else NotesStore()
        # Events published here reach every open `subscriptions/listen` stream.
        self.bus = InMemorySubscriptionBus()
        # Handshake-era sessions by transport session id ("stdio" on stdio).
        self.legacy_sessions: OrderedDict[str, ServerSession] = OrderedDict()
        self.mcp = _new_mcp_server(
            name=SERVER_NAME,
            title="Notes (stand-in)",
            version="1.0.0",
            instructions=(
                "A small notes service. Search or read notes freely; adding or "
                "deleting a note changes what everyone sees."
            ),
            subscriptions=self.bus,
            middleware=[self.observe],
            log_level="WARNING",
        )
        self.builtin = self._builtin_tools()
        self.dynamic: set[str] = set()  # added through /_control/tools
        self.builtin_removed: set[str] = set()
        self.app: Starlette | BearerGate | None = None
        for name, (fn, options) in self.builtin.items():
            self.mcp.add_tool(fn, name=name, **options)

    # Tools

    def _builtin_tools(self) -> dict[str, tuple[Callable[..., Any], dict]]:
        store = self.store

        async def search_notes(
            query: Annotated[
                str,
                Field(
                    description="Words to look for in titles and texts; "
                    "empty matches every note.",
                    max_length=200,
                ),
            ],
            limit: Annotated[
                int, Field(description="At most this many notes.", ge=1, le=50)
            ] = 10,
        ) -> Annotated[CallToolResult, NoteList]:
            """Search the notes; every word must appear in the title or the text."""

            def act() -> CallToolResult:
                notes = store.search(query, limit)
                return text_result(render_search(query, notes), {"notes": notes})

            return await self.run("search_notes", act)

        async def get_note(id: NoteId) -> Annotated[CallToolResult, Note]:
            """Read one note, with its full text."""

            def act() -> CallToolResult:
                note = store.get(id)
                if note is None:
                    return error_result(
                        f"No note has the id {id!r}. Use search_notes to find ids."
                    )
                return text_result(render_note(note), note)

            return await self.run("get_note", act)

        async def add_note(
            title: Annotated[
                str,
                Field(description="A short title.", min_length=1, max_length=200),
            ],
            text: Annotated[
                str, Field(description="The note's text.", max_length=10_000)
            ],
        ) -> Annotated[CallToolResult, Note]:
            """Add a note. Calling it twice adds two notes."""

            def act() -> CallToolResult:
                note = store.add(title, text)
                store.record_effect("add_note", {"title": title, "text": text}, note)
                return text_result(f"Added note {note['id']}: {note['title']}", note)

            return await self.run("add_note", act)

        async def delete_note(id: NoteId) -> Annotated[CallToolResult, Deletion]:
            """Delete a note for good. Deleting a missing note changes nothing."""

            def act() -> CallToolResult:
                deleted = store.delete(id)
                result = {"id": id, "deleted": deleted}
                if not deleted:
                    return text_result(
                        f"There is no note {id!r}; nothing was deleted.", result
                    )
                store.record_effect("delete_note", {"id": id}, result)
                return text_result(f"Deleted note {id}.", result)

            return await self.run("delete_note", act)

        def annotations(title: str, **hints: bool) -> dict:
            return {
                "annotations": ToolAnnotations(
                    title=title, open_world_hint=False, **hints
                ),
                "title": title,
            }

        return {
            "search_notes": (
                search_notes,
                annotations("Search notes", read_only_hint=True, idempotent_hint=True),
            ),
            "get_note": (get_note, annotations("Read a note", read_only_hint=True)),
            "add_note": (
                add_note,
                annotations(
                    "Add a note",
                    read_only_hint=False,
                    destructive_hint=False,
                    idempotent_hint=False,
                ),
            ),
            "delete_note": (
                delete_note,
                annotations(
                    "Delete a note",
                    read_only_hint=False,
                    destructive_hint=True,
                    idempotent_hint=True,
                ),
            ),
        }

    async def run(self, tool: str, act: Callable[[], CallToolResult]) -> CallToolResult:
        """Run `act` (which may change the store) under the next fault for `tool`.

        A delay sleeps before acting, or after it with `after_apply`; an error is
        answered instead of acting, or after acting with `after_apply`.
        """
        fault = self.store.take_fault(tool) or {}
        delay = float(fault.get("delay") or 0)
        after = bool(fault.get("after_apply"))
        error = fault.get("error")
        if delay and not after:
            await anyio.sleep(delay)
        if error is not None and not after:
            return error_result(error)
        result = act()
        if delay and after:
            await anyio.sleep(delay)
        if error is not None:
            return error_result(error)
        return result

    def tool_names(self) -> list[str]:
        """The names of the tools offered now."""
        builtin = [name for name in self.builtin if name not in self.builtin_removed]
        return builtin + sorted(self.dynamic)

    def add_echo_tool(self, name: str, description: str, read_only: bool) -> None:
        """Add (or replace) a tool that answers with the arguments it was given."""
        if name in self.dynamic or name in self.builtin:
            self.remove_tool(name)

        async def echo(ctx: Context) -> CallToolResult:
            params = ctx.request_context.params or {}
            arguments = params.get("arguments") or {}

            def act() -> CallToolResult:
                structured = {"tool": name, "arguments": arguments}
                return text_result(json.dumps(structured), structured)

            return await self.run(name, act)

        self.mcp.add_tool(
            echo,
            name=name,
            title=name,
            description=description,
            annotations=ToolAnnotations(
                title=name, read_only_hint=read_only, open_world_hint=False
            ),
        )
        self.dynamic.add(name)

    def remove_tool(self, name: str) -> None:
        self.mcp.remove_tool(name)
        self.dynamic.discard(name)
        if name in self.builtin:
            self.builtin_removed.add(name)

    def restore_tools(self) -> bool:
        """Back to the four note tools, in their order; whether anything changed."""
        if not (self.dynamic or self.builtin_removed):
            return False
        for name in self.tool_names():
            self.mcp.remove_tool(name)
        for name, (fn, options) in self.builtin.items():
            self.mcp.add_tool(fn, name=name, **options)
        self.dynamic.clear()
        self.builtin_removed.clear()
        return True

    async def tools_changed(self) -> None:
        """Tell connected clients the tool list changed.

        2026-07-28 clients hear it on their `subscriptions/listen` streams;
        handshake-era sessions get `notifications/tools/list_changed` on their
        standalone stream (the HTTP GET stream, or the stdio pipe).
        """
        await self.bus.publish(ToolsListChanged())
        for key, session in list(self.legacy_sessions.items()):
            try:
                with anyio.fail_after(NOTIFY_TIMEOUT):
                    await session.send_tool_list_changed()
            except Exception:  # a session that has gone away: forget it
                log.info("could not notify session %s; forgetting it", key[:16])
                self.legacy_sessions.pop(key, None)

    # Middleware

    async def observe(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Server middleware: sees every inbound request and notification."""
        if ctx.method == "tools/call" and ctx.request_id is not None:
            params = ctx.params or {}
            self.store.record_call(params.get("name"), params.get("arguments") or {})
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._remember(ctx)
        result = await call_next(ctx)
        if ctx.method == "initialize" and isinstance(result, dict):
            tools = result.get("capabilities", {}).get("tools")
            if isinstance(tools, dict):
                tools["listChanged"] = True
        return result

    def _remember(self, ctx: ServerRequestContext[Any, Any]) -> None:
        """Keep a handshake-era session's proxy, to push list changes to it."""
        headers = getattr(ctx.request, "headers", None)
        key = "stdio" if headers is None else headers.get("mcp-session-id")
        if not key:
            return  # the opening initialize POST; its session id comes next time
        self.legacy_sessions[key] = ctx.session
        self.legacy_sessions.move_to_end(key)
        while len(self.legacy_sessions) > MAX_LEGACY_SESSIONS:
            self.legacy_sessions.popitem(last=False)

    # HTTP

    def http_app(
        self, *, token: str | None = None, host: str = "127.0.0.1"
    ) -> "Starlette | BearerGate":
        """The Streamable HTTP app: MCP at `/mcp`, plus the control endpoints.

        Once per server: the app owns the SDK's (single-use) session manager.
        """
        if self.app is not None:
            raise RuntimeError("this NotesServer already has its HTTP app")
        self._add_control_routes()
        app = self.mcp.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
        app.state.notes = self
        self.app = BearerGate(app, token) if token else app
        return self.app

    def _add_control_routes(self) -> None:
        route = self.mcp.custom_route
        store = self.store

        @route("/_control/health", methods=["GET"])
        async def health(request: Request) -> Response:
            return JSONResponse({"ok": True})

        @route("/_control/calls", methods=["GET"])
        async def calls(request: Request) -> Response:
            return JSONResponse({"calls": store.snapshot()["calls"]})

        @route("/_control/effects", methods=["GET"])
        async def effects(request: Request) -> Response:
            return JSONResponse({"effects": store.snapshot()["effects"]})

        @route("/_control/reset", methods=["POST"])
        async def reset(request: Request) -> Response:
            store.reset()
            if self.restore_tools():
                await self.tools_changed()
            return JSONResponse({"ok": True})

        @route("/_control/faults", methods=["POST"])
        async def faults(request: Request) -> Response:
            checked = check_faults(await _json_body(request))
            if isinstance(checked, str):
                return JSONResponse({"error": checked}, status_code=400)
            store.add_faults(checked)
            return JSONResponse({"faults": store.snapshot()["faults"]})

        @route("/_control/tools", methods=["GET", "POST"])
        async def tools(request: Request) -> Response:
            if request.method == "POST":
                problem = await self._change_tools(await _json_body(request))
                if problem:
                    return JSONResponse({"error": problem}, status_code=400)
            return JSONResponse({"tools": self.tool_names()})

    async def _change_tools(self, body: Any) -> str | None:
        """Apply a `/_control/tools` body and notify; what is wrong with it, if so."""
        if not isinstance(body, dict) or set(body) - {"add", "remove"}:
            return (
                'expected {"add": [{"name", "description", "read_only"?}], '
                '"remove": [names]}'
            )
        adds, removes = body.get("add") or [], body.get("remove") or []
        if not isinstance(adds, list) or not isinstance(removes, list):
            return "add and remove are lists"
        for spec in adds:
            if not isinstance(spec, dict) or not TOOL_NAME.match(str(spec.get("name"))):
                return "each added tool needs a name of letters, digits, _ . or -"
            if not isinstance(spec.get("description", ""), str):
                return "description is text"
            if not isinstance(spec.get("read_only", False), bool):
                return "read_only is a boolean"
        known = set(self.tool_names()) | {str(spec["name"]) for spec in adds}
        for name in removes:
            if name not in known:
                return f"no tool named {name!r}"
        for spec in adds:
            self.add_echo_tool(
                str(spec["name"]),
                spec.get("description") or f"Echoes its arguments ({spec['name']}).",
                bool(spec.get("read_only", False)),
            )
        for name in removes:
            self.remove_tool(name)
        await self.tools_changed()
        return None


def _new_mcp_server(**options: Any) -> MCPServer:
    """An `MCPServer`, without letting its constructor configure logging.

    The constructor calls `logging.basicConfig`, which in a process whose root
    logger has no handler yet (a test run, the demo) would install one.
    """
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        return MCPServer(**options)
    finally:
        root.removeHandler(placeholder)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


class BearerGate:
    """Refuses requests outside `/_control/` without `Authorization: Bearer <token>`.

    Answers 401 the way the SDK's own bearer middleware does.
    """

    def __init__(self, app: Starlette, token: str) -> None:
        self.app = app
        self.state = app.state  # as on the app itself
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIX):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                description = "Authentication required"
                answer = JSONResponse(
                    {"error": "invalid_token", "error_description": description},
                    status_code=401,
                    headers={
                        "WWW-Authenticate": (
                            f'Bearer error="invalid_token", '
                            f'error_description="{description}"'
                        )
                    },
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def make_app(
    store: NotesStore | None = None,
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
) -> Starlette | BearerGate:
    """The ASGI app serving MCP at `/mcp` and the control endpoints.

    `host` is the host the server is reached on: for 127.0.0.1, localhost and ::1
    the SDK turns on DNS-rebinding protection (Host and Origin must be local).
    Each app runs once (its lifespan starts the SDK's session manager).
    """
    return NotesServer(store).http_app(token=token, host=host)


# Serving


class _Uvicorn(uvicorn.Server):
    """A uvicorn server that reports once it is listening and the app started."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_started()


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_config(app: ASGIApp, *, access_log: bool) -> uvicorn.Config:
    # log_config=None: uvicorn's default sends access lines to stdout, which the
    # process that started us may not be reading.
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )


class RunningServer:
    """A stand-in served by uvicorn in a background thread (see `serve_in_thread`)."""

    def __init__(
        self,
        store: NotesStore | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        app = make_app(store, token=token, host=host)
        self.notes: NotesServer = app.state.notes
        self.store = self.notes.store
        self._socket = bind_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        self.base_url = base_url(host, self.port)
        self.url = self.base_url + MCP_PATH
        started = threading.Event()
        self._server = _Uvicorn(_uvicorn_config(app, access_log=False), started.set)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"mcp-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        while not started.wait(0.05):
            if not self._thread.is_alive():
                self._socket.close()
                raise RuntimeError("the MCP stand-in did not start")

    def control_url(self, name: str) -> str:
        return f"{self.base_url}{CONTROL_PREFIX}{name}"

    def stop(self) -> None:
        """Shut down (open streams get a second to finish) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        self._socket.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as `url, stop`."""
        return iter((self.url, self.stop))


def serve_in_thread(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    store: NotesStore | None = None,
    token: str | None = None,
) -> RunningServer:
    """Serve over HTTP in a daemon thread; returns once it accepts connections.

    `server.url` is the MCP endpoint, `server.control_url("effects")` a control
    endpoint, `server.store` the store, `server.stop()` shuts it down; the result
    also unpacks as `url, stop = serve_in_thread()`.
    """
    return RunningServer(store, host=host, port=port, token=token)


def run_http(host: str, port: int, token: str | None = None) -> None:
    """Serve over HTTP until interrupted, announcing the URL once listening."""
    sock = bind_socket(host, port)
    url = base_url(host, sock.getsockname()[1]) + MCP_PATH
    app = make_app(NotesStore(), token=token, host=host)

    def announce() -> None:
        print(f"mcp standin listening on {url}", flush=True)

    server = _Uvicorn(_uvicorn_config(app, access_log=True), announce)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def run_stdio(store: NotesStore | None = None) -> None:
    """Serve MCP over stdin/stdout until stdin closes."""
    if store is None:
        store = NotesStore(effects_path=os.environ.get(EFFECTS_ENV) or None)
    anyio.run(NotesServer(store).mcp.run_stdio_async)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8004)
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument(
        "--stdio", action="store_true", help="speak MCP over stdin/stdout instead"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("mcp").setLevel(logging.WARNING)
    try:
        if args.stdio:
            run_stdio()
        else:
            run_http(args.host, args.port, token=args.token)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
