"""An edit is judged under its own rule, and rules match what a call means
(PROTOCOL.md, "Approval policies": how a rule's `arguments` match a call; a vote
with `arguments` judged under the new arguments' rule).

Actions are proposed through the path a model answer takes (`step_record`), and
votes go through the REST API and the room's WebSocket, as people send them.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from chat.models import Action, Membership, Message, PolicyRule, Room, User, Vote
from tests.chat.test_api import api, refusal
from tests.chat.test_consumer import connect, receive_until, token_headers
from tests.chat.test_policies import approve, propose, rule
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(room: Room) -> User:
    user = _user("carol")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


@pytest.fixture
def dave(room: Room) -> User:
    user = _user("dave")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


def _as_it_was(action: Action) -> tuple:
    fresh = Action.objects.get(pk=action.pk)
    return (
        fresh.status,
        fresh.arguments,
        fresh.proposed_arguments,
        fresh.approvals_required,
        fresh.ballot,
        Vote.objects.filter(action=action).count(),
    )


# The reproduction -----------------------------------------------------------


def test_an_edit_onto_a_never_target_is_refused_naming_the_rule(
    room: Room, alice: User, carol: User
) -> None:
    never = rule(room, tool="delete_issue", arguments={"id": "ENG-1"}, mode="never")
    rule(
        room,
        tool="delete_issue",
        arguments={"id": "ENG-2"},
        approvals_required=2,
        requester_may_approve=False,
    )
    action = propose(room, alice, "delete_issue", id="ENG-9")  # the default rule
    before = _as_it_was(action)

    detail = refusal(approve(carol, action, arguments={"id": "ENG-1"}), 403)

    assert f"rule {never.pk}" in detail and "never" in detail
    assert _as_it_was(action) == before


def test_an_edit_onto_a_quorum_target_takes_its_rule_and_stays_pending(
    room: Room, alice: User, carol: User, dave: User
) -> None:
    two = rule(
        room,
        tool="delete_issue",
        arguments={"id": "ENG-2"},
        approvals_required=2,
        requester_may_approve=False,
        delay=30,
        timeout=600,
    )
    action = propose(room, alice, "delete_issue", id="ENG-9")

    edited = approve(carol, action, arguments={"id": "ENG-2"})

    assert edited.status_code == 200, edited.content
    body = edited.json()
    assert body["status"] == "pending"
    assert (body["approvals_required"], body["requester_may_approve"]) == (2, False)
    assert [a["username"] for a in body["approvals"]] == ["carol"]
    assert body["arguments"] == {"id": "ENG-2"}
    assert body["proposed_arguments"] == {"id": "ENG-9"}
    stored = Action.objects.get(pk=action.pk)
    assert stored.rule is not None and stored.rule["rule_id"] == str(two.pk)
    assert stored.delay == 30
    assert stored.expires_at is not None
    assert 590 <= (stored.expires_at - stored.created).total_seconds() <= 610
    # alice asked for it: four eyes, under the edited call's rule.
    assert "other than the requester" in refusal(approve(alice, action), 403)
    assert approve(dave, action).json()["status"] == "approved"


def test_an_edit_is_refused_to_whom_the_new_rule_does_not_name(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    rule(room, tool="delete_issue", arguments={"id": "ENG-2"}, approvers=["alice"])
    action = propose(room, bob, "delete_issue", id="ENG-9")
    before = _as_it_was(action)

    detail = refusal(approve(carol, action, arguments={"id": "ENG-2"}), 403)

    assert "alice" in detail and "nothing changed" in detail
    assert _as_it_was(action) == before


def test_an_edit_does_not_escape_the_named_approvers_of_the_current_rule(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    rule(room, tool="delete_issue", arguments={"id": "ENG-9"}, approvers=["alice"])
    action = propose(room, bob, "delete_issue", id="ENG-9")
    # ENG-4 falls under the default rule, where carol could vote: she may not
    # touch an action whose own rule leaves her out.
    assert "alice" in refusal(approve(carol, action, arguments={"id": "ENG-4"}), 403)
    assert Action.objects.get(pk=action.pk).arguments == {"id": "ENG-9"}


def test_an_edit_onto_an_auto_target_needs_the_editors_approval_only(
    room: Room, alice: User, bob: User
) -> None:
    rule(room, tool="delete_issue", arguments={"id": "ENG-5"}, mode="auto")
    rule(room, tool="delete_issue", arguments={"id": "ENG-9"}, approvals_required=2)
    action = propose(room, bob, "delete_issue", id="ENG-9")

    edited = approve(alice, action, arguments={"id": "ENG-5"}).json()

    assert (edited["status"], edited["approvals_required"]) == ("approved", 1)
    assert [a["username"] for a in edited["approvals"]] == ["alice"]


def test_an_edit_is_judged_by_every_spelling_of_the_target(
    room: Room, bob: User, carol: User
) -> None:
    never = rule(room, tool="delete_issue", arguments={"id": "ENG-1"}, mode="never")
    action = propose(room, bob, "delete_issue", id="ENG-9")
    for spelling in ("eng-1", " ENG-1 "):
        detail = refusal(approve(carol, action, arguments={"id": spelling}), 403)
        assert str(never.pk) in detail
    assert Action.objects.get(pk=action.pk).status == "pending"


def test_the_model_hears_the_edited_call_was_denied_not_approved(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    rule(room, tool="delete_issue", arguments={"id": "ENG-2"}, approvals_required=2)
    action = propose(room, bob, "delete_issue", id="ENG-9")
    approve(alice, action, arguments={"id": "ENG-2"})
    api(carol).post(
        f"/api/actions/{action.pk}/deny", {"reason": "keep it"}, format="json"
    )
    told = json.loads(Message.objects.get(request=action.request, role="tool").content)
    assert told["status"] == "denied" and told["reason"] == "keep it"
    assert "carol denied" in told["note"]
    assert told["edited"] == {"proposed": {"id": "ENG-9"}, "ran_with": {"id": "ENG-2"}}


# The same refusal over the room's WebSocket ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_decide_frame_editing_onto_a_never_target_gets_an_error_frame(
    room: Room, bob: User, carol: User
) -> None:
    never = rule(room, tool="delete_issue", arguments={"id": "ENG-1"}, mode="never")
    action = propose(room, bob, "delete_issue", id="ENG-9")
    headers = token_headers(carol)

    async def scenario() -> dict:
        ws, _ = await connect(headers)
        await ws.send_json_to(
            {
                "type": "decide",
                "action": str(action.pk),
                "decision": "approve",
                "arguments": {"id": "eng-1"},
            }
        )
        frames = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1]

    error = asyncio.run(scenario())

    assert error["frame"] == "decide"
    assert f"rule {never.pk}" in error["detail"] and "never" in error["detail"]
    stored = Action.objects.get(pk=action.pk)
    assert (stored.status, stored.arguments) == ("pending", {"id": "ENG-9"})


# Matching -----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["ENG-1", "eng-1", " ENG-1", "Eng-1\n"])
def test_a_never_rule_matches_its_target_however_it_is_spelled(
    room: Room, bob: User, spelling: str
) -> None:
    rule(room, tool="delete_issue", arguments={"id": "ENG-1"}, mode="never")
    action = propose(room, bob, "delete_issue", id=spelling)
    assert (action.status, action.decided_via) == ("denied", "policy")


def test_a_never_on_a_read_does_not_fall_back_to_auto(room: Room, bob: User) -> None:
    rule(room, tool="get_issue", arguments={"id": "ENG-1"}, mode="never")
    assert propose(room, bob, "get_issue", id=" eng-1 ").status == "denied"
    assert propose(room, bob, "get_issue", id="ENG-2").status == "executing"


def test_values_other_than_the_target_match_trimmed_and_caseless(
    room: Room, bob: User
) -> None:
    rule(room, tool="update_issue", arguments={"state": "Done"}, mode="never")
    action = propose(room, bob, "update_issue", id="ENG-3", state=" done")
    assert action.status == "denied"


def test_an_auto_rule_for_a_state_change_does_not_let_a_title_be_rewritten(
    room: Room, bob: User
) -> None:
    rule(room, tool="update_issue", arguments={"state": "In Progress"}, mode="auto")
    state_only = propose(room, bob, "update_issue", id="ENG-3", state="in progress")
    rewrite = propose(
        room,
        bob,
        "update_issue",
        id="ENG-3",
        state="In Progress",
        title="Nothing to see",
        assignee="mallory",
    )
    assert state_only.status == "executing"
    assert (rewrite.status, rewrite.rule) == ("pending", None)


def test_an_ask_rule_matches_a_call_that_carries_more(room: Room, bob: User) -> None:
    made = rule(
        room, tool="update_issue", arguments={"state": "Done"}, approvals_required=2
    )
    action = propose(room, bob, "update_issue", id="ENG-3", state="Done", title="x")
    assert action.rule is not None and action.rule["rule_id"] == str(made.pk)


def test_tools_name_their_target(alice: User) -> None:
    tools = {t["name"]: t for t in api(alice).get("/api/tools").json()}
    assert {n: t["target"] for n, t in tools.items() if t["target"]} == {
        "get_issue": "id",
        "update_issue": "id",
        "delete_issue": "id",
        "add_comment": "id",
        "github_get_issue": "number",
        "github_update_issue": "number",
        "github_add_comment": "number",
    }
    assert tools["search_issues"]["target"] is None
    assert tools["create_issue"]["target"] is None


def test_a_github_rule_matches_the_number_as_a_number_or_text(
    room: Room, bob: User
) -> None:
    for value in (12, " 12"):
        PolicyRule.objects.all().delete()
        rule(
            room, tool="github_update_issue", arguments={"number": value}, mode="never"
        )
        action = propose(room, bob, "github_update_issue", number=12, state="closed")
        assert action.status == "denied", value
