"""Who may vote on an action now (chat/eligibility.py), and votes that stop counting
when their voter is removed, demoted or deactivated (PROTOCOL.md, "Approval
policies": a vote counts only while its voter may still vote)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction

from chat import services
from chat.api.serializers import ActionSerializer
from chat.eligibility import may_vote
from chat.errors import Forbidden, NotFound
from chat.models import Action, Delivery, Membership, Room, RoomEvent, User, Vote
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    pending_action,
    refusal,
)
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_enqueue(monkeypatch) -> None:
    # An approval queues its tool call; these tests are about who may vote.
    monkeypatch.setattr("chat.enqueue._send", lambda *args, **kwargs: None)


def _approver(room: Room, username: str) -> User:
    user = _user(username)
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


@pytest.fixture
def carol(room: Room) -> User:
    return _approver(room, "carol")


@pytest.fixture
def dave(room: Room) -> User:
    return _approver(room, "dave")


def quorum_of_two(room: Room, requester: User) -> Action:
    action = pending_action(room, requester)
    Action.objects.filter(pk=action.pk).update(approvals_required=2)
    action.refresh_from_db()
    return action


def approve(user: User, action: Action) -> dict[str, Any]:
    response = api(user).post(f"/api/actions/{action.pk}/approve", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def last_action_event(action: Action) -> dict[str, Any]:
    event = (
        RoomEvent.objects.filter(room_id=action.room_id, type="action")
        .order_by("seq")
        .last()
    )
    assert event is not None
    assert event.payload["id"] == str(action.pk)
    return event.payload


def names(approvals: list[dict[str, str]]) -> list[str]:
    return [vote["username"] for vote in approvals]


# Stale votes drop -------------------------------------------------------------------


def test_a_removed_approvers_approval_no_longer_counts_toward_the_quorum(
    room, alice, bob, carol, dave, django_capture_on_commit_callbacks
) -> None:
    action = quorum_of_two(room, bob)
    assert names(approve(carol, action)["approvals"]) == ["carol"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).delete(f"/api/rooms/{room.slug}/members/carol")
    assert response.status_code == 204
    seen = last_action_event(action)
    assert seen["status"] == "pending" and seen["approvals"] == []
    assert "carol" not in seen["eligible"] and "dave" in seen["eligible"]
    assert not Vote.objects.filter(action=action, user=carol).exists()
    after = approve(dave, action)
    assert after["status"] == "pending"  # one approval of two, not two
    assert names(after["approvals"]) == ["dave"]


def test_a_demoted_approvers_approval_no_longer_counts_toward_the_quorum(
    room, alice, bob, carol, dave, django_capture_on_commit_callbacks
) -> None:
    action = quorum_of_two(room, bob)
    approve(carol, action)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).post(
            f"/api/rooms/{room.slug}/members",
            {"username": "carol", "role": "member"},
            format="json",
        )
    assert response.status_code == 201
    seen = last_action_event(action)
    assert seen["approvals"] == [] and "carol" not in seen["eligible"]
    assert approve(dave, action)["status"] == "pending"
    refusal(
        api(carol).post(f"/api/actions/{action.pk}/approve", {}, format="json"), 403
    )


def test_a_deactivated_approvers_approval_no_longer_counts_toward_the_quorum(
    room, alice, bob, carol, dave, django_capture_on_commit_callbacks
) -> None:
    action = quorum_of_two(room, bob)
    approve(carol, action)
    with django_capture_on_commit_callbacks(execute=True):
        carol.is_active = False
        carol.save()  # as in a shell: no form, no admin
    seen = last_action_event(action)
    assert seen["approvals"] == [] and "carol" not in seen["eligible"]
    assert not Vote.objects.filter(action=action, user=carol).exists()
    assert approve(dave, action)["status"] == "pending"


def test_votes_on_decided_actions_are_history_and_stay(
    room, alice, bob, carol, django_capture_on_commit_callbacks
) -> None:
    action = pending_action(room, bob)
    assert approve(carol, action)["status"] == "approved"
    events = RoomEvent.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        api(alice).delete(f"/api/rooms/{room.slug}/members/carol")
    assert Vote.objects.filter(action=action, user=carol).exists()
    assert RoomEvent.objects.count() == events  # nothing changed, nothing told
    action.refresh_from_db()
    assert action.status == Action.Status.APPROVED


def test_a_named_approver_demoted_to_member_keeps_their_vote(
    room, alice, bob, carol, dave, django_capture_on_commit_callbacks
) -> None:
    action = quorum_of_two(room, bob)
    Action.objects.filter(pk=action.pk).update(approvers=["carol", "dave"])
    approve(carol, action)
    with django_capture_on_commit_callbacks(execute=True):
        api(alice).post(
            f"/api/rooms/{room.slug}/members",
            {"username": "carol", "role": "member"},
            format="json",
        )
    # Named by the rule and still a member: still a voter, so the vote stands.
    assert approve(dave, action)["status"] == "approved"


def test_a_vote_left_behind_does_not_count_either(room, alice, bob, carol, dave):
    """A membership deleted where no service hears of it (a shell's queryset
    delete): the quorum counts only votes whose voters may still vote."""
    action = quorum_of_two(room, bob)
    approve(carol, action)
    Membership.objects.filter(room=room, user=carol).delete()
    listed = api(alice).get(f"/api/actions/{action.pk}").json()
    assert listed["approvals"] == []
    after = approve(dave, action)
    assert after["status"] == "pending"
    assert names(after["approvals"]) == ["dave"]


# One answer: the serializer's `eligible` is what the service accepts ----------------


@pytest.fixture
def people(room: Room, alice: User, bob: User, mallory: User) -> dict[str, User]:
    decide = Permission.objects.get(codename="decide_action")
    carol = _approver(room, "carol")
    sam = _user("sam")  # holds chat.decide_action, in no room
    sam.user_permissions.add(decide)
    mo = _user("mo")  # a member holding chat.decide_action
    Membership.objects.create(room=room, user=mo, role=Membership.Role.MEMBER)
    mo.user_permissions.add(decide)
    ivy = _approver(room, "ivy")
    User.objects.filter(pk=ivy.pk).update(is_active=False)
    root = User.objects.create_superuser("root", "root@example.com", "x")
    everyone = [alice, bob, carol, mallory, sam, mo, ivy, root]
    for user in everyone:
        User.objects.filter(pk=user.pk).update(email=f"{user.username}@example.com")
    return {u.username: User.objects.get(pk=u.pk) for u in everyone}


class _Rollback(Exception):
    pass


def accepts(action: Action, user: User) -> bool:
    """Whether the service takes `user`'s approval; nothing of it is kept."""
    try:
        with transaction.atomic():
            services.action_decide(
                action_id=str(action.pk), user=user, decision="approve"
            )
            raise _Rollback
    except _Rollback:
        return True
    except (Forbidden, NotFound):
        return False


SHAPES = {
    "the room's approvers": {},
    "named approvers": {"approvers": ["bob", "carol", "mallory", "sam", "ivy"]},
    "four eyes": {"requester_may_approve": False},
    "named, four eyes": {
        "approvers": ["alice", "bob", "mo", "root"],
        "requester_may_approve": False,
    },
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("requester", ["alice", "bob", "mo"])
def test_eligible_is_exactly_who_the_service_accepts(
    room, people, shape, requester
) -> None:
    action = pending_action(room, people[requester])
    Action.objects.filter(pk=action.pk).update(approvals_required=2, **SHAPES[shape])
    action = Action.objects.select_related("room").get(pk=action.pk)
    listed = set(ActionSerializer(action).data["eligible"])
    accepted = {name for name, user in people.items() if accepts(action, user)}
    assert listed == accepted
    # The inbox, the admin's and the decision page's check say the same.
    for name, user in people.items():
        inbox = services.action_list(
            user=user, status=None, room_slug=None, limit=50, awaiting_me=True
        )
        assert (action in inbox) == (name in accepted), name
        may = may_vote(action=action, requester_id=people[requester].pk, user=user)
        assert may == (name in accepted), name


def test_a_new_pending_action_mails_exactly_its_eligible_voters(room, people) -> None:
    action = pending_action(room, people["bob"])
    with transaction.atomic():
        action = Action.objects.select_related("room").get(pk=action.pk)
        services.action_notify(action, services.action_emit(action))
    payload = last_action_event(action)
    mailed = set(
        Delivery.objects.filter(channel=Delivery.Channel.EMAIL).values_list(
            "to", flat=True
        )
    )
    assert mailed == {f"{name}@example.com" for name in payload["eligible"]}
    # The room's approvers and the deciders, active ones only.
    assert set(payload["eligible"]) == {"alice", "carol", "sam", "mo", "root"}
