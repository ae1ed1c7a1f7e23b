"""chat.agui.RunMapper: a request's room frames as AG-UI events, for the cases a
live run rarely shows (a stream restarted after a crash, a cancel mid-answer, a
resumed run that waits on others until a retract), every event checked by the
Python SDK's models."""

from __future__ import annotations

from typing import Any

from ag_ui.core import Event
from pydantic import TypeAdapter

from chat.agui import RunMapper, interrupt_message, parse_input
from chat.errors import Invalid

EVENT = TypeAdapter(Event)
REQ, MSG, ACT = "req-1", "msg-1", "act-1"


def wire(events: list[Any]) -> list[dict]:
    out = []
    for event in events:
        data = event.model_dump(mode="json", by_alias=True)
        assert (
            EVENT.validate_python(data).model_dump(mode="json", by_alias=True) == data
        )
        out.append(data)
    return out


def mapper(**kw: Any) -> RunMapper:
    return RunMapper(
        thread_id="triage", run_id="r", request_id=REQ, username="alice", **kw
    )


def delta(offset: int, text: str) -> dict:
    return {
        "type": "delta",
        "request": REQ,
        "message": MSG,
        "offset": offset,
        "text": text,
    }


def final(content: str) -> dict:
    return {
        "type": "message",
        "message": {
            "id": MSG,
            "role": "assistant",
            "content": content,
            "author": None,
            "request": REQ,
            "action": None,
            "created": "2026-01-01T00:00:02Z",
        },
    }


def status(value: str, error: str = "") -> dict:
    return {"type": "request", "request": {"id": REQ, "status": value, "error": error}}


def action(state: str, approvals: list[str], eligible: list[str]) -> dict:
    return {
        "type": "action",
        "action": {
            "id": ACT,
            "request": REQ,
            "tool": "delete_issue",
            "status": state,
            "arguments": {"id": "ENG-3"},
            "proposed_arguments": None,
            "preview": {"identifier": "ENG-3", "title": "Login fails"},
            "approvals": [{"username": u, "at": "x"} for u in approvals],
            "eligible": eligible,
            "expires_at": "2026-01-02T00:00:00Z",
            "created": "2026-01-01T00:00:01Z",
        },
    }


def test_a_restarted_stream_sends_only_the_text_beyond_what_was_sent() -> None:
    run = mapper()
    events = wire(run.frame(delta(0, "Hello")) + run.frame(delta(5, " wor")))
    # A worker died: the retry streams the message again from offset 0.
    events += wire(run.frame(delta(0, "")) + run.frame(delta(0, "Hello wor")))
    events += wire(run.frame(delta(9, "ld")) + run.frame(final("Hello world")))
    events += wire(run.frame(status("completed")))
    texts = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert texts == "Hello world"
    assert [e["type"] for e in events].count("TEXT_MESSAGE_START") == 1
    assert events[-1]["outcome"] == {"type": "success"}


def test_a_restart_that_says_something_else_ends_the_run_as_diverged() -> None:
    run = mapper()
    wire(run.frame(delta(0, "Hello")))
    assert run.frame(delta(0, "Bye")) == []  # held: it does not continue the text
    (error,) = wire(run.frame(final("Bye now")))
    assert error["type"] == "RUN_ERROR" and error["code"] == "stream_diverged"
    assert run.done


def test_a_cancel_mid_answer_ends_the_open_message_then_the_run() -> None:
    run = mapper()
    wire(run.frame(delta(0, "Half an ans")))
    events = wire(run.frame(status("cancelled")))
    assert [e["type"] for e in events] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]
    assert events[-1]["outcome"] == {"type": "cancelled"}


def test_a_failed_request_is_a_run_error() -> None:
    run = mapper()
    (error,) = wire(run.frame(status("failed", "The model is unavailable.")))
    assert error == {
        "type": "RUN_ERROR",
        "message": "The model is unavailable.",
        "code": "request_failed",
    }


def test_a_resumed_run_waits_on_others_until_the_caller_may_vote_again() -> None:
    run = mapper(answered={ACT})
    run.seen(
        {
            "request": {"id": REQ, "status": "awaiting_approval", "error": ""},
            "messages": [],
            "actions": [action("pending", [], ["alice", "carol"])["action"]],
            "partial": None,
        }
    )
    # Alice's vote (1 of 2): she may not vote again; the run stays open.
    assert [
        e["type"] for e in wire(run.frame(action("pending", ["alice"], ["carol"])))
    ] == ["CUSTOM"]
    assert run.interrupting == []
    # An edit of the arguments clears the votes: alice may vote again.
    wire(run.frame(action("pending", [], ["alice", "carol"])))
    assert [a["id"] for a in run.interrupting] == [ACT]
    (finished,) = wire(run.interrupt({"delete_issue": {"type": "object"}}))
    (interrupt,) = finished["outcome"]["interrupts"]
    assert interrupt["metadata"]["agentsite"]["may_vote"] is True
    assert interrupt["expiresAt"] == "2026-01-02T00:00:00Z"


def test_the_interrupt_message_names_the_tool_and_its_target() -> None:
    payload = action("pending", [], [])["action"]
    assert interrupt_message(payload) == "Approve delete_issue on ENG-3 (Login fails)?"
    assert interrupt_message({**payload, "preview": None}) == "Approve delete_issue?"


def test_input_is_read_strictly() -> None:
    good = b'{"threadId": "t", "runId": "r", "messages": [], "extra": {"kept": 1}}'
    assert parse_input(good).run_id == "r"
    for bad in (
        b'{"threadId": "t", "runId": "r", "messages": [], "tools": null}',
        b'{"threadId": "t", "runId": "r", "messages": [], '
        b'"resume": [{"interruptId": 1, "status": "resolved"}]}',
        b'{"threadId": "t", "runId": "r", "messages": NaN}',
        b'{"threadId": true, "runId": "r", "messages": []}',
    ):
        try:
            parse_input(bad)
        except Invalid:
            continue
        raise AssertionError(f"accepted {bad!r}")
