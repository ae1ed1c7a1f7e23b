"""Approval policies (PROTOCOL.md, "Approval policies"): rules, votes, retraction.

Actions are proposed through the real path a model answer takes
(`step_claim` + `step_record`), so the rule is resolved as in production.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from chat import enqueue, services
from chat.models import (
    Action,
    Membership,
    Message,
    PolicyRule,
    Request,
    Room,
    User,
    Vote,
)
from chat.tools import check_call
from tests.chat.test_api import api, refusal
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


def rule(room: Room, **fields: Any) -> PolicyRule:
    return PolicyRule.objects.create(room=room, **{"mode": "ask", **fields})


def propose(
    room: Room, requester: User, tool: str = "delete_issue", **arguments: Any
) -> Action:
    """The model proposes one call in a fresh request, recorded as the worker does."""
    request = services.request_start(room=room, user=requester, text=f"please {tool}")
    claimed = services.step_claim(request_id=request.pk, step=0)
    assert claimed is not None
    call = check_call(
        call_id="call_1",
        name=tool,
        arguments=json.dumps(arguments or {"id": "ENG-3"}),
    )
    services.step_record(
        request=claimed,
        text="",
        calls=[call],
        previews={call.id: {"identifier": "ENG-3", "title": "Flaky"}},
        usage={},
    )
    return Action.objects.get(request=request)


def approve(user: User, action: Action, **body: Any):
    return api(user).post(f"/api/actions/{action.pk}/approve", body, format="json")


# Rules over REST -------------------------------------------------------------------


def test_approvers_add_rules_and_members_read_them(room: Room, alice, bob) -> None:
    created = api(alice).post(
        f"/api/rooms/{room.slug}/policies",
        {
            "tool": "delete_issue",
            "approvals_required": 2,
            "requester_may_approve": False,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    listed = api(bob).get(f"/api/rooms/{room.slug}/policies").json()
    assert [(r["tool"], r["mode"], r["approvals_required"]) for r in listed] == [
        ("delete_issue", "ask", 2)
    ]
    assert listed[0]["requester_may_approve"] is False


def test_members_cannot_change_the_policy(room: Room, alice, bob) -> None:
    refusal(
        api(bob).post(
            f"/api/rooms/{room.slug}/policies",
            {"tool": "*", "mode": "auto"},
            format="json",
        ),
        403,
    )
    made = rule(room, tool="*")
    refusal(api(bob).delete(f"/api/rooms/{room.slug}/policies/{made.pk}"), 403)
    assert PolicyRule.objects.filter(pk=made.pk).exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"tool": "drop_database"}, "tool"),
        ({"tool": "delete_issue", "mode": "sometimes"}, "mode"),
        ({"tool": "delete_issue", "approvals_required": 0}, "approvals_required"),
        ({"tool": "delete_issue", "approvals_required": "2"}, "approvals_required"),
        ({"tool": "delete_issue", "approvers": ["nobody-here"]}, "approvers"),
        ({"tool": "delete_issue", "delay": -1}, "delay"),
        ({"tool": "delete_issue", "timeout": True}, "timeout"),
        ({"tool": "delete_issue", "colour": "red"}, "colour"),
        ({"mode": "auto"}, "tool"),
    ],
)
def test_a_bad_rule_gets_400_naming_the_field(room, alice, body, field) -> None:
    response = api(alice).post(f"/api/rooms/{room.slug}/policies", body, format="json")
    assert field in refusal(response, 400)
    assert not PolicyRule.objects.exists()


def test_more_approvals_than_named_approvers_is_refused(room, alice) -> None:
    response = api(alice).post(
        f"/api/rooms/{room.slug}/policies",
        {"tool": "delete_issue", "approvals_required": 2, "approvers": ["alice"]},
        format="json",
    )
    assert "no action could be approved" in refusal(response, 400)


def test_a_rule_is_changed_and_deleted(room, alice) -> None:
    made = rule(room, tool="delete_issue")
    changed = api(alice).patch(
        f"/api/rooms/{room.slug}/policies/{made.pk}", {"delay": 30}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["delay"] == 30
    gone = api(alice).delete(f"/api/rooms/{room.slug}/policies/{made.pk}")
    assert gone.status_code == 204
    refusal(api(alice).delete(f"/api/rooms/{room.slug}/policies/{made.pk}"), 404)


def test_tools_lists_every_tool_with_its_pack_and_default(alice) -> None:
    tools = {t["name"]: t for t in api(alice).get("/api/tools").json()}
    assert tools["search_issues"]["requires_approval"] is False
    assert tools["delete_issue"]["requires_approval"] is True
    assert tools["delete_issue"]["parameters"]["required"] == ["id"]
    # GitHub's pack is on (the tests set GITHUB_TOKEN and GITHUB_REPOSITORY).
    packs = {name: t["pack"] for name, t in tools.items()}
    assert {packs[n] for n in packs if n.startswith("github_")} == {"github"}
    assert {packs[n] for n in packs if not n.startswith("github_")} == {"linear"}
    assert tools["github_get_issue"]["requires_approval"] is False
    assert tools["github_create_issue"]["requires_approval"] is True


def test_tools_lists_mcp_tools_by_their_annotations(alice, settings) -> None:
    from chat import services
    from chat import tools as catalogue

    settings.AGENT_MCP_SERVERS = [
        {"name": "notes", "url": "http://127.0.0.1:9/mcp", "trust_annotations": True}
    ]
    services.mcp_listing_store(
        server="notes",
        tools=[
            {
                "name": "search",
                "description": "Find notes.",
                "inputSchema": {"type": "object", "properties": {}},
                "annotations": {"readOnlyHint": True},
            },
            {"name": "wipe", "inputSchema": {"type": "object"}},
            # Not offerable: the name breaks OpenAI's rule, the schema is no object.
            {"name": "bad name", "inputSchema": {"type": "object"}},
            {"name": "list", "inputSchema": {"type": "string"}},
        ],
    )
    # A listing of a server that is no longer configured is not offered.
    services.mcp_listing_store(server="gone", tools=[{"name": "x"}])
    try:
        tools = {t["name"]: t for t in api(alice).get("/api/tools").json()}
    finally:
        catalogue.forget_listings()
    mcp = {name: t for name, t in tools.items() if t["pack"] == "mcp"}
    assert sorted(mcp) == ["notes__search", "notes__wipe"]
    assert mcp["notes__search"]["requires_approval"] is False
    assert mcp["notes__wipe"]["requires_approval"] is True
    assert mcp["notes__search"]["description"] == "Find notes."


# Resolution --------------------------------------------------------------------------


def test_without_rules_the_defaults_hold(room, bob) -> None:
    asks = propose(room, bob, "delete_issue")
    runs = propose(room, bob, "search_issues", query="login")
    assert (asks.status, asks.approvals_required, asks.rule) == ("pending", 1, None)
    assert asks.expires_at is not None
    assert runs.status == "executing"


def test_a_named_tool_beats_star_and_more_arguments_beat_fewer(room, bob) -> None:
    rule(room, tool="*", mode="never")
    rule(room, tool="delete_issue", approvals_required=1)
    specific = rule(room, tool="delete_issue", arguments={"id": "ENG-3"}, delay=5)
    action = propose(room, bob, "delete_issue", id="ENG-3")
    other = propose(room, bob, "delete_issue", id="ENG-4")
    assert action.rule["rule_id"] == str(specific.pk) and action.delay == 5
    assert other.status == "pending" and other.delay == 0
    assert propose(room, bob, "add_comment", id="ENG-3", body="hi").status == "denied"


def test_an_auto_rule_runs_at_once_and_a_new_tool_asks(room, bob, settings) -> None:
    rule(room, tool="delete_issue", mode="auto")
    assert propose(room, bob, "delete_issue").status == "executing"
    settings.AGENT_APPROVAL_TOOLS = []  # not in the list, and not declared a read
    assert propose(room, bob, "add_comment", id="ENG-3", body="x").status == "pending"


def test_a_never_rule_denies_at_once_and_tells_the_model_why(room, bob) -> None:
    made = rule(room, tool="delete_issue", mode="never")
    action = propose(room, bob)
    assert (action.status, action.decided_via) == ("denied", "policy")
    assert str(made.pk) in action.reason
    told = Message.objects.get(request=action.request, role="tool")
    assert "policy does not allow" in told.content and str(made.pk) in told.content
    # Nothing waits for a person: the turn goes on to the next model call.
    assert Request.objects.get(pk=action.request_id).status == "running"


def test_changing_the_policy_later_does_not_change_a_proposed_action(
    room, alice, bob, carol
) -> None:
    made = rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    made.delete()
    assert approve(alice, action).json()["status"] == "pending"
    assert approve(carol, action).json()["status"] == "approved"


# Votes -------------------------------------------------------------------------------


def test_the_quorum_completes_on_the_second_distinct_approval(
    room, alice, bob, carol, task_queue, django_capture_on_commit_callbacks
) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    first = approve(alice, action).json()
    assert first["status"] == "pending"
    assert [a["username"] for a in first["approvals"]] == ["alice"]
    assert "carol" in first["eligible"] and "alice" not in first["eligible"]
    assert not [m for m in task_queue() if m["task"] == enqueue.TOOL_CALL]
    with django_capture_on_commit_callbacks(execute=True):
        second = approve(carol, action).json()
    assert second["status"] == "approved"
    assert [m["task"] for m in task_queue()].count(enqueue.TOOL_CALL) == 1


def test_the_same_user_voting_twice_gets_409(room, alice, bob, carol) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    approve(alice, action)
    assert "already voted" in refusal(approve(alice, action), 409)


def test_four_eyes_the_requester_may_not_approve(room, alice, carol) -> None:
    rule(room, tool="delete_issue", requester_may_approve=False)
    action = propose(room, alice)  # alice is an approver, and the requester
    assert "other than the requester" in refusal(approve(alice, action), 403)
    assert approve(carol, action).json()["status"] == "approved"


def test_only_named_approvers_may_vote(room, alice, bob, carol) -> None:
    rule(room, tool="delete_issue", approvers=["carol"])
    action = propose(room, bob)
    assert "carol" in refusal(approve(alice, action), 403)
    assert approve(carol, action).json()["status"] == "approved"


def test_one_deny_vetoes_after_approvals(room, alice, bob, carol) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    approve(alice, action)
    denied = api(carol).post(
        f"/api/actions/{action.pk}/deny", {"reason": "not this one"}, format="json"
    )
    assert denied.json()["status"] == "denied"
    refusal(approve(alice, action), 409)


def test_an_edit_replaces_the_arguments_and_resets_the_votes(
    room, alice, bob, carol, dave
) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    approve(alice, action)
    edited = approve(carol, action, arguments={"id": "ENG-4"}).json()
    assert edited["status"] == "pending"
    assert edited["arguments"] == {"id": "ENG-4"}
    assert [a["username"] for a in edited["approvals"]] == ["carol"]
    # alice's vote was for other arguments: she votes again, and that completes it.
    assert approve(alice, action).json()["status"] == "approved"
    assert Action.objects.get(pk=action.pk).proposed_arguments == {"id": "ENG-3"}


def test_each_vote_is_a_durable_action_event(room, alice, bob, carol) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    approve(alice, action)
    approve(carol, action)
    events = api(bob).get(f"/api/rooms/{room.slug}/events").json()["events"]
    mine = [e["action"] for e in events if e["type"] == "action"]
    mine = [a for a in mine if a["id"] == str(action.pk)]
    assert [len(a["approvals"]) for a in mine] == [0, 1, 2]
    assert [a["status"] for a in mine] == ["pending", "pending", "approved"]


# Grace period and expiry ---------------------------------------------------------


def test_a_delay_holds_the_tool_and_a_retract_puts_it_back(
    room, alice, bob, task_queue
) -> None:
    rule(room, tool="delete_issue", delay=60)
    action = propose(room, bob)
    approved = approve(alice, action).json()
    assert approved["status"] == "approved" and approved["runs_at"]
    # Claimed too early (the message, or the sweep): nothing starts.
    assert services.action_claim(action_id=action.pk) is None
    assert services.sweep()["actions"] == 0
    retracted = api(alice).post(
        f"/api/actions/{action.pk}/retract", {"reason": "wrong issue"}, format="json"
    )
    assert retracted.status_code == 200, retracted.content
    body = retracted.json()
    assert (body["status"], body["approvals"], body["runs_at"]) == ("pending", [], None)
    assert body["retractions"][0]["username"] == "alice"


def test_retract_after_the_tool_started_gets_409(room, alice, bob) -> None:
    rule(room, tool="delete_issue", delay=60)
    action = propose(room, bob)
    approve(alice, action)
    Action.objects.filter(pk=action.pk).update(runs_at=timezone.now())
    assert services.action_claim(action_id=action.pk) is not None  # it started
    response = api(alice).post(f"/api/actions/{action.pk}/retract", {}, format="json")
    assert "already executing" in refusal(response, 409)


def test_members_may_not_retract(room, alice, bob) -> None:
    rule(room, tool="delete_issue", delay=60)
    action = propose(room, bob)
    approve(alice, action)
    refusal(api(bob).post(f"/api/actions/{action.pk}/retract", {}, format="json"), 403)


def test_the_sweep_starts_it_once_its_delay_passed(
    room, alice, bob, task_queue
) -> None:
    rule(room, tool="delete_issue", delay=60)
    action = propose(room, bob)
    approve(alice, action)
    Action.objects.filter(pk=action.pk).update(
        runs_at=timezone.now() - timedelta(seconds=1),
        updated=timezone.now() - timedelta(minutes=5),
    )
    assert services.sweep()["actions"] == 1
    assert services.action_claim(action_id=action.pk) is not None
    assert services.action_claim(action_id=action.pk) is None  # exactly once


def test_a_rule_timeout_sets_expires_at_and_the_sweep_expires_it(room, bob) -> None:
    rule(room, tool="delete_issue", timeout=60)
    action = propose(room, bob)
    assert action.expires_at - action.created < timedelta(seconds=61)
    Action.objects.filter(pk=action.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.sweep()["expired"] == 1
    assert Action.objects.get(pk=action.pk).status == "expired"


def test_retraction_reaches_the_model_with_the_final_result(room, alice, bob) -> None:
    rule(room, tool="delete_issue", delay=60)
    action = propose(room, bob)
    approve(alice, action)
    api(alice).post(
        f"/api/actions/{action.pk}/retract", {"reason": "wait"}, format="json"
    )
    api(alice).post(f"/api/actions/{action.pk}/deny", {"reason": "no"}, format="json")
    told = Message.objects.get(request=action.request, role="tool").content
    assert "retracted" in told and "wait" in told and "denied" in told


def test_votes_are_stored_per_ballot(room, alice, bob, carol) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    approve(alice, action)
    approve(carol, action, arguments={"id": "ENG-9"})
    assert list(
        Vote.objects.filter(action=action).values_list("user__username", "ballot")
    ) == [("alice", 0), ("carol", 1)]


# Races (PostgreSQL: row locks) ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ten_voters_at_once_give_exactly_two_200s_and_one_execution(
    room, bob, task_queue
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    voters = []
    for i in range(10):
        user = _user(f"voter{i}")
        Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
        voters.append(user)
        api(user)  # each token, made before the threads
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)

    def vote(user: User) -> int:
        try:
            return approve(user, action).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = sorted(pool.map(vote, voters))

    assert codes == [200, 200] + [409] * 8
    assert Action.objects.get(pk=action.pk).status == "approved"
    assert Vote.objects.filter(action=action).count() == 2
    assert [m["task"] for m in task_queue()].count(enqueue.TOOL_CALL) == 1

    def claim(_: int) -> bool:
        try:
            return services.action_claim(action_id=action.pk) is not None
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=5) as pool:
        assert sorted(pool.map(claim, range(5))) == [False] * 4 + [True]
