"""The audit trail (PROTOCOL.md, "Audit export"): each change path writes its record,
in the change's own transaction, once.

Actions are proposed through the real path of a model answer (`propose`), votes go
through the interfaces people use (REST, the room's service as the socket calls it,
the decision page's link, the admin's bulk approve).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import services
from chat.links import decide_url
from chat.models import Action, AuditRecord, Membership, Room, User
from chat.services.audit import audit_write
from tests.chat.test_api import api
from tests.chat.test_policies import approve, propose, rule
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


def records(room: Room, **filters: Any) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(room=room, **filters).order_by("seq"))


def kinds(room: Room, action: Action | None = None) -> list[str]:
    rows = records(room, action_ref=action.pk) if action else records(room)
    return [r.kind for r in rows]


@pytest.fixture
def carol(room: Room) -> User:
    user = _user("carol")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


# Votes and decisions ---------------------------------------------------------------


def test_a_rest_vote_that_completes_the_quorum_writes_vote_then_approved(
    room: Room, alice: User, bob: User
) -> None:
    action = propose(room, bob)
    assert approve(alice, action, reason="looks right").status_code == 200

    vote, approved = records(room, action_ref=action.pk)
    assert (vote.kind, vote.actor, vote.via, vote.decision) == (
        "vote",
        "alice",
        "api",
        "approve",
    )
    assert (approved.kind, approved.actor, approved.via) == ("approved", "alice", "api")
    assert approved.reason == "looks right" and approved.decision == ""
    assert vote.request_ref == action.request_id
    assert (vote.tool, vote.arguments) == ("delete_issue", {"id": "ENG-3"})
    assert vote.preview == {"identifier": "ENG-3", "title": "Flaky"}


def test_a_vote_short_of_the_quorum_writes_only_the_vote(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    approve(alice, action)
    assert kinds(room, action) == ["vote"]
    approve(carol, action)
    assert kinds(room, action) == ["vote", "vote", "approved"]
    assert records(room, kind="approved")[0].actor == "carol"


def test_a_deny_writes_vote_then_denied_with_the_reason(
    room: Room, alice: User, bob: User
) -> None:
    action = propose(room, bob)
    api(alice).post(
        f"/api/actions/{action.pk}/deny", {"reason": "wrong issue"}, format="json"
    )
    vote, denied = records(room, action_ref=action.pk)
    assert (vote.decision, denied.kind, denied.reason) == (
        "deny",
        "denied",
        "wrong issue",
    )


def test_a_refused_vote_writes_nothing(room: Room, alice: User, bob: User) -> None:
    action = propose(room, bob)
    approve(alice, action)
    before = AuditRecord.objects.count()
    assert approve(alice, action).status_code == 409
    assert api(bob).post(f"/api/actions/{action.pk}/approve").status_code == 403
    assert AuditRecord.objects.count() == before


def test_a_vote_from_the_room_is_via_room(room: Room, alice: User, bob: User) -> None:
    # What the socket's `decide` frame calls.
    action = propose(room, bob)
    services.action_decide_in_room(
        room=room, action_id=str(action.pk), user=alice, decision="approve"
    )
    assert {r.via for r in records(room, action_ref=action.pk)} == {"room"}


def test_a_vote_on_the_decision_page_is_via_link(
    room: Room, alice: User, bob: User
) -> None:
    action = propose(room, bob)
    client = Client()
    client.force_login(alice)
    client.post(decide_url(action), {"decision": "approve"})
    assert [(r.kind, r.via) for r in records(room, action_ref=action.pk)] == [
        ("vote", "link"),
        ("approved", "link"),
    ]


def test_the_admins_bulk_approve_is_via_admin(
    room: Room, bob: User, staff_decider: User
) -> None:
    action = propose(room, bob)
    client = Client()
    client.force_login(staff_decider)
    client.post(
        reverse("admin:chat_action_changelist"),
        {
            "action": "approve_selected",
            "_selected_action": [action.pk],
            "index": 0,
            "post": "yes",
        },
    )
    assert [(r.kind, r.via) for r in records(room, action_ref=action.pk)] == [
        ("vote", "admin"),
        ("approved", "admin"),
    ]


def test_an_edit_records_the_edited_call_and_a_retract_its_own_record(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    rule(room, tool="update_issue", delay=60)
    action = propose(room, bob, tool="update_issue", id="ENG-3", state="Done")
    edited = {"id": "ENG-3", "state": "In Progress"}
    assert approve(alice, action, arguments=edited).status_code == 200
    retracted = api(carol).post(
        f"/api/actions/{action.pk}/retract", {"reason": "wait"}, format="json"
    )
    assert retracted.status_code == 200, retracted.content

    vote, approved, retract = records(room, action_ref=action.pk)
    assert vote.arguments == edited and approved.arguments == edited
    assert (retract.kind, retract.actor, retract.reason) == (
        "retracted",
        "carol",
        "wait",
    )
    # The vote after a retract counts from the retract: a new ballot.
    action.refresh_from_db()
    assert action.ballot_started is not None
    approve(alice, action)
    again = records(room, action_ref=action.pk, kind="vote")[-1]
    assert again.ballot_start == action.ballot_started


# Decided by the policy, the sweep, a cancel ------------------------------------------


def test_auto_and_never_are_written_when_the_action_is_created(
    room: Room, bob: User
) -> None:
    allow = rule(room, tool="update_issue", mode="auto")
    forbid = rule(room, tool="delete_issue", mode="never")
    auto = propose(room, bob, tool="update_issue", id="ENG-3", state="Done")
    never = propose(room, bob)
    [made] = records(room, action_ref=auto.pk)
    [refused] = records(room, action_ref=never.pk)
    assert (made.kind, made.actor, made.via, made.data) == (
        "auto",
        "policy",
        "policy",
        {"rule": str(allow.pk)},
    )
    assert (refused.kind, refused.actor, refused.data) == (
        "never",
        "policy",
        {"rule": str(forbid.pk)},
    )
    assert refused.reason == never.reason


def test_a_tool_free_of_approval_by_default_writes_auto_without_a_rule(
    room: Room, bob: User
) -> None:
    action = propose(room, bob, tool="get_issue", id="ENG-3")
    assert action.status == Action.Status.EXECUTING
    [made] = records(room, action_ref=action.pk)
    assert (made.kind, made.data) == ("auto", {"rule": None})


def test_an_expiry_is_recorded_once_however_often_the_sweep_runs(
    room: Room, bob: User
) -> None:
    action = propose(room, bob)
    Action.objects.filter(pk=action.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.action_expire_overdue() == 1
    assert services.action_expire_overdue() == 0
    [expired] = records(room, action_ref=action.pk)
    assert (expired.kind, expired.actor, expired.via) == ("expired", "system", "system")
    assert Action.objects.get(pk=action.pk).status == Action.Status.EXPIRED


def test_a_cancel_records_each_stopped_action(
    room: Room, alice: User, bob: User
) -> None:
    action = propose(room, bob)
    api(alice).post(f"/api/requests/{action.request_id}/cancel")
    [cancelled] = records(room, action_ref=action.pk)
    assert (cancelled.kind, cancelled.actor, cancelled.via) == (
        "cancelled",
        "alice",
        "api",
    )


def test_a_cancel_from_the_room_is_via_room(room: Room, bob: User) -> None:
    action = propose(room, bob)
    services.request_cancel_in_room(
        room=room, request_id=str(action.request_id), user=bob
    )
    assert [(r.kind, r.actor, r.via) for r in records(room, action_ref=action.pk)] == [
        ("cancelled", "bob", "room")
    ]


# Policy and membership ---------------------------------------------------------------


def test_policy_changes_through_the_api(room: Room, alice: User) -> None:
    base = f"/api/rooms/{room.slug}/policies"
    made = api(alice).post(base, {"tool": "delete_issue"}, format="json").json()
    api(alice).patch(f"{base}/{made['id']}", {"delay": 30}, format="json")
    api(alice).delete(f"{base}/{made['id']}")

    changes = records(room, kind__startswith="policy.")
    assert [(r.kind, r.actor, r.via) for r in changes] == [
        ("policy.created", "alice", "api"),
        ("policy.updated", "alice", "api"),
        ("policy.deleted", "alice", "api"),
    ]
    assert {r.rule["id"] for r in changes} == {made["id"]}
    assert [r.rule["delay"] for r in changes] == [0, 30, 30]
    assert changes[0].rule["tool"] == "delete_issue" and changes[0].action_ref is None


def test_a_refused_policy_change_writes_nothing(room: Room, bob: User) -> None:
    before = AuditRecord.objects.count()
    answer = api(bob).post(
        f"/api/rooms/{room.slug}/policies", {"tool": "*"}, format="json"
    )
    assert answer.status_code == 403
    assert AuditRecord.objects.count() == before


def test_membership_changes_through_the_api(room: Room, alice: User, bob: User) -> None:
    # The room fixture: alice created it (added as its approver), then added bob.
    assert [(r.kind, r.actor, r.data) for r in records(room)] == [
        ("member.added", "alice", {"username": "alice", "role": "approver"}),
        ("member.added", "alice", {"username": "bob", "role": "member"}),
    ]
    members = f"/api/rooms/{room.slug}/members"
    api(alice).post(members, {"username": "bob", "role": "approver"}, format="json")
    api(alice).delete(f"{members}/bob")
    assert [(r.kind, r.via, r.data) for r in records(room)[2:]] == [
        ("member.role", "api", {"username": "bob", "role": "approver"}),
        ("member.removed", "api", {"username": "bob", "role": "approver"}),
    ]


def test_membership_and_policy_changes_in_the_admin(
    room: Room, alice: User, mallory: User
) -> None:
    User.objects.filter(pk=alice.pk).update(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(alice)
    added = client.post(
        reverse("admin:chat_membership_add"),
        {"room": room.pk, "user": mallory.pk, "role": "member"},
    )
    assert added.status_code == 302, added.content
    membership = Membership.objects.get(room=room, user=mallory)
    client.post(
        reverse("admin:chat_membership_change", args=[membership.pk]),
        {"room": room.pk, "user": mallory.pk, "role": "approver"},
    )
    client.post(
        reverse("admin:chat_membership_delete", args=[membership.pk]), {"post": "yes"}
    )
    assert [(r.kind, r.actor, r.via) for r in records(room)[2:]] == [
        ("member.added", "alice", "admin"),
        ("member.role", "alice", "admin"),
        ("member.removed", "alice", "admin"),
    ]


def test_a_room_made_on_its_page_records_its_creator(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    client.post(reverse("room-list"), {"name": "Ops", "slug": "ops"})
    room = Room.objects.get(slug="ops")
    assert [(r.kind, r.actor, r.via, r.data) for r in records(room)] == [
        ("member.added", "alice", "room", {"username": "alice", "role": "approver"})
    ]


# The write itself ----------------------------------------------------------------


def test_a_record_rolls_back_with_its_change(room: Room, alice: User) -> None:
    before = Room.objects.get(pk=room.pk).audit_seq
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_write(room=room, kind="vote", actor=alice, via="api")
        raise RuntimeError
    assert Room.objects.get(pk=room.pk).audit_seq == before
    made = AuditRecord.objects.filter(room=room).order_by("seq")
    with transaction.atomic():
        record = audit_write(room=room.pk, kind="expired", actor=None, via="system")
    # Gap-free: the rolled-back seq is taken again.
    assert record.seq == before + 1 == made.last().seq
    assert record.actor == "system"


def test_policy_changes_in_the_room_admin(room: Room) -> None:
    root = User.objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.force_login(root)
    url = reverse("admin:chat_room_change", args=[room.pk])
    form: dict[str, Any] = {
        "slug": room.slug,
        "name": room.name,
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "policy_rules-TOTAL_FORMS": 1,
        "policy_rules-INITIAL_FORMS": 0,
        "policy_rules-0-tool": "delete_issue",
        "policy_rules-0-arguments": "{}",
        "policy_rules-0-mode": "ask",
        "policy_rules-0-approvals_required": 1,
        "policy_rules-0-approvers": "[]",
        "policy_rules-0-requester_may_approve": "on",
        "policy_rules-0-delay": 0,
    }
    assert client.post(url, form).status_code == 302
    made = room.policy_rules.get()
    form.update(
        {
            "policy_rules-INITIAL_FORMS": 1,
            "policy_rules-0-id": str(made.pk),
            "policy_rules-0-room": room.pk,
            "policy_rules-0-delay": 30,
        }
    )
    assert client.post(url, form).status_code == 302
    form["policy_rules-0-DELETE"] = "on"
    assert client.post(url, form).status_code == 302
    assert not room.policy_rules.exists()

    changes = records(room, kind__startswith="policy.")
    assert [(r.kind, r.actor, r.via, r.rule["delay"]) for r in changes] == [
        ("policy.created", "root", "admin", 0),
        ("policy.updated", "root", "admin", 30),
        ("policy.deleted", "root", "admin", 30),
    ]
    assert {r.rule["id"] for r in changes} == {str(made.pk)}


def test_membership_changes_in_the_room_admins_inline(
    room: Room, mallory: User
) -> None:
    root = User.objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.force_login(root)
    url = reverse("admin:chat_room_change", args=[room.pk])
    form: dict[str, Any] = {
        "slug": room.slug,
        "name": room.name,
        "policy_rules-TOTAL_FORMS": 0,
        "policy_rules-INITIAL_FORMS": 0,
        "memberships-TOTAL_FORMS": 1,
        "memberships-INITIAL_FORMS": 0,
        "memberships-0-user": mallory.pk,
        "memberships-0-role": "member",
    }
    assert client.post(url, form).status_code == 302
    membership = Membership.objects.get(room=room, user=mallory)
    form.update(
        {
            "memberships-INITIAL_FORMS": 1,
            "memberships-0-id": membership.pk,
            "memberships-0-room": room.pk,
            "memberships-0-role": "approver",
        }
    )
    assert client.post(url, form).status_code == 302
    form["memberships-0-DELETE"] = "on"
    assert client.post(url, form).status_code == 302
    assert not Membership.objects.filter(room=room, user=mallory).exists()

    assert [(r.kind, r.actor, r.via, r.data) for r in records(room)[2:]] == [
        ("member.added", "root", "admin", {"username": "mallory", "role": "member"}),
        ("member.role", "root", "admin", {"username": "mallory", "role": "approver"}),
        (
            "member.removed",
            "root",
            "admin",
            {"username": "mallory", "role": "approver"},
        ),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_write_one_expired_record(room: Room, bob: User) -> None:
    """PostgreSQL: two beats' sweeps race for the same overdue actions; each
    expiry happens under the request's lock after a status check, and its record
    with it, so each action has exactly one `expired` record."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    from tests.chat.test_api import pending_action

    overdue = [pending_action(room, bob, call=f"call_{n}") for n in range(4)]
    Action.objects.filter(pk__in=[a.pk for a in overdue]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    def sweep(_: int) -> int:
        try:
            return services.action_expire_overdue()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert sum(pool.map(sweep, range(3))) == 4
    for action in overdue:
        assert kinds(room, action) == ["expired"]
