"""The agent's steps run in-process: `model_step` and `tool_call`, as Celery would.

The model is the OpenAI stand-in, the tools reach the Linear stand-in, and what a
step enqueues is read back from this run's queue in Redis; running a queued task
means calling the step with the task's arguments.
"""

from __future__ import annotations

import ast
import json
import logging
import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection

from chat import enqueue, services
from chat.models import Action, Message, Request, Room, User
from tasks import steps
from tasks.errors import TransientError
from tests.tasks.conftest import OPENAI_KEY, Linear, Model, applied

Queue = Callable[[], list[dict]]
Feed = Callable[[], list[dict]]
Status = Request.Status

SEARCH = {"name": "search_issues", "arguments": {"query": "safari"}}
DELETE = {"name": "delete_issue", "arguments": {"id": "ENG-3"}}
BROKEN = {"name": "get_issue", "arguments": {"id": 3}}


# Real commits: what follows a commit (enqueues, publishing events) happens when it
# would in production, between the steps' own writes and their Redis traffic.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def queue(task_queue: Queue) -> Queue:
    """Set up first, so that every message the test enqueues is seen and removed."""
    return task_queue


@pytest.fixture
def turn(room: Room, bob: User) -> Request:
    return services.request_start(room=room, user=bob, text="Delete the Safari bug.")


def _fresh(request: Request) -> Request:
    return Request.objects.get(pk=request.pk)


def _tasks(task_queue: Queue, name: str) -> list[str]:
    """The arguments of every queued `name` task (the queue is newest first)."""
    return [m["argsrepr"] for m in task_queue() if m["task"] == name]


def _tool_message(call_id: str) -> dict:
    return json.loads(Message.objects.get(role="tool", tool_call_id=call_id).content)


def _run_queued(task_queue: Queue, limit: int = 30) -> None:
    """Run what the steps queue, one task at a time, as a worker would, until
    nothing new is queued: a whole turn, in this process."""
    ran: set[str] = set()
    for _ in range(limit):
        waiting = [m for m in reversed(task_queue()) if m["id"] not in ran]
        if not waiting:
            return
        task = waiting[0]
        ran.add(task["id"])
        args = ast.literal_eval(task["argsrepr"])
        if task["task"] == enqueue.MODEL_STEP:
            steps.model_step(request_id=args[0], step=args[1])
        elif task["task"] == enqueue.TOOL_CALL:
            steps.tool_call(action_id=args[0])
    raise AssertionError(f"still queueing after {limit} tasks")


# One model call ---------------------------------------------------------------------


def test_answer_streams_into_the_room_and_completes_the_turn(
    model: Model, turn: Request, room_feed: Feed
) -> None:
    model.script({"text": "ENG-3 is the Safari login bug; it is in Todo."})
    room_feed()
    steps.model_step(request_id=str(turn.pk), step=0)
    turn = _fresh(turn)
    assert turn.status == Status.COMPLETED
    assert turn.usage["total_tokens"] > 0
    answer = Message.objects.get(role=Message.Role.ASSISTANT)
    assert answer.content == "ENG-3 is the Safari login bug; it is in Todo."
    frames = room_feed()
    assert applied(frames) == answer.content
    assert {f["message"] for f in frames if f["type"] == "delta"} == {str(answer.pk)}
    # The finished message follows its deltas, then the request's end.
    assert [f["type"] for f in frames if f["type"] != "delta"] == [
        "request",
        "message",
        "request",
    ]


def test_model_reads_the_prompt_the_question_and_the_tools(
    model: Model, turn: Request
) -> None:
    model.script({"text": "On it."})
    steps.model_step(request_id=str(turn.pk), step=0)
    [call] = model.calls()
    messages = call["body"]["messages"]
    assert messages[0]["role"] == "system"
    assert messages[-1] == {"role": "user", "content": "Delete the Safari bug."}
    names = [t["function"]["name"] for t in call["body"]["tools"]]
    assert {"search_issues", "delete_issue"} <= set(names)


def test_duplicate_delivery_of_a_step_calls_the_model_once(
    model: Model, turn: Request
) -> None:
    model.script({"text": "Once."}, {"text": "Twice?"})
    steps.model_step(request_id=str(turn.pk), step=0)
    steps.model_step(request_id=str(turn.pk), step=0)
    assert len(model.calls()) == 1
    assert list(Message.objects.filter(role="assistant").values_list("content")) == [
        ("Once.",)
    ]


def test_cancelled_request_never_reaches_the_model(
    model: Model, turn: Request, bob: User
) -> None:
    services.request_cancel(request_id=str(turn.pk), user=bob)
    steps.model_step(request_id=str(turn.pk), step=0)
    assert model.calls() == []


def test_cancel_mid_stream_stops_the_answer_within_a_second(
    model: Model, turn: Request, bob: User
) -> None:
    model.script({"text": "word " * 60})
    model.config(token_delay=0.05)  # three seconds of answer

    def cancel() -> None:
        try:
            services.request_cancel(request_id=str(turn.pk), user=bob)
        finally:
            connection.close()  # this thread's own

    timer = threading.Timer(0.3, cancel)
    timer.start()
    started = time.monotonic()
    steps.model_step(request_id=str(turn.pk), step=0)
    timer.join()
    assert time.monotonic() - started < 1.3
    assert _fresh(turn).status == Status.CANCELLED
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()


def test_turn_that_runs_out_of_steps_fails_saying_so(
    model: Model, turn: Request, settings
) -> None:
    settings.AGENT_MAX_STEPS = 2
    Request.objects.filter(pk=turn.pk).update(step=2)
    steps.model_step(request_id=str(turn.pk), step=2)
    turn = _fresh(turn)
    assert turn.status == Status.FAILED
    assert "stopped after 2 steps" in turn.error
    assert model.calls() == []


def test_a_model_that_keeps_calling_tools_is_stopped_after_max_steps(
    model: Model, linear: Linear, turn: Request, task_queue: Queue, settings
) -> None:
    settings.AGENT_MAX_STEPS = 3
    model.script({"count": 10, "tool_calls": [SEARCH]})
    _run_queued(task_queue)  # the whole loop: model, search, model, search, ...
    turn = _fresh(turn)
    assert turn.status == Status.FAILED
    assert "AGENT_MAX_STEPS" in turn.error
    assert len(model.calls()) == 3


def test_unknown_and_malformed_calls_reach_the_model_as_errors(
    model: Model, linear: Linear, turn: Request, task_queue: Queue
) -> None:
    model.script(
        {
            "tool_calls": [
                {"name": "frobnicate_issue", "arguments": {"id": "ENG-3"}},
                {"name": "delete_issue", "arguments": "{not json"},
                {"name": "delete_issue", "arguments": {"id": 3}},
            ]
        }
    )
    _run_queued(task_queue)
    assert _fresh(turn).status == Status.COMPLETED
    assert not Action.objects.exists()
    results = model.calls()[-1]["body"]["messages"][-3:]
    errors = [json.loads(m["content"])["error"] for m in results]
    assert "Unknown tool 'frobnicate_issue'" in errors[0]
    assert "not valid JSON" in errors[1]
    assert "Invalid arguments for delete_issue" in errors[2]
    assert linear.effects() == []


# Parallel tool calls ----------------------------------------------------------------


@pytest.fixture
def proposed(model: Model, linear: Linear, turn: Request) -> Request:
    """The model answered with a free search, a delete to approve and a broken call."""
    model.script({"text": "Let me look.", "tool_calls": [SEARCH, DELETE, BROKEN]})
    steps.model_step(request_id=str(turn.pk), step=0)
    return _fresh(turn)


def test_parallel_calls_become_actions_with_the_right_statuses(
    proposed: Request,
) -> None:
    assert proposed.status == Status.AWAITING_APPROVAL
    actions = {a.tool: a for a in proposed.actions.all()}
    assert set(actions) == {"search_issues", "delete_issue"}
    search, delete = actions["search_issues"], actions["delete_issue"]
    assert (search.status, search.requires_approval) == (Action.Status.EXECUTING, False)
    assert (delete.status, delete.requires_approval) == (Action.Status.PENDING, True)
    assert delete.arguments == {"id": "ENG-3"}
    # Approvers see what the call touches, read from Linear when it was proposed.
    assert delete.preview == {
        "identifier": "ENG-3",
        "title": "Login fails on Safari",
        "state": "Todo",
        # When it last changed: the delete refuses to run if it changes again.
        "updated_at": delete.preview["updated_at"],
    }
    assert delete.preview["updated_at"]


def test_invalid_call_becomes_a_tool_message_and_no_action(
    proposed: Request,
) -> None:
    answer = Message.objects.get(role=Message.Role.ASSISTANT)
    broken_id = answer.tool_calls[2]["id"]
    assert not Action.objects.filter(tool_call_id=broken_id).exists()
    told = _tool_message(broken_id)
    assert told["tool"] == "get_issue"
    assert told["status"] == "invalid"
    assert "id: 3 is not of type 'string'" in told["error"]


def test_only_the_approval_free_call_is_queued(
    proposed: Request, task_queue: Queue
) -> None:
    search = proposed.actions.get(tool="search_issues")
    assert _tasks(task_queue, enqueue.TOOL_CALL) == [repr((str(search.pk),))]
    # No model call beyond the turn's first: it waits for a person.
    assert _tasks(task_queue, enqueue.MODEL_STEP) == [repr((str(proposed.pk), 0))]


def test_approved_call_runs_once_against_linear_and_the_model_answers(
    proposed: Request, model: Model, linear: Linear, alice: User, task_queue: Queue
) -> None:
    search = proposed.actions.get(tool="search_issues")
    delete = proposed.actions.get(tool="delete_issue")
    steps.tool_call(action_id=str(search.pk))
    assert _fresh(proposed).status == Status.AWAITING_APPROVAL
    assert linear.effects() == []

    services.action_decide(action_id=str(delete.pk), user=alice, decision="approve")
    assert repr((str(delete.pk),)) in _tasks(task_queue, enqueue.TOOL_CALL)
    steps.tool_call(action_id=str(delete.pk))
    steps.tool_call(action_id=str(delete.pk))  # delivered twice
    assert [(e["op"], e["identifier"]) for e in linear.effects()] == [
        ("issueDelete", "ENG-3")
    ]
    delete.refresh_from_db()
    assert delete.status == Action.Status.SUCCEEDED
    assert delete.result == {"deleted": "ENG-3", "title": "Login fails on Safari"}
    assert _tool_message(delete.tool_call_id)["status"] == "succeeded"

    # Every call settled: the next model call is queued, and it reads every result
    # right after the message that made the calls, in call order.
    assert sorted(_tasks(task_queue, enqueue.MODEL_STEP)) == [
        repr((str(proposed.pk), 0)),
        repr((str(proposed.pk), 1)),
    ]
    model.script({"text": "Deleted ENG-3."})
    steps.model_step(request_id=str(proposed.pk), step=1)
    messages = model.calls()[-1]["body"]["messages"]
    calls = messages[-4]["tool_calls"]
    assert [m["role"] for m in messages[-4:]] == ["assistant", "tool", "tool", "tool"]
    assert [m["tool_call_id"] for m in messages[-3:]] == [c["id"] for c in calls]
    assert [json.loads(m["content"])["status"] for m in messages[-3:]] == [
        "succeeded",
        "succeeded",
        "invalid",
    ]
    assert _fresh(proposed).status == Status.COMPLETED


def test_denied_call_never_runs_and_the_model_hears_the_reason(
    proposed: Request, linear: Linear, alice: User, task_queue: Queue
) -> None:
    delete = proposed.actions.get(tool="delete_issue")
    services.action_decide(
        action_id=str(delete.pk), user=alice, decision="deny", reason="Still needed."
    )
    steps.tool_call(action_id=str(delete.pk))  # a stray delivery
    assert linear.effects() == []
    told = _tool_message(delete.tool_call_id)
    assert (told["status"], told["denied"], told["reason"]) == (
        "denied",
        True,
        "Still needed.",
    )


def test_no_tool_starts_after_a_cancel(
    proposed: Request, linear: Linear, alice: User, bob: User
) -> None:
    delete = proposed.actions.get(tool="delete_issue")
    services.action_decide(action_id=str(delete.pk), user=alice, decision="approve")
    services.request_cancel(request_id=str(proposed.pk), user=bob)
    steps.tool_call(action_id=str(delete.pk))
    assert linear.effects() == []
    delete.refresh_from_db()
    assert delete.status == Action.Status.CANCELLED


def test_edited_call_runs_with_the_edit_and_the_model_is_told(
    proposed: Request, linear: Linear, alice: User
) -> None:
    delete = proposed.actions.get(tool="delete_issue")
    services.action_decide(
        action_id=str(delete.pk),
        user=alice,
        decision="approve",
        arguments={"id": "ENG-4"},
    )
    steps.tool_call(action_id=str(delete.pk))
    assert [e["identifier"] for e in linear.effects()] == ["ENG-4"]
    told = _tool_message(delete.tool_call_id)
    assert told["edited"] == {"proposed": {"id": "ENG-3"}, "ran_with": {"id": "ENG-4"}}


def test_linear_refusal_fails_the_action_and_the_model_is_told(
    proposed: Request, linear: Linear, alice: User
) -> None:
    delete = proposed.actions.get(tool="delete_issue")
    services.action_decide(action_id=str(delete.pk), user=alice, decision="approve")
    linear.faults({"op": "issueDelete", "status": 400, "message": "Not allowed."})
    steps.tool_call(action_id=str(delete.pk))
    delete.refresh_from_db()
    assert delete.status == Action.Status.FAILED
    assert "Not allowed." in delete.error
    assert _tool_message(delete.tool_call_id)["error"] == delete.error


def test_retry_after_a_lost_answer_does_not_delete_twice(
    proposed: Request, linear: Linear, alice: User
) -> None:
    delete = proposed.actions.get(tool="delete_issue")
    services.action_decide(action_id=str(delete.pk), user=alice, decision="approve")
    # Linear deletes the issue, but its answer is lost on the way back.
    linear.faults({"op": "issueDelete", "status": 503, "after_apply": True})
    with pytest.raises(TransientError):
        steps.tool_call(action_id=str(delete.pk))
    steps.tool_call(action_id=str(delete.pk))  # Celery's retry
    assert len(linear.effects()) == 1
    delete.refresh_from_db()
    assert (delete.status, delete.attempts) == (Action.Status.SUCCEEDED, 2)
    assert delete.result == {"deleted": "ENG-3"}


# Failures of the model call ---------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401])
def test_refused_model_call_fails_the_request_with_a_readable_error(
    model: Model, turn: Request, status: int
) -> None:
    model.faults({"status": status})
    steps.model_step(request_id=str(turn.pk), step=0)  # not retried
    turn = _fresh(turn)
    assert turn.status == Status.FAILED
    assert turn.error.startswith(f"The model service refused the request ({status})")
    assert OPENAI_KEY not in turn.error
    assert OPENAI_KEY[-6:] not in turn.error


def test_rate_limited_step_is_retried_and_the_retry_starts_clean(
    model: Model, turn: Request, room_feed: Feed
) -> None:
    model.faults({"status": 429})
    model.script({"text": "Answer after the wait."})
    with pytest.raises(TransientError):
        steps.model_step(request_id=str(turn.pk), step=0)
    held = _fresh(turn)
    assert (held.status, held.lease_until) == (Status.RUNNING, None)
    room_feed()
    steps.model_step(request_id=str(turn.pk), step=0)  # Celery's retry
    frames = room_feed()
    assert [(f["offset"], f["text"]) for f in frames if f["type"] == "delta"][0] == (
        0,
        "",
    )
    assert applied(frames) == "Answer after the wait."
    assert _fresh(turn).status == Status.COMPLETED


def test_stream_cut_midway_is_replaced_not_repeated_for_watchers(
    model: Model, turn: Request, room_feed: Feed
) -> None:
    text = "One two three four five six seven eight."
    model.script({"text": text}, {"text": text})
    model.faults({"disconnect_after_chunks": 4})
    room_feed()
    with pytest.raises(TransientError):
        steps.model_step(request_id=str(turn.pk), step=0)
    steps.model_step(request_id=str(turn.pk), step=0)
    frames = room_feed()
    texts = [f["text"] for f in frames if f["type"] == "delta"]
    assert "" in texts[1:]  # the reset between the attempts
    assert applied(frames) == text
    answer = Message.objects.get(role=Message.Role.ASSISTANT)
    assert answer.content == text
    assert {f["message"] for f in frames if f["type"] == "delta"} == {str(answer.pk)}


def test_calls_past_the_cap_answer_the_model_with_an_error_not_actions(
    model: Model, turn: Request, settings
) -> None:
    settings.AGENT_MAX_TOOL_CALLS = 3
    searches = [
        {"name": "search_issues", "arguments": {"query": f"bug {n}"}} for n in range(5)
    ]
    model.script({"text": "", "tool_calls": searches})
    steps.model_step(request_id=str(turn.pk), step=0)
    assert _fresh(turn).actions.count() == 3
    answer = Message.objects.get(role=Message.Role.ASSISTANT)
    for call in answer.tool_calls[3:]:
        told = _tool_message(call["id"])
        assert told["status"] == "invalid"
        assert "at most 3 tool calls" in told["error"]


# The ERROR line of an end that failed (contract, "Logs") ----------------------------


def _errors(caplog: pytest.LogCaptureFixture, **ids: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR
        and all(getattr(r, key, None) == value for key, value in ids.items())
    ]


def test_a_failed_request_logs_one_error_line_with_its_id(
    model: Model, turn: Request, caplog: pytest.LogCaptureFixture
) -> None:
    model.faults({"status": 400})
    with caplog.at_level(logging.INFO):
        steps.model_step(request_id=str(turn.pk), step=0)
        steps.model_step(request_id=str(turn.pk), step=0)  # a duplicate: no-op
    (line,) = _errors(caplog, request_id=str(turn.pk), room="triage")
    assert line.getMessage() == f"request {turn.pk} failed: {_fresh(turn).error}"


def test_a_failed_action_logs_one_error_line_with_its_id(
    proposed: Request, linear: Linear, alice: User, caplog: pytest.LogCaptureFixture
) -> None:
    delete = proposed.actions.get(tool="delete_issue")
    services.action_decide(action_id=str(delete.pk), user=alice, decision="approve")
    linear.faults({"op": "issueDelete", "status": 400, "message": "Not allowed."})
    with caplog.at_level(logging.INFO):
        steps.tool_call(action_id=str(delete.pk))
    (line,) = _errors(caplog, action_id=str(delete.pk), request_id=str(proposed.pk))
    assert "delete_issue" in line.getMessage()
    assert "Not allowed." in line.getMessage()
