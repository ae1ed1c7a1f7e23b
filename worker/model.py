"""Chat completions through the `openai` SDK, streamed, with errors sorted for retry."""

import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .errors import PermanentError, TransientError


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
    """Build the client (its TLS context and pools) before the first model call."""
    _client()


def stream_chat(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    on_text: Callable[[str], None],
    stop: threading.Event,
    on_open: Callable[[Callable[[], None]], None] = lambda close: None,
) -> Completion:
    """Stream one answer; `on_text` gets text as it comes, tool calls are assembled.

    `on_open` receives a function that closes the stream, so another thread can cut
    a silent stream short when the request is cancelled.
    """
    body = {
        "model": settings.OPENAI_MODEL,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = tools
    try:
        # The SDK's `chat.completions.create` walks the whole body through its
        # typed-dict transform first: a fifth of a model step's CPU (`make bench
        # --profile`) for a body that is plain JSON already. Its generic `post` sends
        # the same request and streams the same typed chunks.
        stream = _client().post(
            "/chat/completions",
            body=body,
            cast_to=ChatCompletion,
            stream=True,
            stream_cls=openai.Stream[ChatCompletionChunk],
            # As `create` sends it: the API key only, never an admin key from the
            # environment (OPENAI_ADMIN_KEY), which `post` would otherwise allow.
            options={"security": {"bearer_auth": True}},
        )
        on_open(lambda: _cut(stream))
        with stream:
            return _assemble(stream, on_text, stop)
    except Stopped:
        raise
    except Exception as exc:
        if stop.is_set():
            raise Stopped() from exc
        raise _classify(exc) from exc


def _cut(stream: openai.Stream[ChatCompletionChunk]) -> None:
    """Stop a stream from another thread, even while its reader waits for a chunk.

    Closing the response only marks it closed; the reader stays blocked in `recv`
    until the model sends more. Shutting the socket down wakes it at once (the
    connection is dropped, not returned to the pool).
    """
    network = stream.response.extensions.get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the other side
    stream.close()


def _assemble(
    stream: openai.Stream[ChatCompletionChunk],
    on_text: Callable[[str], None],
    stop: threading.Event,
) -> Completion:
    completion = Completion()
    calls: dict[int, ToolCall] = {}
    for chunk in stream:
        if stop.is_set():
            raise Stopped()
        if chunk.usage:
            completion.usage = chunk.usage.model_dump(
                include={"prompt_tokens", "completion_tokens", "total_tokens"}
            )
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                completion.text += delta.content
                on_text(delta.content)
            for part in delta.tool_calls or []:
                call = calls.setdefault(part.index, ToolCall())
                call.id = part.id or call.id
                if part.function:
                    call.name += part.function.name or ""
                    call.arguments += part.function.arguments or ""
            completion.finish_reason = choice.finish_reason or completion.finish_reason
    completion.tool_calls = [calls[i] for i in sorted(calls)]
    return completion


_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_*\-]{6,}")


def _classify(exc: Exception) -> Exception:
    if isinstance(exc, openai.APIStatusError):
        message = _error_message(exc)
        if exc.status_code == 429 or exc.status_code >= 500 or exc.status_code == 408:
            return TransientError(
                f"The model service is busy ({exc.status_code}): {message}"
            )
        return PermanentError(
            f"The model service refused the request ({exc.status_code}): {message}"
        )
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return TransientError("The model service could not be reached or timed out.")
    if isinstance(exc, openai.APIError):
        # A stream that broke off midway (dropped connection, bad chunk).
        return TransientError(f"The model's answer broke off: {type(exc).__name__}.")
    if (
        isinstance(exc, OSError | json.JSONDecodeError)
        or "httpx" in type(exc).__module__
    ):
        return TransientError(f"The model's answer broke off: {type(exc).__name__}.")
    return exc


def _error_message(exc: openai.APIStatusError) -> str:
    """The service's explanation, for the room: never our key, even when echoed."""
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = (
        body.get("message") or body.get("error", {}).get("message") if body else None
    )
    text = str(detail or exc.message)
    # The key the client sent: the stand-in's placeholder too, when none is set.
    text = text.replace(_client().api_key, "[redacted]")
    # OpenAI names the key it was sent, partly masked ("sk-proj-****abcd"): any
    # key-shaped word goes, whosever it is.
    return _KEY_SHAPED.sub("[redacted]", text)[:300]
