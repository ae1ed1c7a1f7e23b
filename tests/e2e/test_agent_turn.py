"""The agent's turn with real processes: a Celery worker, the local OpenAI and Linear
servers, the real Redis and the test database."""

import pytest

from chat import services
from chat.models import Action, Message, Request, RoomEvent
from tests.plugins.stack import effects, wait_for

pytestmark = pytest.mark.e2e


def _status(request: Request) -> str:
    request.refresh_from_db()
    return request.status


def _wait_status(request: Request, *statuses: str, timeout: float = 30) -> None:
    wait_for(
        lambda: _status(request) in statuses,
        timeout=timeout,
        what=f"request to reach {statuses} (now {request.status}: {request.error})",
    )


def test_question_is_answered_and_recorded_in_order(stack, room, bob):
    stack.worker()
    request = services.request_start(
        room=room, user=bob, text="Hello, what can you do?"
    )

    _wait_status(request, Request.Status.COMPLETED)

    answer = Message.objects.get(request=request, role=Message.Role.ASSISTANT)
    assert "Linear" in answer.content
    assert request.usage["total_tokens"] > 0
    events = list(RoomEvent.objects.filter(room=room).values_list("type", "seq"))
    assert [seq for _, seq in events] == list(range(1, len(events) + 1))
    assert [t for t, _ in events] == [
        "message",
        "request",
        "request",
        "message",
        "request",
    ]


def test_delete_waits_for_approval_and_runs_once(
    stack, room, alice, bob, linear_standin
):
    stack.worker()
    request = services.request_start(room=room, user=bob, text="Please delete ENG-3")
    _wait_status(request, Request.Status.AWAITING_APPROVAL)
    action = Action.objects.get(request=request)
    assert action.status == Action.Status.PENDING
    assert action.preview["title"] == "Login fails on Safari"
    assert effects(linear_standin, "issueDelete") == []

    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    _wait_status(request, Request.Status.COMPLETED)

    action.refresh_from_db()
    assert action.status == Action.Status.SUCCEEDED
    assert len(effects(linear_standin, "issueDelete")) == 1
    final = Message.objects.filter(request=request, role="assistant").last()
    assert "ENG-3" in final.content
