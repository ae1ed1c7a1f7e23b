"""A local server that speaks OpenAI's Chat Completions wire protocol.

The app, its tests and its benchmarks talk to this instead of api.openai.com
when they run offline. Answers come from the deterministic `demo_model`;
streaming, usage, errors and latency behave like the real API closely enough
for the `openai` SDK. Tests steer it through `/_control/...` endpoints: queue
faults (rate limits, dropped connections, slow answers), change the token
delay, and read back every request the app sent. `/_control/config {"dialect": ...}`
makes it stream as other OpenAI-compatible servers do (see DIALECTS).

Run it with `python -m standins.openai_server --port 8001`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from standins import demo_model

DEFAULT_TOKEN_DELAY = 0.02
MAX_LOGGED_REQUESTS = 500
COMPLETIONS_PATH = "/v1/chat/completions"

# OpenAI's error `type` and `code` for each status a fault can answer with.
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (injected fault)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", None, "Invalid URL."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (injected fault)."),
    500: ("server_error", None, "The server had an error (injected fault)."),
    503: ("server_error", None, "The engine is currently overloaded (injected)."),
}
FAULT_KINDS = ("status", "disconnect_after_chunks", "delay", "length_after_tokens")

# How OpenAI-compatible servers stream differently from OpenAI; each is legal for a
# client that reads chunks as the API reference describes them, and the model client
# is tested against every one (tests/tasks/test_model.py).
DIALECTS = {
    "openai": "as api.openai.com streams",
    "usage-choices-null": 'the usage chunk says "choices": null',
    "usage-without-choices": 'the usage chunk has no "choices" at all',
    "no-usage": "no usage chunk, even when asked for one",
    "role-only-first": "the first chunk carries the role only, no content",
    "empty-choices": 'chunks with "choices": [] before and among the deltas',
    "changing-ids": "a new chunk id in every chunk, the tool call's id and name "
    "repeated (with new ids) in each of its pieces",
    "split-anywhere": "text and arguments cut into one-character pieces, arguments "
    "starting in the chunk that names the call",
}


class Abort(Exception):
    """Raised to drop the connection without finishing the response."""


@dataclass
class Settings:
    """What tests may change at runtime through `/_control/config`."""

    token_delay: float = DEFAULT_TOKEN_DELAY
    timestamp_tokens: bool = False
    dialect: str = "openai"


class State:
    """The server's mutable state, shared by all handler threads."""

    def __init__(self, defaults: Settings) -> None:
        self.lock = threading.Lock()
        self.defaults = defaults
        self.settings = Settings(**asdict(defaults))
        self.faults: deque[dict[str, Any]] = deque()
        # Scripted replies that stand in for the demo model, one per completion.
        self.script: deque[demo_model.Reply] = deque()
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_REQUESTS)

    def reset(self) -> None:
        """Forget faults and requests and restore the settings the server began with."""
        with self.lock:
            self.settings = Settings(**asdict(self.defaults))
            self.faults.clear()
            self.script.clear()
            self.requests.clear()

    def snapshot(self) -> Settings:
        """A copy of the settings, so a running answer is not changed midway."""
        with self.lock:
            return Settings(**asdict(self.settings))

    def next_reply(self) -> demo_model.Reply | None:
        """The next scripted reply, if a test queued one."""
        with self.lock:
            return self.script.popleft() if self.script else None

    def next_fault(self) -> dict[str, Any] | None:
        """Take one use of the fault at the head of the queue, if any."""
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault["count"] -= 1
            if fault["count"] <= 0:
                self.faults.popleft()
            return dict(fault)


# ---------------------------------------------------------------------------
# Validation of control payloads.


def parse_config(body: Any) -> dict[str, Any]:
    """The settings a `/_control/config` body changes; ValueError when invalid."""
    if not isinstance(body, dict) or set(body) - {
        "token_delay",
        "timestamp_tokens",
        "dialect",
    }:
        raise ValueError(
            "expected {token_delay?: number, timestamp_tokens?: bool, dialect?: str}"
        )
    if body.get("dialect", "openai") not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}")
    delay = body.get("token_delay", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise ValueError("token_delay must be a number >= 0")
    if not isinstance(body.get("timestamp_tokens", False), bool):
        raise ValueError("timestamp_tokens must be true or false")
    return body


def parse_fault(raw: Any) -> dict[str, Any]:
    """One fault of a `/_control/faults` body, with its count; ValueError if bad."""
    if not isinstance(raw, dict):
        raise ValueError("each fault must be an object")
    kinds = [k for k in FAULT_KINDS if k in raw]
    if len(kinds) != 1 or set(raw) - {*FAULT_KINDS, "count"}:
        raise ValueError(f"each fault needs exactly one of {', '.join(FAULT_KINDS)}")
    value, count = raw[kinds[0]], raw.get("count", 1)
    if kinds[0] == "status" and value not in ERRORS:
        raise ValueError(f"status must be one of {sorted(ERRORS)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{kinds[0]} must be a number >= 0")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be an integer >= 1")
    return {kinds[0]: value, "count": count}


def parse_script(body: Any) -> list[demo_model.Reply]:
    """The replies of a `/_control/script` body, each repeated `count` times."""
    if not isinstance(body, dict) or not isinstance(body.get("replies"), list):
        raise ValueError('expected {"replies": [...]}')
    replies: list[demo_model.Reply] = []
    for raw in body["replies"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("text", ""), str):
            raise ValueError("each reply is an object with text and/or tool_calls")
        calls = raw.get("tool_calls", [])
        if not isinstance(calls, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls
        ):
            raise ValueError("tool_calls is a list of {name, arguments}")
        count = raw.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be an integer >= 1")
        pairs = [(c["name"], c.get("arguments", {})) for c in calls]
        reply = demo_model.Reply(text=raw.get("text", ""), tool_calls=pairs)
        replies += [reply] * count
    return replies


# ---------------------------------------------------------------------------
# Building answers in OpenAI's shapes.


def error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def split_tokens(text: str) -> list[str]:
    """`text` as streamed tokens: each word with the whitespace after it."""
    return re.findall(r"\S+\s*|\s+", text)


def split_arguments(arguments: str) -> list[str]:
    """A tool call's JSON arguments cut into 2-3 pieces, as OpenAI streams them.

    Clients must join the pieces before parsing; cutting mid-token checks that.
    """
    if len(arguments) < 2:
        return [arguments]
    pieces = 3 if len(arguments) >= 6 else 2
    size = -(-len(arguments) // pieces)
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def count_words(messages: list[dict[str, Any]]) -> int:
    """An approximate prompt size: words of every message plus a few per message."""
    total = 0
    for message in messages:
        total += 3 + len(demo_model.content_text(message).split())
        total += len(json.dumps(message.get("tool_calls") or []).split())
    return total


class Answer:
    """One completion: the demo model's reply to a request, ready to send."""

    def __init__(
        self,
        request: dict[str, Any],
        settings: Settings,
        scripted: demo_model.Reply | None = None,
    ) -> None:
        messages = request["messages"]
        self.reply = scripted or demo_model.respond(messages, request.get("tools"))
        self.settings = settings
        self.model = str(request.get("model") or "demo")
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.prompt_tokens = count_words(messages)
        self.calls = [
            # A scripted call may carry raw (even broken) argument text.
            (
                demo_model.tool_call_id(messages, i),
                name,
                args if isinstance(args, str) else json.dumps(args),
            )
            for i, (name, args) in enumerate(self.reply.tool_calls)
        ]
        self.completion_tokens = 0

    @property
    def finish_reason(self) -> str:
        """ "tool_calls" when the answer calls tools, else "stop"."""
        return "tool_calls" if self.calls else "stop"

    def usage(self) -> dict[str, int]:
        """Token counts in OpenAI's shape, counting what was produced so far."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def tokens(self) -> Iterator[str]:
        """The text token by token, each after the configured delay.

        Lazy on purpose: a timestamped token reads the clock right before it is
        written, so a benchmark measures delivery latency and nothing else.
        """
        stamp = self.settings.timestamp_tokens and self.reply.count_to is not None
        for k, token in enumerate(split_tokens(self.reply.text), start=1):
            self.pause()
            self.completion_tokens += 1
            yield f"{k}@{time.time_ns()} " if stamp else token

    def pause(self) -> None:
        """Wait the token delay (skipped at zero, which benchmarks use)."""
        if self.settings.token_delay > 0:
            time.sleep(self.settings.token_delay)

    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls in a non-streamed message."""
        self.completion_tokens += sum(len(args.split()) for _, _, args in self.calls)
        return [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in self.calls
        ]

    def completion(self) -> dict[str, Any]:
        """The whole answer as a `chat.completion` object."""
        message: dict[str, Any] = {"role": "assistant", "refusal": None}
        message["content"] = "".join(self.tokens()) or None
        if self.calls:
            message["tool_calls"] = self.tool_calls()
        choice = {"index": 0, "message": message, "logprobs": None}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{**choice, "finish_reason": self.finish_reason}],
            "usage": self.usage(),
        }

    @property
    def dialect(self) -> str:
        return self.settings.dialect

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        """A `chat.completion.chunk` carrying `delta`."""
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        changing = self.dialect == "changing-ids"
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24] if changing else self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def chunks(
        self, include_usage: bool, limit: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """The answer as the chunks of a stream, in OpenAI's order (or the dialect's).

        After `limit` tokens the answer stops with `finish_reason: "length"`, as when
        a model reaches its `max_tokens`.
        """
        if self.dialect == "empty-choices":
            yield {**self.chunk({}), "choices": []}
        if self.dialect == "role-only-first":
            yield self.chunk({"role": "assistant"})
        else:
            yield self.chunk({"role": "assistant", "content": "", "refusal": None})
        finish = self.finish_reason
        for sent, chunk in enumerate(self.body_chunks()):
            if limit is not None and sent >= limit:
                finish = "length"
                break
            yield chunk
            if self.dialect == "empty-choices" and sent == 1:
                yield {**self.chunk({}), "choices": []}
        yield self.chunk({}, finish)
        if include_usage and self.dialect != "no-usage":
            usage = {**self.chunk({}), "choices": [], "usage": self.usage()}
            if self.dialect == "usage-choices-null":
                usage["choices"] = None
            elif self.dialect == "usage-without-choices":
                del usage["choices"]
            yield usage

    def body_chunks(self) -> Iterator[dict[str, Any]]:
        """The chunks that carry the answer: text, then the tool calls."""
        for token in self.tokens():
            if self.dialect == "split-anywhere":
                for character in token:
                    yield self.chunk({"content": character})
            else:
                yield self.chunk({"content": token})
        for index, call in enumerate(self.calls):
            yield from self.call_chunks(index, *call)

    def call_chunks(
        self, index: int, call_id: str, name: str, arguments: str
    ) -> Iterator[dict[str, Any]]:
        """One tool call: its name first, then its arguments in pieces."""
        pieces = split_arguments(arguments)
        if self.dialect == "split-anywhere":
            pieces = list(arguments) or [""]
        head = pieces.pop(0) if self.dialect == "split-anywhere" else ""
        function = {"name": name, "arguments": head}
        first = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": function,
        }
        yield self.chunk({"tool_calls": [first]})
        for piece in pieces:
            self.pause()
            self.completion_tokens += 1
            part: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
            if self.dialect == "changing-ids":
                part["id"] = "call_" + uuid.uuid4().hex[:24]
                part["type"] = "function"
                part["function"]["name"] = name
            yield self.chunk({"tool_calls": [part]})


# ---------------------------------------------------------------------------
# HTTP.


class Handler(BaseHTTPRequestHandler):
    """Serves one connection; routes to the completion and control endpoints."""

    # HTTP/1.1 for chunked transfer encoding: a stream cut short is then an
    # error the client notices, not a body that merely ended early.
    protocol_version = "HTTP/1.1"
    server: StandinServer
    status = 0

    def setup(self) -> None:
        """Prepare the connection's socket for streaming."""
        super().setup()
        # Without this, Nagle's algorithm holds small chunks back for tens of
        # milliseconds, which would swamp the latency benchmarks measure.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        """Route a GET request."""
        self.dispatch({"/_control/requests": self.list_requests})

    def do_POST(self) -> None:
        """Route a POST request."""
        self.dispatch(
            {
                COMPLETIONS_PATH: self.completions,
                "/_control/reset": self.control_reset,
                "/_control/config": self.control_config,
                "/_control/faults": self.control_faults,
                "/_control/script": self.control_script,
            }
        )

    def dispatch(self, routes: dict[str, Callable[[], None]]) -> None:
        """Run the route for the request's path and log one line about it."""
        started, self.status = time.monotonic(), 0
        # The path without its query string: some clients put keys there.
        path = urlsplit(self.path).path.rstrip("/") or "/"
        route = routes.get(path)
        try:
            if route is None:
                self.send_error_body(404, f"Invalid URL ({self.command} {path}).")
            else:
                route()
        except (Abort, ConnectionError, TimeoutError):
            # Dropped on purpose by a fault, or the client went away mid-answer.
            self.close_connection = True
        except Exception:
            self.fail()
        elapsed = (time.monotonic() - started) * 1000
        if not self.server.quiet:
            line = f"{self.command} {path} {self.status} {elapsed:.1f}ms\n"
            sys.stderr.write(line)

    def fail(self) -> None:
        """Answer 500 after a bug in the stand-in, or drop a started answer."""
        traceback.print_exc()
        self.close_connection = True
        if self.status == 0:
            with contextlib.suppress(ConnectionError):
                self.send_error_body(500, "The stand-in failed; see its log.")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Remember the status for the one log line written by `dispatch`."""
        self.status = int(code) if str(code).isdigit() else 0

    def log_message(self, format: str, *args: Any) -> None:
        """Log protocol errors only; requests get their line from `dispatch`."""
        sys.stderr.write("openai standin: " + format % args + "\n")

    # -- reading and writing -------------------------------------------------

    def read_body(self) -> Any:
        """The request body parsed as JSON; ValueError when it is not JSON."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        return json.loads(raw)

    def send_json(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Answer with `body` as JSON."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_error_body(self, status: int, message: str | None = None) -> None:
        """Answer with OpenAI's error body for `status`."""
        kind, code, default = ERRORS.get(status, ("server_error", None, "Error."))
        extra = {"retry-after": "0"} if status == 429 else {}
        self.send_json(status, error_body(message or default, kind, code), extra)

    def write_event(self, payload: str) -> None:
        """One server-sent event as one HTTP chunk, sent at once."""
        data = f"data: {payload}\n\n".encode()
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- the completion endpoint ---------------------------------------------

    def completions(self) -> None:
        """`POST /v1/chat/completions`."""
        try:
            body = self.read_body()
        except ValueError:
            body = None
        self.record(body)
        problem = self.check_request(body)
        if problem:
            self.send_error_body(*problem)
            return
        fault = self.server.state.next_fault()
        if fault and self.apply_fault(fault):
            return
        fault = fault or {}
        self.answer(
            body, fault.get("disconnect_after_chunks"), fault.get("length_after_tokens")
        )

    def record(self, body: Any) -> None:
        """Add the request to the log that `GET /_control/requests` returns.

        Headers are kept verbatim, Authorization included, so tests can check
        the key the app sent; only tests read this log.
        """
        headers = {name.lower(): value for name, value in self.headers.items()}
        entry = {"path": urlsplit(self.path).path, "headers": headers, "body": body}
        with self.server.state.lock:
            self.server.state.requests.append(entry)

    def check_request(self, body: Any) -> tuple[int, str] | None:
        """Why the request must be refused (status, message), or None."""
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return 401, "You didn't provide an API key. Use 'Authorization: Bearer'."
        if body is None:
            return 400, "We could not parse the JSON body of your request."
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return 400, "'messages' is a required property."
        if not all(isinstance(m, dict) for m in body["messages"]):
            return 400, "Each message must be an object."
        return None

    def apply_fault(self, fault: dict[str, Any]) -> bool:
        """Act out `fault`; True when it answered the request itself."""
        if "status" in fault:
            status = int(fault["status"])
            message = None
            if status == 401:
                # As OpenAI does, naming the key it was given (compatible servers
                # may not mask it): the app must not pass that on to the room.
                key = (self.headers.get("Authorization") or "")[7:].strip()
                message = f"Incorrect API key provided: {key}."
            self.send_error_body(status, message)
            return True
        if "delay" in fault:
            # Long enough and the client times out; then writing fails quietly.
            time.sleep(float(fault["delay"]))
        return False

    def answer(
        self,
        body: dict[str, Any],
        cut_after: float | None,
        length_after: float | None = None,
    ) -> None:
        """Answer with the demo model, streamed or whole.

        A disconnect fault on a non-streamed request drops the connection before
        answering: there are no chunks to count.
        """
        state = self.server.state
        answer = Answer(body, state.snapshot(), state.next_reply())
        if body.get("stream"):
            options = body.get("stream_options") or {}
            usage = bool(options.get("include_usage"))
            self.stream(answer, usage, cut_after, length_after)
        elif cut_after is not None:
            raise Abort
        else:
            self.send_json(200, answer.completion())

    def stream(
        self,
        answer: Answer,
        usage: bool,
        cut_after: float | None,
        length_after: float | None = None,
    ) -> None:
        """Send `answer` as server-sent events, one HTTP chunk per event."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for sent, chunk in enumerate(answer.chunks(usage, length_after)):
            if cut_after is not None and sent >= cut_after:
                self.drop()
            self.write_event(json.dumps(chunk))
        if cut_after is not None:
            self.drop()
        self.write_event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Close the connection in the middle of the body, like a dying proxy."""
        self.connection.shutdown(socket.SHUT_RDWR)
        raise Abort

    # -- control endpoints ---------------------------------------------------

    def control_reset(self) -> None:
        """`POST /_control/reset`: clear faults and the log, restore settings."""
        self.server.state.reset()
        self.send_json(200, {"ok": True})

    def control_config(self) -> None:
        """`POST /_control/config`: change the token delay or timestamping."""
        try:
            changes = parse_config(self.read_body())
        except ValueError as error:
            self.send_error_body(400, str(error))
            return
        state = self.server.state
        with state.lock:
            for name, value in changes.items():
                setattr(state.settings, name, value)
            current = asdict(state.settings)
        self.send_json(200, current)

    def control_faults(self) -> None:
        """`POST /_control/faults`: queue faults for the next completion requests."""
        try:
            body = self.read_body()
            if not isinstance(body, dict) or not isinstance(body.get("faults"), list):
                raise ValueError('expected {"faults": [...]}')
            faults = [parse_fault(raw) for raw in body["faults"]]
        except ValueError as error:
            self.send_error_body(400, str(error))
            return
        with self.server.state.lock:
            self.server.state.faults.extend(faults)
            queued = [dict(f) for f in self.server.state.faults]
        self.send_json(200, {"faults": queued})

    def control_script(self) -> None:
        """`POST /_control/script`: queue replies that replace the demo model's.

        Body: `{"replies": [{"text": str, "tool_calls": [{"name": str,
        "arguments": object or raw str}], "count": int}]}`; tests use it for
        answers the demo model never gives (unknown tools, broken arguments,
        endless tool loops).
        """
        try:
            replies = parse_script(self.read_body())
        except ValueError as error:
            self.send_error_body(400, str(error))
            return
        with self.server.state.lock:
            self.server.state.script.extend(replies)
            queued = len(self.server.state.script)
        self.send_json(200, {"queued": queued})

    def list_requests(self) -> None:
        """`GET /_control/requests`: every completion request, oldest first."""
        with self.server.state.lock:
            requests = list(self.server.state.requests)
        self.send_json(200, {"requests": requests})


class StandinServer(ThreadingHTTPServer):
    """The HTTP server plus the state its handlers share."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog is 5: hundreds of streams opened at once would
    # overflow it and be reset (the concurrent-turns benchmark opens 500).
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], settings: Settings, quiet: bool = False
    ) -> None:
        super().__init__(address, Handler)
        self.state = State(settings)
        self.quiet = quiet
        self.thread: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up (normal for pooled connections)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        """The URL to give the `openai` SDK as `base_url`."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def root_url(self) -> str:
        """The URL without `/v1`, for the control endpoints."""
        return self.base_url.removesuffix("/v1")

    def close(self) -> None:
        """Stop serving (if started in a thread) and release the port."""
        if self.thread is not None:
            self.shutdown()
            self.thread.join(timeout=5)
            self.thread = None
        self.server_close()


def env_token_delay() -> float:
    """The token delay from `STANDIN_TOKEN_DELAY`, or the default."""
    raw = os.environ.get("STANDIN_TOKEN_DELAY", "").strip()
    return float(raw) if raw else DEFAULT_TOKEN_DELAY


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    token_delay: float | None = None,
    timestamp_tokens: bool = False,
    quiet: bool = False,
) -> StandinServer:
    """A bound, not yet serving server; port 0 picks a free port.

    `token_delay` None means `STANDIN_TOKEN_DELAY` or 0.02 seconds.
    `/_control/reset` returns to exactly these settings. `quiet` drops the
    per-request log lines, which only clutter the output of in-process tests.
    """
    delay = env_token_delay() if token_delay is None else token_delay
    return StandinServer((host, port), Settings(delay, timestamp_tokens), quiet)


def serve_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    token_delay: float | None = None,
    timestamp_tokens: bool = False,
    quiet: bool = False,
) -> StandinServer:
    """A server answering from a daemon thread; call `close()` when done."""
    server = make_server(host, port, token_delay, timestamp_tokens, quiet)
    # A short poll interval makes `close()` return quickly in test teardowns.
    server.thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="openai-standin",
        daemon=True,
    )
    server.thread.start()
    return server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument(
        "--token-delay",
        type=float,
        default=None,
        help="seconds between streamed tokens (default: $STANDIN_TOKEN_DELAY "
        f"or {DEFAULT_TOKEN_DELAY})",
    )
    parser.add_argument(
        "--timestamp-tokens",
        action="store_true",
        help='answer "count to N" with tokens "<k>@<time.time_ns()>"',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    args = parse_args(argv)
    server = make_server(args.host, args.port, args.token_delay, args.timestamp_tokens)
    # Tests and scripts read this line to learn the port; print it only once
    # the socket is bound, and flush so a pipe does not hold it back.
    print(f"openai standin listening on {server.base_url}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
