"""The AG-UI endpoint's services: runIds once per caller and room, resume entries
as votes with the contract's codes (chat.services.agui)."""

from __future__ import annotations

import pytest

from chat import services
from chat.errors import Conflict, Invalid
from chat.models import Action, AguiRun, Membership
from chat.services.agui import Entry, agui_resume, agui_run_post
from tests.chat.test_api import pending_action
from tests.plugins.people import _user


@pytest.fixture
def carol(room, alice):
    carol = _user("carol")
    services.member_add(
        room=room, actor=alice, username="carol", role=Membership.Role.APPROVER
    )
    return carol


def approve(action: Action) -> list[Entry]:
    return [Entry(str(action.pk), "resolved", {"approved": True})]


def test_a_run_id_is_used_once_per_caller_and_room_and_a_refusal_leaves_it_unused(
    room, alice, bob, settings
) -> None:
    settings.AGENT_MAX_INPUT_CHARS = 10
    with pytest.raises(Invalid):
        agui_run_post(room=room, user=bob, run_id="r1", text="x" * 11)
    assert not AguiRun.objects.exists()
    agui_run_post(room=room, user=bob, run_id="r1", text="hello")
    with pytest.raises(Conflict):
        agui_run_post(room=room, user=bob, run_id="r1", text="hello again")
    agui_run_post(room=room, user=alice, run_id="r1", text="hello")  # another caller


def test_resume_entries_are_votes_with_the_contracts_codes(
    room, alice, bob, carol
) -> None:
    action = pending_action(room, bob)
    Action.objects.filter(pk=action.pk).update(approvals_required=2)
    other = pending_action(room, bob, call="call_2")

    first = agui_resume(room=room, user=alice, run_id="a1", entries=approve(action))
    assert first.refusal is None and first.answered == {str(action.pk)}
    assert first.request_id == str(action.request_id)
    assert first.seen is not None and first.after == first.seen["seq"]
    again = agui_resume(room=room, user=alice, run_id="a2", entries=approve(action))
    assert again.refusal is not None and again.refusal[0] == "already_voted"
    mixed = approve(action) + approve(other)
    assert agui_resume(room=room, user=carol, run_id="c1", entries=mixed).refusal == (
        "resume_mismatch",
        "The entries name actions of more than one request; resume one at a time.",
    )
    # An entry naming nothing of this room is skipped with a warning.
    stray = [Entry("not-an-action", "resolved", {"approved": True})]
    done = agui_resume(
        room=room, user=carol, run_id="c2", entries=stray + approve(action)
    )
    assert done.refusal is None and len(done.warnings) == 1
    action.refresh_from_db()
    assert action.status == "approved"
    assert {v.via for v in action.votes.all()} == {"api"}
    with pytest.raises(Conflict):  # the runId is used up
        agui_resume(room=room, user=carol, run_id="c2", entries=approve(action))


def test_a_tool_message_names_its_action(room, alice, bob) -> None:
    action = pending_action(room, bob)
    services.action_decide(action_id=str(action.pk), user=alice, decision="deny")
    message = action.request.messages.get(role="tool")
    assert message.action_id == action.pk
    payload = services.message_emit(message)
    assert payload["action"] == str(action.pk)
