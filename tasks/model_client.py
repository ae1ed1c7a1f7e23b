"""Chat completions through the `openai` SDK, streamed, with errors sorted for retry.

Any OpenAI-compatible server may be on the other end (OPENAI_BASE_URL), so chunks are
read for what they must carry, not for OpenAI's exact shapes: `choices` may be null,
missing or empty, the first chunk may hold the role only, ids may change per chunk,
a tool call's name may come again with each piece of its arguments.
"""

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx2
import openai
from django.conf import settings
from opentelemetry.trace import Span, SpanKind

from agentsite import telemetry
from chat import metrics

from . import sse_client
from .engine import engine
from .errors import PermanentError, ServiceError, TransientError

logger = logging.getLogger(__name__)


class Stopped(Exception):
    """The stream was abandoned on purpose (the request was cancelled)."""


@dataclass
class ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Completion:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    # The answer's `id` and `model` as the service named them (for the model call's
    # span and the metrics).
    id: str = ""
    model: str = ""
    # Seconds from sending the call to the first chunk of its stream.
    first_token: float | None = None


@cache
def _client() -> openai.OpenAI:
    # Our own tasks retry with backoff and watchers see a reset; the SDK's silent
    # retries would only hide time from that.
    return openai.OpenAI(
        api_key=settings.OPENAI_API_KEY or "demo-key",
        base_url=settings.OPENAI_BASE_URL,
        timeout=settings.OPENAI_TIMEOUT,
        max_retries=0,
    )


def warm() -> None:
    """Build the clients (their TLS contexts and pools) and start the stream engine
    before the first model call."""
    _client()
    engine().submit(_warm_async()).result()


async def _warm_async() -> None:
    if _lean() is None:  # behind a proxy: the SDK's client streams
        _aclient()


_async_clients: dict[tuple[str, str, float], openai.AsyncOpenAI] = {}


def _aclient() -> openai.AsyncOpenAI:
    """The engine loop's client (an async client belongs to the loop it runs on),
    built again when the settings it was built from change (tests point it at a
    stand-in)."""
    key = (settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY, settings.OPENAI_TIMEOUT)
    client = _async_clients.get(key)
    if client is None:
        _async_clients.clear()
        client = _async_clients[key] = openai.AsyncOpenAI(
            api_key=settings.OPENAI_API_KEY or "demo-key",
            base_url=settings.OPENAI_BASE_URL,
            timeout=settings.OPENAI_TIMEOUT,
            max_retries=0,
        )
    return client


def stream_chat(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    on_text: Callable[[str], None],
    stop: threading.Event,
    on_open: Callable[[Callable[[], None]], None] = lambda close: None,
    trace_attributes: dict[str, str] | None = None,
) -> Completion:
    """`chat` from a thread: the stream runs on the engine's loop, this thread waits.

    `on_open` receives a function that cuts the stream short from any thread (the
    reader sees Stopped at once); `on_text` is called on the loop.
    """
    running = engine().submit(
        chat(messages, tools, on_text, stop, trace_attributes=trace_attributes)
    )
    on_open(running.stop)
    return running.result()


async def chat(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    on_text: Callable[[str], None],
    stop: threading.Event,
    trace_attributes: dict[str, str] | None = None,
) -> Completion:
    """Stream one answer on the engine's loop; `on_text` gets text as it comes, tool
    calls are assembled. Cancelling the coroutine, or setting `stop`, abandons the
    stream (Stopped). The call is the span `chat {model}` when tracing is on, with
    `trace_attributes` (the turn's ids)."""
    if not telemetry.enabled():
        return await _chat(messages, tools, on_text, stop)
    with _model_span(messages, trace_attributes or {}) as (span, done):
        completion = await _chat(messages, tools, on_text, stop)
        done(completion)
        return completion


async def _chat(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    on_text: Callable[[str], None],
    stop: threading.Event,
) -> Completion:
    body = {
        "model": settings.OPENAI_MODEL,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = tools
    completion = Completion(model=settings.OPENAI_MODEL)
    started = time.monotonic()
    outcome = "error"
    try:
        lean = _lean()
        if lean is None:
            await _sdk_stream(body, on_text, stop, completion, started)
        else:
            await _lean_stream(lean, body, on_text, stop, completion, started)
        outcome = "ok"
        return completion
    except Stopped:
        outcome = "ok"  # cut short by a cancel: the service did nothing wrong
        raise
    except asyncio.CancelledError:
        outcome = "ok"
        raise Stopped() from None
    except Exception as exc:
        if stop.is_set():
            outcome = "ok"
            raise Stopped() from exc
        raise _classify(exc) from exc
    finally:
        metrics.model_call(
            model=completion.model,
            outcome=outcome,
            duration=time.monotonic() - started,
            first_token=completion.first_token,
            usage=completion.usage,
        )


LENGTH_CUT = (
    "The model's answer was cut off: it reached its length limit (finish_reason "
    '"length") before it finished{what}. Ask for something shorter, or raise the '
    "model's output limit."
)


@contextmanager
def _model_span(
    messages: list[dict[str, Any]], given: dict[str, str]
) -> Iterator[tuple[Span, Callable[[Completion], None]]]:
    """The model call as the GenAI conventions' CLIENT span `chat {model}`: built
    here around the bare reader, which OpenAI's own instrumentation cannot see."""
    model = settings.OPENAI_MODEL
    base = urlsplit(settings.OPENAI_BASE_URL)
    attributes: dict[str, Any] = {
        **given,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.request.stream": True,
        "server.address": base.hostname or "",
        "server.port": base.port or (443 if base.scheme == "https" else 80),
    }
    if telemetry.capture_content():
        attributes["gen_ai.input.messages"] = json.dumps(messages)
    started = time.monotonic()
    with telemetry.tracer.start_as_current_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:

        def done(completion: Completion) -> None:
            _describe(span, completion, started)

        try:
            yield span, done
        except Stopped:
            raise
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, ServiceError) else exc
            telemetry.fail(
                span,
                str(cause.status_code)
                if isinstance(cause, openai.APIStatusError)
                else type(cause or exc).__name__,
                str(exc)[:300],
            )
            raise


def _describe(span: Span, completion: Completion, started: float) -> None:
    if completion.id:
        span.set_attribute("gen_ai.response.id", completion.id)
    if completion.model:
        span.set_attribute("gen_ai.response.model", completion.model)
    if completion.finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [completion.finish_reason])
    for name, key in (
        ("gen_ai.usage.input_tokens", "prompt_tokens"),
        ("gen_ai.usage.output_tokens", "completion_tokens"),
    ):
        if isinstance(count := completion.usage.get(key), int):
            span.set_attribute(name, count)
    if completion.first_token is not None:
        span.set_attribute(
            "gen_ai.response.time_to_first_chunk", completion.first_token
        )
    if telemetry.capture_content():
        message: dict[str, Any] = {"role": "assistant", "content": completion.text}
        if completion.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments}
                for c in completion.tool_calls
            ]
        span.set_attribute("gen_ai.output.messages", json.dumps([message]))


async def _sdk_stream(
    body: dict[str, Any],
    on_text: Callable[[str], None],
    stop: threading.Event,
    completion: Completion,
    started: float,
) -> None:
    """The answer through the SDK (and its httpx): behind a proxy, which the lean
    client does not speak."""
    # The SDK's `chat.completions.create` walks the whole body through its
    # typed-dict transform first: a fifth of a model step's CPU (`make bench
    # --profile`) for a body that is plain JSON already. Its generic `post` sends
    # the same request and sorts a refusal into its errors.
    stream = await _aclient().post(
        "/chat/completions",
        body=body,
        cast_to=object,
        stream=True,
        stream_cls=openai.AsyncStream[object],
        # As `create` sends it: the API key only, never an admin key from the
        # environment (OPENAI_ADMIN_KEY), which `post` would otherwise allow.
        options={"security": {"bearer_auth": True}},
    )
    try:
        await _read(stream.response, on_text, stop, completion, started)
    finally:
        await stream.response.aclose()


_lean_clients: dict[tuple[str, str, float], sse_client.Client] = {}


def _lean() -> sse_client.Client | None:
    """The loop's lean client for OPENAI_BASE_URL; None behind a proxy."""
    base = settings.OPENAI_BASE_URL
    parts = urlsplit(base)
    if parts.scheme in getproxies() and not proxy_bypass(parts.hostname or ""):
        return None
    key = (base, settings.OPENAI_API_KEY, settings.OPENAI_TIMEOUT)
    client = _lean_clients.get(key)
    if client is None:
        for old in _lean_clients.values():
            old.close()
        _lean_clients.clear()
        sdk = _client()
        # What the SDK sends (its version, the organization and project from the
        # environment), with the API key only, as `create` sends it.
        headers = {k: v for k, v in sdk.default_headers.items() if isinstance(v, str)}
        headers["Authorization"] = f"Bearer {sdk.api_key}"
        client = _lean_clients[key] = sse_client.Client(
            base, headers, settings.OPENAI_TIMEOUT
        )
    return client


async def _lean_stream(
    lean: sse_client.Client,
    body: dict[str, Any],
    on_text: Callable[[str], None],
    stop: threading.Event,
    completion: Completion,
    started: float,
) -> None:
    """The answer through the lean client: each SSE event is folded into the
    completion as its bytes are read."""
    calls: dict[int, ToolCall] = {}

    def on_event(data: bytes) -> None:
        if completion.first_token is None:
            completion.first_token = time.monotonic() - started
        if stop.is_set():
            raise Stopped()
        if data != b"[DONE]":
            _event(None, data, completion, calls, on_text)

    try:
        await lean.post("/chat/completions", json.dumps(body).encode(), on_event)
    except Stopped:
        raise
    except sse_client.StatusError as exc:
        request = httpx2.Request("POST", settings.OPENAI_BASE_URL)
        answer = httpx2.Response(exc.status, content=exc.body, request=request)
        raise _client()._make_status_error_from_response(answer) from None
    except Exception as exc:
        if completion.finish_reason is None:
            raise
        logger.warning("model stream: ignored what followed the answer: %r", exc)
    _settle(completion, calls)


async def _read(
    response: Any,
    on_text: Callable[[str], None],
    stop: threading.Event,
    completion: Completion,
    started: float,
) -> Completion:
    """Fold the SSE stream's events into `completion`, straight from its bytes: an
    event is its `data:` lines up to a blank line (one line, from every server we
    know), a JSON chunk or `[DONE]`."""
    calls: dict[int, ToolCall] = {}
    rest, data = b"", b""
    try:
        async for piece in response.aiter_bytes():
            if stop.is_set():
                raise Stopped()
            lines = (rest + piece).split(b"\n") if rest else piece.split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.startswith(b"data:"):
                    line = line[5:].strip()
                    data = data + b"\n" + line if data else line
                elif data and not line.strip():
                    if completion.first_token is None:
                        completion.first_token = time.monotonic() - started
                    if data != b"[DONE]":
                        _event(response, data, completion, calls, on_text)
                    data = b""
        if rest.startswith(b"data:"):  # a last event that no blank line ended
            data = data + b"\n" + rest[5:].strip() if data else rest[5:].strip()
        if data and data != b"[DONE]":
            _event(response, data, completion, calls, on_text)
    except Stopped:
        raise
    except Exception as exc:
        if completion.finish_reason is None:
            raise
        # The answer was whole before this (a trailing usage chunk we cannot
        # read, a link dropped before [DONE]): keep it rather than retry it.
        logger.warning("model stream: ignored what followed the answer: %r", exc)
    _settle(completion, calls)
    return completion


def _settle(completion: Completion, calls: dict[int, ToolCall]) -> None:
    completion.tool_calls = [calls[i] for i in sorted(calls)]
    if completion.finish_reason == "length":
        what = " a tool call" if completion.tool_calls else ""
        raise PermanentError(LENGTH_CUT.format(what=what and " writing" + what))


def _event(
    response: Any,
    data: bytes,
    completion: Completion,
    calls: dict[int, ToolCall],
    on_text: Callable[[str], None],
) -> None:
    # str first: `json.loads` on bytes detects their encoding for every chunk.
    chunk = _decode(data.decode())
    if isinstance(chunk, dict) and (error := chunk.get("error")):
        # An error in the stream, as the SDK reports it.
        message = error.get("message") if isinstance(error, dict) else None
        raise openai.APIError(
            message=message if isinstance(message, str) and message else "error",
            request=response.request
            if response is not None
            else httpx2.Request("POST", settings.OPENAI_BASE_URL),
            body=error,
        )
    _read_chunk(chunk, completion, calls, on_text)


# (orjson would halve this, were it installed: a third of the per-chunk work left.)
_decode = json.JSONDecoder().decode

_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_*\-]{6,}")


def _field(value: object, name: str) -> Any:
    """`value[name]` if `value` is a JSON object holding it, else None."""
    return value.get(name) if isinstance(value, dict) else None


def _read_chunk(
    chunk: object,
    completion: Completion,
    calls: dict[int, ToolCall],
    on_text: Callable[[str], None],
) -> None:
    """Fold one chunk, a JSON object as the server sent it, into the completion;
    every field is read as possibly absent, null or of another type."""
    if not completion.id:
        # The first chunk's id and model name the answer.
        if isinstance(answer_id := _field(chunk, "id"), str):
            completion.id = answer_id
        if isinstance(model := _field(chunk, "model"), str):
            completion.model = model
    usage = _field(chunk, "usage")
    if isinstance(usage, dict):
        completion.usage = {
            name: value
            for name in ("prompt_tokens", "completion_tokens", "total_tokens")
            if isinstance(value := usage.get(name), int)
        }
    choices = _field(chunk, "choices")
    for choice in choices if isinstance(choices, list) else []:
        delta = _field(choice, "delta")
        content = _field(delta, "content")
        if isinstance(content, str) and content:
            completion.text += content
            on_text(content)
        parts = _field(delta, "tool_calls")
        for position, part in enumerate(parts if isinstance(parts, list) else []):
            index = _field(part, "index")
            call = calls.setdefault(
                index if isinstance(index, int) else position, ToolCall()
            )
            # The first id counts: some servers send a new one with every piece.
            if not call.id and isinstance(part_id := _field(part, "id"), str):
                call.id = part_id
            function = _field(part, "function")
            name = _field(function, "name")
            if isinstance(name, str) and name != call.name:
                # In pieces, or whole again with every piece (adding nothing).
                call.name += name
            arguments = _field(function, "arguments")
            if isinstance(arguments, str):
                call.arguments += arguments
        finish = _field(choice, "finish_reason")
        if isinstance(finish, str) and finish:
            completion.finish_reason = finish


def _classify(exc: Exception) -> ServiceError:
    """Every failure as transient (worth a retry) or permanent; an unknown one is
    permanent: retrying a bug in reading the answer would only repeat it."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        message = _error_message(exc)
        if exc.status_code == 429 or exc.status_code >= 500 or exc.status_code == 408:
            return TransientError(
                f"The model service is busy ({exc.status_code}): {message}"
            )
        return PermanentError(
            f"The model service refused the request ({exc.status_code}): {message}"
        )
    if isinstance(
        exc, openai.APIConnectionError | openai.APITimeoutError | sse_client.Unreachable
    ):
        return TransientError("The model service could not be reached or timed out.")
    if isinstance(exc, openai.APIError):
        # A stream that broke off midway (dropped connection, an error chunk).
        return TransientError(f"The model's answer broke off: {type(exc).__name__}.")
    if isinstance(exc, OSError | json.JSONDecodeError) or type(
        exc
    ).__module__.startswith(("httpx", "httpcore")):
        return TransientError(f"The model's answer broke off: {type(exc).__name__}.")
    logger.exception("model client: unexpected %s", type(exc).__name__)
    return PermanentError(
        "The model's answer could not be read "
        f"({type(exc).__name__}: {_redacted(str(exc))[:300]})."
    )


def _redacted(text: str) -> str:
    """Text that may reach the room, with no API key in it: ours (the stand-in's
    placeholder too, when none is set), and any key-shaped word, whosever it is
    (OpenAI names the key it was sent, partly masked: "sk-proj-****abcd")."""
    for key in {settings.OPENAI_API_KEY, _client().api_key} - {""}:
        text = text.replace(key, "[redacted]")
    return _KEY_SHAPED.sub("[redacted]", text)


def _error_message(exc: openai.APIStatusError) -> str:
    """The service's explanation, for the room: never our key, even when echoed."""
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = (
        body.get("message") or body.get("error", {}).get("message") if body else None
    )
    return _redacted(str(detail or exc.message))[:300]
