"""The durable turn (issue: pauses for approval, resumes exactly once), proven with a
real Celery worker, the real Redis, the local OpenAI and Linear servers.

What one step decides (deny, edit, expiry, cancel, invalid calls, refusals, the step
limit) is proven in-process in tests/tasks/test_steps.py and tests/chat; here are
what needs the real processes: the worker's own retries, races, kills, restarts."""

import asyncio
import threading

import pytest

from chat import services
from chat.errors import Conflict
from chat.models import Action, Message, Request
from chat.realtime import partial_text
from tests.plugins.stack import effects, reached, wait_for

pytestmark = pytest.mark.e2e
S = Request.Status


def pending(request: Request, count: int = 1) -> list[Action]:
    reached(request, S.AWAITING_APPROVAL)
    actions = list(Action.objects.filter(request=request, status="pending"))
    assert len(actions) == count
    return actions


def last_answer(request: Request) -> str:
    return Message.objects.filter(request=request, role="assistant").last().content


def model_calls(openai_standin) -> list[dict]:
    return openai_standin.control("requests")["requests"]


def test_approved_action_runs_once_and_the_model_answers(
    stack, room, alice, bob, linear_standin
):
    stack.worker()
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    [action] = pending(request)
    # What approvers see, and when it was last changed (the run checks it again).
    assert {k: v for k, v in action.preview.items() if k != "updated_at"} == {
        "identifier": "ENG-3",
        "title": "Login fails on Safari",
        "state": "Todo",
    }
    assert action.preview["updated_at"]

    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    reached(request, S.COMPLETED)

    assert [e["identifier"] for e in effects(linear_standin, "issueDelete")] == [
        "ENG-3"
    ]
    assert "deleted ENG-3" in last_answer(request)
    action.refresh_from_db()
    assert (action.status, action.decided_by, action.decided_via) == (
        "succeeded",
        alice,
        "api",
    )


def test_twenty_concurrent_approvals_run_the_tool_once(
    stack, room, alice, bob, staff_decider, linear_standin
):
    stack.worker()
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    [action] = pending(request)
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def approve(user) -> None:
        start.wait()
        try:
            services.action_decide(
                action_id=str(action.pk), user=user, decision="approve"
            )
            outcomes.append("approved")
        except Conflict:
            outcomes.append("conflict")
        finally:
            from django.db import connection

            connection.close()

    threads = [
        threading.Thread(target=approve, args=(u,)) for u in [alice, staff_decider] * 10
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reached(request, S.COMPLETED)

    assert sorted(outcomes) == ["approved"] + ["conflict"] * 19
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_several_calls_wait_for_every_decision_and_free_tools_run_at_once(
    stack, room, alice, bob, linear_standin, openai_standin
):
    openai_standin.control(
        "script",
        {
            "replies": [
                {
                    "tool_calls": [
                        {"name": "get_issue", "arguments": {"id": "ENG-1"}},
                        {"name": "delete_issue", "arguments": {"id": "ENG-3"}},
                        {"name": "delete_issue", "arguments": {"id": "ENG-4"}},
                    ]
                }
            ]
        },
    )
    stack.worker()
    request = services.request_start(room=room, user=bob, text="tidy up")
    first, second = pending(request, count=2)
    read = Action.objects.get(request=request, tool="get_issue")
    wait_for(lambda: Action.objects.get(pk=read.pk).status == "succeeded")
    assert read.requires_approval is False

    services.action_decide(action_id=str(first.pk), user=alice, decision="approve")
    wait_for(lambda: len(effects(linear_standin, "issueDelete")) == 1)
    assert reached(request, S.AWAITING_APPROVAL).status == S.AWAITING_APPROVAL
    services.action_decide(action_id=str(second.pk), user=alice, decision="deny")
    reached(request, S.COMPLETED)

    assert len(model_calls(openai_standin)) == 2  # one answer after all three results


def test_worker_killed_mid_stream_finishes_once_with_the_full_text(
    stack, room, bob, openai_standin
):
    """Invariant: the retried stream replaces what watchers saw; they end with the
    full text once, and one assistant message is stored."""
    from tests.e2e.test_rooms_live import Watcher
    from tests.plugins.people import token_for

    openai_standin.control("config", {"token_delay": 0.03})
    worker = stack.worker()
    web = stack.web()
    frames: list[dict] = []
    watcher = Watcher(web, token_for(bob))
    watching = threading.Thread(
        target=lambda: asyncio.run(_watch_until_completed(watcher, frames))
    )
    watching.start()
    wait_for(lambda: watcher.frames, what="the watcher's snapshot")
    request = services.request_start(room=room, user=bob, text="count to 120")
    reached(request, S.RUNNING)
    draft = Request.objects.get(pk=request.pk).draft_message_id
    wait_for(lambda: len(partial_text(draft) or "") > 20, what="streaming to start")

    worker.kill()
    stack.worker("worker-2")
    stack.beat()
    reached(request, S.COMPLETED, timeout=60)
    watching.join(30)

    text = " ".join(map(str, range(1, 121))) + " "
    answers = Message.objects.filter(request=request, role="assistant")
    assert [m.content for m in answers] == [text]
    streamed = ""
    for frame in frames:
        if frame["type"] == "delta" and frame["message"] == str(draft):
            streamed = streamed[: frame["offset"]] + frame["text"]
    finished = [
        f
        for f in frames
        if f["type"] == "message" and f["message"]["role"] == "assistant"
    ]
    assert streamed == text
    assert [f["message"]["content"] for f in finished] == [text]


async def _watch_until_completed(watcher, frames: list[dict]) -> None:
    async with watcher:
        await watcher.until(
            lambda f: f["type"] == "request" and f["request"]["status"] == "completed",
            timeout=90,
        )
    frames.extend(watcher.frames)


def test_worker_killed_mid_tool_call_does_not_repeat_it(
    stack, room, alice, bob, linear_standin
):
    linear_standin.control(
        "faults", {"faults": [{"op": "issueDelete", "delay": 2.0, "count": 1}]}
    )
    worker = stack.worker()
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    [action] = pending(request)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    # The mutation is at Linear (which holds it 2 s): its answer will find no one.
    wait_for(
        lambda: any(
            "issueDelete" in str(sent["body"])
            for sent in linear_standin.control("requests")["requests"]
        ),
        what="the mutation to reach Linear",
    )

    worker.kill()
    wait_for(lambda: effects(linear_standin, "issueDelete"), what="Linear to apply")
    stack.worker("worker-2")
    stack.beat()
    reached(request, S.COMPLETED, timeout=60)

    action.refresh_from_db()
    assert action.status == "succeeded" and action.attempts == 2
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_request_awaiting_approval_survives_a_restart_of_every_process(
    stack, room, alice, bob, linear_standin
):
    worker = stack.worker()
    stack.web()
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    [action] = pending(request)
    for proc in stack.procs:
        proc.kill()
    worker.popen.wait(5)

    stack.worker("worker-2")
    stack.web("web-2")
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    reached(request, S.COMPLETED)
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_rate_limited_model_call_is_retried(stack, room, bob, openai_standin):
    openai_standin.control("faults", {"faults": [{"status": 429, "count": 1}]})
    stack.worker()
    request = services.request_start(room=room, user=bob, text="Hello there")
    reached(request, S.COMPLETED)
    assert len(model_calls(openai_standin)) == 2
