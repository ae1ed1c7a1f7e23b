"""The model client against the OpenAI stand-in: streaming, and failures sorted.

A transient failure is retried by the task (with a reset delta for watchers); a
permanent one ends the request. Each error's text reaches the room, so it must be
readable and never carry the API key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from standins import openai_server
from tasks.errors import PermanentError, TransientError
from tasks.model_client import Completion, Stopped, _classify, stream_chat
from tests.tasks.conftest import OPENAI_KEY, Model

HELLO = [{"role": "user", "content": "Say hello."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_issue",
            "description": "Read one issue.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    }
]


def _stream(pieces: list[str] | None = None, **kwargs: object) -> Completion:
    on_text = pieces.append if pieces is not None else lambda text: None
    return stream_chat(HELLO, TOOLS, on_text=on_text, stop=threading.Event(), **kwargs)


def test_streamed_text_reaches_the_caller_piece_by_piece(model: Model) -> None:
    model.script({"text": "Hello from the model, Bob."})
    pieces: list[str] = []
    completion = _stream(pieces)
    assert len(pieces) > 1
    assert "".join(pieces) == completion.text == "Hello from the model, Bob."
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == []
    assert set(completion.usage) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }


def test_parallel_tool_calls_are_assembled_from_their_pieces(model: Model) -> None:
    model.script(
        {
            "tool_calls": [
                {"name": "get_issue", "arguments": {"id": "ENG-3"}},
                {"name": "get_issue", "arguments": {"id": "ENG-4"}},
            ]
        }
    )
    completion = _stream()
    assert completion.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("get_issue", {"id": "ENG-3"}),
        ("get_issue", {"id": "ENG-4"}),
    ]
    ids = [c.id for c in completion.tool_calls]
    assert all(ids) and len(set(ids)) == 2


def test_request_carries_the_key_the_tools_and_the_messages(model: Model) -> None:
    model.script({"text": "Hi."})
    _stream()
    [sent] = model.calls()
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent["body"]["messages"] == HELLO
    assert sent["body"]["tools"] == TOOLS
    assert sent["body"]["stream"] is True


@pytest.mark.parametrize("status", [429, 500, 503])
def test_busy_model_service_is_a_transient_error(model: Model, status: int) -> None:
    model.faults({"status": status})
    with pytest.raises(TransientError, match=f"busy \\({status}\\)"):
        _stream()


@pytest.mark.parametrize(
    ("status", "says"),
    [(400, "Invalid request"), (401, "Incorrect API key provided: [redacted].")],
)
def test_refused_request_is_a_permanent_error(
    model: Model, status: int, says: str
) -> None:
    model.faults({"status": status})
    with pytest.raises(PermanentError) as caught:
        _stream()
    message = str(caught.value)
    assert message.startswith(f"The model service refused the request ({status}): ")
    assert says in message
    # The stand-in names the key it was sent, as OpenAI does: the room never sees it.
    assert OPENAI_KEY not in message


def test_stream_cut_midway_is_a_transient_error(model: Model) -> None:
    model.script({"text": "This answer will not arrive whole, sorry."})
    model.faults({"disconnect_after_chunks": 3})
    pieces: list[str] = []
    # The SDK reports a cut body as a connection error; either way it is retried.
    with pytest.raises(TransientError):
        _stream(pieces)
    assert pieces  # some text had streamed before the cut


def test_unreachable_model_service_is_a_transient_error(model: Model, settings) -> None:
    from tasks.model_client import _client

    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # the discard port: refused
    _client.cache_clear()
    with pytest.raises(TransientError, match="could not be reached"):
        _stream()


def test_stop_set_before_the_answer_abandons_the_stream(model: Model) -> None:
    model.script({"text": "A long answer nobody wants any more."})
    stop = threading.Event()
    stop.set()
    pieces: list[str] = []
    with pytest.raises(Stopped):
        stream_chat(HELLO, TOOLS, on_text=pieces.append, stop=stop)
    assert pieces == []


def test_cancel_cuts_a_silent_stream_short(model: Model) -> None:
    model.script({"text": "Slow words."})
    model.config(token_delay=1.2)  # the model is silent between tokens
    stop = threading.Event()

    def cancel_soon(close: Callable[[], None]) -> None:
        # What the heartbeat does when it hears of a cancel: set stop, then close.
        threading.Timer(0.05, lambda: (stop.set(), close())).start()

    started = time.monotonic()
    with pytest.raises(Stopped):
        stream_chat(
            HELLO, TOOLS, on_text=lambda t: None, stop=stop, on_open=cancel_soon
        )
    assert time.monotonic() - started < 1.0


# OpenAI-compatible servers -----------------------------------------------------------

DIALECTS = list(openai_server.DIALECTS)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_text_answer_arrives_whole_in_every_dialect(
    model: Model, dialect: str
) -> None:
    model.config(dialect=dialect)
    model.script({"text": "Hello from the model, Bob."})
    pieces: list[str] = []
    completion = _stream(pieces)
    assert "".join(pieces) == completion.text == "Hello from the model, Bob."
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == []
    if dialect != "no-usage":
        assert completion.usage["total_tokens"] > 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_parallel_tool_calls_arrive_whole_in_every_dialect(
    model: Model, dialect: str
) -> None:
    model.config(dialect=dialect)
    model.script(
        {
            "text": "Reading both.",
            "tool_calls": [
                {"name": "get_issue", "arguments": {"id": "ENG-3"}},
                {"name": "get_issue", "arguments": {"id": "ENG-40"}},
            ],
        }
    )
    completion = _stream()
    assert completion.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("get_issue", {"id": "ENG-3"}),
        ("get_issue", {"id": "ENG-40"}),
    ]
    ids = [c.id for c in completion.tool_calls]
    assert all(ids) and len(set(ids)) == 2
    assert all(i.startswith("call_") for i in ids)


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        ({"text": "A long answer that the limit cuts short."}, "finished."),
        (
            {"tool_calls": [{"name": "get_issue", "arguments": {"id": "ENG-3"}}]},
            "finished writing a tool call.",
        ),
    ],
    ids=["text", "tool-call"],
)
def test_a_length_cut_off_is_a_readable_permanent_error(
    model: Model, reply: dict, says: str
) -> None:
    model.script(reply)
    model.faults({"length_after_tokens": 2})
    with pytest.raises(PermanentError) as caught:
        _stream()
    message = str(caught.value)
    assert message.startswith("The model's answer was cut off: it reached its length")
    assert says in message
    assert "not valid JSON" not in message


def test_a_link_dropped_after_the_finish_keeps_the_answer(model: Model) -> None:
    # Chunks: role, "Hi.", finish, usage. Cut after the finish: the answer is whole.
    model.script({"text": "Hi."})
    model.faults({"disconnect_after_chunks": 3})
    completion = _stream()
    assert completion.text == "Hi."
    assert completion.finish_reason == "stop"


def test_an_unknown_error_is_permanent_with_the_key_redacted(model: Model) -> None:
    error = _classify(RuntimeError(f"boom near {OPENAI_KEY} in the parser"))
    assert isinstance(error, PermanentError)
    assert OPENAI_KEY not in str(error)
    assert "RuntimeError" in str(error) and "[redacted]" in str(error)


@pytest.mark.parametrize(
    "error",
    [ConnectionResetError("reset"), json.JSONDecodeError("bad", "{", 0)],
    ids=["os-error", "bad-json"],
)
def test_a_broken_link_is_transient(error: Exception) -> None:
    assert isinstance(_classify(error), TransientError)
