"""An update whose answer was lost (the worker killed, the connection cut) after the
service applied it: the retry reads back what the interrupted attempt did before
sending anything again (issue 27; found by the chaos run, `bench/chaos`).

Each test runs the tool call in-process, as a worker would, against the stand-ins
(whose records of effects say what reached the service), and retries it as Celery
does after a transient error.
"""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Action, Request, Room, User
from standins.github_server import GitHubStandin
from tasks import steps
from tasks.errors import TransientError
from tasks.linear_client import LinearClient
from tests.tasks.conftest import LINEAR_KEY, Linear, Model, github_control

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _queue(task_queue):
    return task_queue


def _approved(room: Room, bob: User, alice: User, model: Model, call: dict) -> Action:
    """The model proposes `call`; alice approves it; its run is up to the test."""
    turn = services.request_start(room=room, user=bob, text="Do it.")
    model.script({"text": "", "tool_calls": [call]}, {"text": "Done."})
    steps.model_step(request_id=str(turn.pk), step=0)
    action = Action.objects.get(request=turn)
    assert action.status == Action.Status.PENDING
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    return action


def _interrupted(action: Action) -> None:
    """The first attempt: applied by the service, its answer lost."""
    with pytest.raises(TransientError):
        steps.tool_call(action_id=str(action.pk))


UPDATE = {
    "name": "update_issue",
    "arguments": {"id": "ENG-3", "state": "In Progress", "priority": 1},
}


def test_an_update_linear_applied_before_its_answer_was_lost_is_sent_once(
    room: Room, alice: User, bob: User, model: Model, linear: Linear
) -> None:
    action = _approved(room, bob, alice, model, UPDATE)
    linear.faults({"op": "issueUpdate", "status": 503, "after_apply": True})
    _interrupted(action)
    steps.tool_call(action_id=str(action.pk))  # Celery's retry

    assert [e["op"] for e in linear.effects()] == ["issueUpdate"]
    action.refresh_from_db()
    assert (action.status, action.attempts) == (Action.Status.SUCCEEDED, 2)
    # The model hears what the update did, read back from Linear.
    assert action.result["updated"]["state"] == "In Progress"
    assert action.result["updated"]["priority"] == 1
    assert Request.objects.get(pk=action.request_id).status == Request.Status.RUNNING


def test_an_update_lost_before_linear_applied_it_is_sent_on_the_retry(
    room: Room, alice: User, bob: User, model: Model, linear: Linear
) -> None:
    action = _approved(room, bob, alice, model, UPDATE)
    linear.faults({"op": "issueUpdate", "status": 503})  # refused, nothing applied
    _interrupted(action)
    steps.tool_call(action_id=str(action.pk))

    assert [e["op"] for e in linear.effects()] == ["issueUpdate"]
    action.refresh_from_db()
    assert action.status == Action.Status.SUCCEEDED


def test_an_applied_update_changed_again_since_is_not_sent_a_second_time(
    room: Room, alice: User, bob: User, model: Model, linear: Linear, settings
) -> None:
    """Someone moved the issue on after the lost answer: the retry cannot tell its
    own update from theirs, so it refuses (as for any change since the approvers'
    preview) instead of undoing their change."""
    action = _approved(room, bob, alice, model, UPDATE)
    linear.faults({"op": "issueUpdate", "status": 503, "after_apply": True})
    _interrupted(action)
    someone = LinearClient(settings.LINEAR_API_URL, LINEAR_KEY)
    someone.update_issue("ENG-3", state="Done")

    steps.tool_call(action_id=str(action.pk))
    assert [e["input"].get("stateId") is not None for e in linear.effects()] == [
        True,
        True,
    ]
    action.refresh_from_db()
    assert action.status == Action.Status.FAILED
    assert "changed after it was shown for approval" in action.error


# GitHub ------------------------------------------------------------------------------


def test_a_github_update_applied_before_its_answer_was_lost_succeeds_once(
    room: Room, alice: User, bob: User, model: Model, github: GitHubStandin
) -> None:
    """Before, the retry sent the update again; now that every attempt is held to
    the approvers' preview, it must read back its own applied update first, or it
    would refuse its own change as someone else's."""
    call = {
        "name": "github_update_issue",
        "arguments": {"number": 1, "title": "Renamed by the agent", "labels": ["bug"]},
    }
    action = _approved(room, bob, alice, model, call)
    github_control(
        github,
        "faults",
        {"faults": [{"op": "update_issue", "status": 502, "after_apply": True}]},
    )
    _interrupted(action)
    steps.tool_call(action_id=str(action.pk))

    effects = github_control(github, "effects")["effects"]
    assert [e["op"] for e in effects] == ["update_issue"]
    action.refresh_from_db()
    assert (action.status, action.attempts) == (Action.Status.SUCCEEDED, 2)
    assert action.result["updated"]["title"] == "Renamed by the agent"
