"""A rule on an issue matches every name Linear knows it by (PROTOCOL.md, "Approval
policies"): the model's step and an approver's edit read the issue from the Linear
stand-in, so its id names the same issue as its identifier."""

from __future__ import annotations

import pytest

from chat import enqueue, services
from chat.errors import Forbidden
from chat.models import Action, PolicyRule, Request, Room, User
from standins.linear_data import issue_uuid
from tasks import steps
from tests.tasks.conftest import Linear, Model

pytestmark = pytest.mark.django_db(transaction=True)


def _propose(model: Model, room: Room, bob: User, *calls: dict) -> list[Action]:
    """The model answers with `calls`, recorded by the worker's own step."""
    turn = services.request_start(room=room, user=bob, text="Tidy up the issues.")
    model.script({"text": "", "tool_calls": list(calls)})
    steps.model_step(request_id=str(turn.pk), step=0)
    actions = Request.objects.get(pk=turn.pk).actions.all()
    order = [c["arguments"] for c in calls]
    return sorted(actions, key=lambda a: order.index(a.arguments))


def test_a_never_rule_on_an_identifier_matches_the_issues_linear_id(
    model: Model, linear: Linear, room: Room, bob: User
) -> None:
    never = PolicyRule.objects.create(
        room=room, tool="delete_issue", arguments={"id": "ENG-1"}, mode="never"
    )
    by_id, other = _propose(
        model,
        room,
        bob,
        {"name": "delete_issue", "arguments": {"id": issue_uuid("ENG-1")}},
        {"name": "delete_issue", "arguments": {"id": issue_uuid("ENG-2")}},
    )
    assert (by_id.status, by_id.decided_via) == ("denied", "policy")
    assert str(never.pk) in by_id.reason
    assert other.status == "pending"


def test_a_never_on_a_read_does_not_fall_back_to_auto_for_the_linear_id(
    model: Model, linear: Linear, room: Room, bob: User, task_queue
) -> None:
    PolicyRule.objects.create(
        room=room, tool="get_issue", arguments={"id": "eng-1"}, mode="never"
    )
    (read,) = _propose(
        model,
        room,
        bob,
        {"name": "get_issue", "arguments": {"id": issue_uuid("ENG-1")}},
    )
    assert read.status == "denied"
    assert not [m for m in task_queue() if m["task"] == enqueue.TOOL_CALL]


def test_an_edit_to_the_linear_id_of_a_forbidden_issue_is_refused(
    model: Model, linear: Linear, room: Room, alice: User, bob: User
) -> None:
    never = PolicyRule.objects.create(
        room=room, tool="delete_issue", arguments={"id": "ENG-1"}, mode="never"
    )
    (delete,) = _propose(
        model, room, bob, {"name": "delete_issue", "arguments": {"id": "ENG-3"}}
    )
    with pytest.raises(Forbidden) as refused:
        services.action_decide(
            action_id=str(delete.pk),
            user=alice,
            decision="approve",
            arguments={"id": issue_uuid("ENG-1")},
        )
    assert f"rule {never.pk}" in refused.value.detail
    delete.refresh_from_db()
    assert (delete.status, delete.arguments) == ("pending", {"id": "ENG-3"})
    assert linear.effects() == []


def test_a_github_rule_written_with_a_hash_matches_the_issue_number(
    model: Model, room: Room, bob: User
) -> None:
    PolicyRule.objects.create(
        room=room, tool="github_get_issue", arguments={"number": "#4"}, mode="never"
    )
    read, other = _propose(
        model,
        room,
        bob,
        {"name": "github_get_issue", "arguments": {"number": 4}},
        {"name": "github_get_issue", "arguments": {"number": 40}},
    )
    assert (read.status, other.status) == ("denied", "executing")
