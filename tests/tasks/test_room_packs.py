"""A room names the tool packs its agent may use: only their tools reach the model,
a call to another pack's tool is refused like an unknown tool, and a pack taken
from the room stops its calls that were waiting to run.

Set through the REST API as an approver would; the steps run in-process against
the OpenAI stand-in, as in tests/tasks/test_steps.py.
"""

from __future__ import annotations

import json

import pytest

from chat import services
from chat.models import Action, Message, Request, Room, User
from tasks import steps
from tests.chat.test_api import api
from tests.tasks.conftest import Linear, Model

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _queue(task_queue):
    return task_queue


def _packs(alice: User, *packs: str) -> None:
    answer = api(alice).patch("/api/rooms/triage", {"packs": list(packs)}, "json")
    assert answer.status_code == 200, answer.json()


def _turn(room: Room, bob: User, model: Model, *calls: dict) -> Request:
    turn = services.request_start(room=room, user=bob, text="Do it.")
    model.script({"text": "", "tool_calls": list(calls)}, {"text": "Done."})
    steps.model_step(request_id=str(turn.pk), step=0)
    return Request.objects.get(pk=turn.pk)


def _offered(model: Model) -> set[str]:
    [call] = model.calls()
    return {t["function"]["name"] for t in call["body"]["tools"]}


def test_the_model_is_offered_only_the_rooms_packs(
    room: Room, alice: User, bob: User, model: Model
) -> None:
    _packs(alice, "github")
    _turn(room, bob, model)
    offered = _offered(model)
    assert offered and all(name.startswith("github_") for name in offered)
    assert "delete_issue" not in offered and "search_issues" not in offered


def test_without_packs_every_configured_pack_is_offered(
    room: Room, alice: User, bob: User, model: Model
) -> None:
    _packs(alice, "github")
    _packs(alice)  # empty again: every pack
    _turn(room, bob, model)
    assert {"delete_issue", "github_search_issues"} <= _offered(model)


def test_a_call_to_another_packs_tool_is_refused_and_never_an_action(
    room: Room, alice: User, bob: User, model: Model, linear: Linear
) -> None:
    _packs(alice, "github")
    turn = _turn(
        room, bob, model, {"name": "delete_issue", "arguments": {"id": "ENG-3"}}
    )
    assert not Action.objects.filter(request=turn).exists()
    [call] = Message.objects.get(role=Message.Role.ASSISTANT).tool_calls
    told = json.loads(Message.objects.get(role="tool", tool_call_id=call["id"]).content)
    assert told["status"] == "invalid"
    assert "Unknown tool 'delete_issue'" in told["error"]
    # The model is told what it may use instead: this room's tools only.
    available = told["error"].partition("Available: ")[2].rstrip(".").split(", ")
    assert available and all(name.startswith("github_") for name in available)
    assert linear.effects() == []


def test_a_pack_taken_from_the_room_stops_its_approved_call(
    room: Room, alice: User, bob: User, model: Model, linear: Linear
) -> None:
    turn = _turn(
        room, bob, model, {"name": "delete_issue", "arguments": {"id": "ENG-3"}}
    )
    [delete] = turn.actions.all()
    approved = api(alice).post(f"/api/actions/{delete.pk}/approve", {}, "json")
    assert approved.status_code == 200
    _packs(alice, "github")  # before the worker runs it
    steps.tool_call(action_id=str(delete.pk))
    delete.refresh_from_db()
    assert delete.status == Action.Status.FAILED
    assert "no longer offered here" in delete.error
    assert linear.effects() == []
