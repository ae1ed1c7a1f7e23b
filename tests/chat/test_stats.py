"""GET /api/rooms/<slug>/stats (PROTOCOL.md, "Decision analytics")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import services
from chat.models import Action, AuditRecord, Membership, Room, User
from tests.chat.test_api import api, refusal
from tests.chat.test_policies import approve, propose, rule
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


def stats(user: User, room: Room, query: str = "") -> dict:
    response = api(user).get(f"/api/rooms/{room.slug}/stats{query}")
    assert response.status_code == 200, response.content
    return response.json()


def aged(action: Action, seconds: int) -> Action:
    """As if proposed `seconds` ago."""
    then = timezone.now() - timedelta(seconds=seconds)
    Action.objects.filter(pk=action.pk).update(created=then)
    action.refresh_from_db()
    return action


@pytest.fixture(autouse=True)
def many_requests(settings) -> None:
    # Each test proposes more actions, in requests of their own, than one user may
    # have running at once.
    settings.AGENT_MAX_ACTIVE_PER_USER = 100
    settings.AGENT_MAX_PENDING_PER_USER = 100


@pytest.fixture
def carol(room: Room) -> User:
    user = _user("carol")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


def test_who_may_read_and_the_days_parameter(
    room: Room, alice: User, bob: User, mallory: User, staff_decider: User
) -> None:
    answer = stats(alice, room)
    assert (answer["room"], answer["days"]) == ("triage", 30)
    assert stats(staff_decider, room, "?days=365")["days"] == 365
    refusal(api(bob).get(f"/api/rooms/{room.slug}/stats"), 403)
    refusal(api(mallory).get(f"/api/rooms/{room.slug}/stats"), 404)
    for days in ("0", "366", "x", "-1", "1.5"):
        refusal(api(alice).get(f"/api/rooms/{room.slug}/stats?days={days}"), 400)


def test_current_approvers_without_votes_get_zero_rows(
    room: Room, alice: User, carol: User
) -> None:
    answer = stats(alice, room)
    assert answer["approvers"] == [
        {
            "username": name,
            "votes": 0,
            "approvals": 0,
            "denials": 0,
            "median_seconds_to_vote": None,
            "rubber_stamp": False,
        }
        for name in ("alice", "carol")
    ]
    assert answer["tools"] == []


def test_votes_counts_and_the_median_from_the_ballots_start(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    first = aged(propose(room, bob), 100)
    approve(alice, first)
    approve(carol, first)
    second = aged(propose(room, bob), 300)
    api(alice).post(f"/api/actions/{second.pk}/deny", {}, format="json")

    by_name = {a["username"]: a for a in stats(alice, room)["approvers"]}
    assert (by_name["alice"]["votes"], by_name["alice"]["approvals"]) == (2, 1)
    assert by_name["alice"]["denials"] == 1
    # 100 s and 300 s after each action was proposed (and a busy machine's delay).
    assert 199 <= by_name["alice"]["median_seconds_to_vote"] <= 230
    assert 99 <= by_name["carol"]["median_seconds_to_vote"] <= 130
    assert by_name["carol"]["votes"] == 1


def test_a_retract_opens_a_ballot_the_next_vote_is_timed_from(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    rule(room, tool="delete_issue", delay=60)
    action = aged(propose(room, bob), 1000)
    approve(alice, action)
    api(carol).post(f"/api/actions/{action.pk}/retract", {}, format="json")
    approve(carol, action)

    by_name = {a["username"]: a for a in stats(alice, room)["approvers"]}
    assert by_name["alice"]["median_seconds_to_vote"] >= 999
    assert by_name["carol"]["median_seconds_to_vote"] < 5


def test_ten_quick_approvals_and_no_denial_are_a_rubber_stamp(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    for n in range(10):
        action = propose(room, bob)
        approve(alice, action)
        if n == 0:
            # carol takes her time once, and never denies: not a stamp.
            other = aged(propose(room, bob), 60)
            approve(carol, other)
    by_name = {a["username"]: a for a in stats(alice, room)["approvers"]}
    assert by_name["alice"]["approvals"] == 10
    assert by_name["alice"]["rubber_stamp"] is True
    assert by_name["carol"]["rubber_stamp"] is False


def test_tools_count_each_actions_current_state(
    room: Room, alice: User, bob: User
) -> None:
    approved = propose(room, bob)
    approve(alice, approved)
    denied = propose(room, bob)
    api(alice).post(f"/api/actions/{denied.pk}/deny", {}, format="json")
    expired = propose(room, bob)
    Action.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    services.action_expire_overdue()
    propose(room, bob)  # pending: proposed only
    cancelled = propose(room, bob)
    services.request_cancel(request_id=str(cancelled.request_id), user=bob)
    propose(room, bob, tool="get_issue", id="ENG-3")  # approval-free
    forbid = rule(room, tool="update_issue", mode="never")
    propose(room, bob, tool="update_issue", id="ENG-3", state="Done")
    forbid.delete()
    rule(room, tool="update_issue", mode="auto")
    propose(room, bob, tool="update_issue", id="ENG-4", state="Done")

    tools = {t["tool"]: t for t in stats(alice, room)["tools"]}
    assert tools["delete_issue"] == {
        "tool": "delete_issue",
        "proposed": 5,
        "approved": 1,
        "denied": 1,
        "expired": 1,
        "auto": 0,
        "never": 0,
    }
    assert tools["get_issue"]["auto"] == 1
    assert (tools["update_issue"]["never"], tools["update_issue"]["auto"]) == (1, 1)
    assert tools["update_issue"]["proposed"] == 2


def test_the_window_leaves_out_older_votes_and_actions(
    room: Room, alice: User, bob: User
) -> None:
    old = propose(room, bob)
    approve(alice, old)
    long_ago = timezone.now() - timedelta(days=40)
    Action.objects.filter(pk=old.pk).update(created=long_ago)
    AuditRecord.objects.filter(action_ref=old.pk).update(at=long_ago)
    answer = stats(alice, room)
    assert answer["tools"] == []
    assert answer["approvers"][0]["votes"] == 0
    assert stats(alice, room, "?days=60")["approvers"][0]["votes"] == 1


def test_stats_cost_a_fixed_number_of_queries(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    client = api(alice)

    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/api/rooms/{room.slug}/stats").status_code == 200
        return len(queries)

    cost()  # the token's first use
    few = cost()
    for n in range(6):
        action = propose(room, bob, tool="get_issue" if n % 2 else "delete_issue")
        if action.status == Action.Status.PENDING:
            approve(alice if n % 4 else carol, action)
    assert cost() == few
    assert few <= 8, few
