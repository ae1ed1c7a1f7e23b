"""A room names the Linear teams its agent may touch: held at preview and at run.

Set through the REST API like an approver would; the steps run in-process against
the Linear stand-in (teams ENG, then DES), as in tests/tasks/test_steps.py.
"""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Action, Request, Room, User
from tasks import steps
from tests.chat.test_api import api
from tests.tasks.conftest import Linear, Model

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = {"name": "create_issue", "arguments": {"title": "Icon set for dark mode"}}
DELETE = {"name": "delete_issue", "arguments": {"id": "ENG-3"}}


@pytest.fixture(autouse=True)
def _queue(task_queue):
    return task_queue


def _propose(room: Room, bob: User, model: Model, *calls: dict) -> list[Action]:
    turn = services.request_start(room=room, user=bob, text="Do it.")
    model.script({"text": "", "tool_calls": list(calls)})
    steps.model_step(request_id=str(turn.pk), step=0)
    return list(Request.objects.get(pk=turn.pk).actions.order_by("created"))


def test_approver_sets_the_rooms_teams_over_rest(room: Room, bob: User) -> None:
    alice = User.objects.get(username="alice")
    body = {"linear_teams": ["DES"]}
    assert api(bob).patch("/api/rooms/triage", body, format="json").status_code == 403
    response = api(alice).patch("/api/rooms/triage", body, format="json")
    assert response.status_code == 200
    assert response.json()["linear_teams"] == ["DES"]
    assert api(bob).get("/api/rooms/triage").json()["linear_teams"] == ["DES"]


def test_create_without_team_previews_the_team_it_will_use(
    room: Room, bob: User, model: Model, linear: Linear
) -> None:
    (create,) = _propose(room, bob, model, CREATE)
    # Linear's first team, named: not `team: null` while the run picks one.
    assert create.preview == {"creates": "Icon set for dark mode", "team": "ENG"}


def test_create_in_a_scoped_room_goes_to_its_team(
    room: Room, alice: User, bob: User, model: Model, linear: Linear
) -> None:
    api(alice).patch("/api/rooms/triage", {"linear_teams": ["DES"]}, format="json")
    room.refresh_from_db()
    (create,) = _propose(room, bob, model, CREATE)
    assert create.preview == {"creates": "Icon set for dark mode", "team": "DES"}
    api(alice).post(f"/api/actions/{create.pk}/approve", {}, format="json")
    steps.tool_call(action_id=str(create.pk))
    create.refresh_from_db()
    assert create.status == Action.Status.SUCCEEDED
    assert create.result["created"]["team"] == "DES"


def test_call_outside_the_rooms_teams_is_flagged_and_never_runs(
    room: Room, alice: User, bob: User, model: Model, linear: Linear
) -> None:
    api(alice).patch("/api/rooms/triage", {"linear_teams": ["DES"]}, format="json")
    room.refresh_from_db()
    delete, create = _propose(
        room,
        bob,
        model,
        DELETE,
        {"name": "create_issue", "arguments": {"title": "x", "team": "ENG"}},
    )
    assert "outside the teams" in delete.preview["refused"]
    assert "outside the teams" in create.preview["refused"]
    for action in (delete, create):
        api(alice).post(f"/api/actions/{action.pk}/approve", {}, format="json")
        steps.tool_call(action_id=str(action.pk))
        action.refresh_from_db()
        assert action.status == Action.Status.FAILED
        assert "outside the teams" in action.error
    assert linear.effects() == []


def test_reads_leave_out_other_teams(
    room: Room, alice: User, bob: User, model: Model, linear: Linear
) -> None:
    api(alice).patch("/api/rooms/triage", {"linear_teams": ["DES"]}, format="json")
    room.refresh_from_db()
    (search,) = _propose(
        room, bob, model, {"name": "search_issues", "arguments": {"query": ""}}
    )
    steps.tool_call(action_id=str(search.pk))
    search.refresh_from_db()
    teams = {i["team"] for i in search.result["issues"]}
    assert teams <= {"DES"}
