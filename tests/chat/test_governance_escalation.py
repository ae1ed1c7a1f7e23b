"""Escalation (PROTOCOL.md, "Governance"): rule fields, copied onto the action; the
sweep escalates a pending action once (across sweeps, crashes and two at once), and
its escalate_to users may then vote, are mailed and webhooks hear of it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from chat import services
from chat.models import Action, Delivery, Membership, Room, RoomEvent, User, Webhook
from tests.chat.test_api import api, refusal
from tests.chat.test_policies import approve, propose, rule
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


@pytest.fixture
def dave(room: Room) -> User:
    """A plain member with an address: the one rules escalate to."""
    user = _user("dave")
    user.email = "dave@example.com"
    user.save(update_fields=["email"])
    Membership.objects.create(room=room, user=user, role=Membership.Role.MEMBER)
    return user


def policies(user: User, room: Room, **body):
    return api(user).post(f"/api/rooms/{room.slug}/policies", body, format="json")


def due(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(
        escalates_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"escalate_after": 60},
        {"escalate_to": ["alice"]},
        {"escalate_after": 60, "escalate_to": ["alice"], "mode": "auto"},
        {"escalate_after": 60, "escalate_to": ["alice"], "mode": "never"},
        {"escalate_after": 0, "escalate_to": ["alice"]},
        {"escalate_after": 2592001, "escalate_to": ["alice"]},
        {"escalate_after": True, "escalate_to": ["alice"]},
        {"escalate_after": 60, "escalate_to": ["nobody"]},
        {"escalate_after": 60, "escalate_to": "alice"},
        {"escalate_after": 60, "escalate_to": [f"u{i}" for i in range(21)]},
    ],
)
def test_a_bad_escalation_gets_400(room, alice, body) -> None:
    for i in range(21):
        _user(f"u{i}")
    refusal(policies(alice, room, tool="delete_issue", **body), 400)


def test_escalation_is_copied_onto_the_action(room, alice, bob, dave) -> None:
    created = policies(
        alice, room, tool="delete_issue", escalate_after=90, escalate_to=["dave"]
    )
    assert created.status_code == 201, created.content
    assert created.json()["escalate_after"] == 90
    assert created.json()["escalate_to"] == ["dave"]
    patched = api(alice).patch(
        f"/api/rooms/{room.slug}/policies/{created.json()['id']}",
        {"escalate_after": None},
        format="json",
    )
    refusal(patched, 400)  # one without the other
    action = propose(room, bob)
    assert action.escalates_at == action.created + timedelta(seconds=90)
    shown = api(alice).get(f"/api/actions/{action.pk}").json()
    assert shown["escalate_to"] == ["dave"]
    assert shown["escalates_at"] is not None and shown["escalated_at"] is None
    assert "dave" not in shown["eligible"]


def test_the_sweep_escalates_once_and_the_escalated_may_vote(
    room, alice, bob, dave, settings
) -> None:
    Webhook.objects.create(room=room, url="https://93.184.215.14/hook")
    rule(room, tool="delete_issue", escalate_after=60, escalate_to=["dave", "mallory"])
    _user("mallory")  # exists, not in the room: not escalated to
    action = propose(room, bob)
    refusal(approve(dave, action), 403)
    assert services.sweep()["escalated"] == 0
    due(action)
    seq = room.events.count()
    assert services.sweep()["escalated"] == 1
    assert services.sweep()["escalated"] == 0
    action.refresh_from_db()
    assert action.escalated_at is not None
    [event] = RoomEvent.objects.filter(room=room).order_by("seq")[seq:]
    assert event.type == "action" and event.payload["escalated_at"] is not None
    assert "dave" in event.payload["eligible"]
    [hook] = Delivery.objects.filter(event="action.escalated", channel="webhook")
    body = json.loads(hook.body)
    assert body["type"] == "action.escalated" and body["escalated_to"] == ["dave"]
    assert body["action"]["id"] == str(action.pk) and body["decide_url"]
    assert body["room"] == {"slug": room.slug, "name": room.name}
    [mail] = Delivery.objects.filter(event="action.escalated", channel="email")
    assert mail.to == "dave@example.com" and mail.subject.startswith("Escalated:")
    assert room.name in mail.body and "delete_issue" in mail.body
    assert "/decide/" in mail.body
    inbox = api(dave).get("/api/actions?awaiting=me").json()
    assert [a["id"] for a in inbox] == [str(action.pk)]
    assert approve(dave, action).json()["status"] == "approved"


def test_an_action_no_longer_pending_never_escalates(room, alice, bob, dave) -> None:
    rule(room, tool="delete_issue", escalate_after=60, escalate_to=["dave"])
    action = propose(room, bob)
    assert approve(alice, action).status_code == 200
    due(action)
    assert services.action_escalate_due() == 0
    action.refresh_from_db()
    assert action.escalated_at is None


def test_four_eyes_still_holds_for_an_escalated_requester(room, alice, bob) -> None:
    rule(
        room,
        tool="delete_issue",
        escalate_after=60,
        escalate_to=["bob"],
        requester_may_approve=False,
    )
    action = propose(room, bob)
    due(action)
    assert services.action_escalate_due() == 1
    refusal(approve(bob, action), 403)


def test_an_edit_does_not_undo_an_escalation(room, alice, bob, dave) -> None:
    rule(room, tool="update_issue", escalate_after=60, escalate_to=["dave"])
    action = propose(room, bob, "update_issue", id="ENG-3", title="Old")
    due(action)
    assert services.action_escalate_due() == 1
    edited = approve(dave, action, arguments={"id": "ENG-3", "title": "New"})
    assert edited.status_code == 200, edited.content
    action.refresh_from_db()
    assert action.escalated_at is not None and action.escalate_to == ["dave"]


def test_a_crash_before_the_commit_leaves_the_escalation_to_the_next_sweep(
    room, alice, bob, dave
) -> None:
    rule(room, tool="delete_issue", escalate_after=60, escalate_to=["dave"])
    action = propose(room, bob)
    due(action)

    class Crash(Exception):
        pass

    with pytest.raises(Crash), transaction.atomic():
        assert services.action_escalate(action_id=action.pk)
        raise Crash  # the process dies before its commit
    action.refresh_from_db()
    assert action.escalated_at is None
    assert not Delivery.objects.filter(event="action.escalated").exists()
    assert services.action_escalate_due() == 1
    assert services.action_escalate_due() == 0
    assert Delivery.objects.filter(event="action.escalated").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_escalate_once(room, alice, bob, dave) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    rule(room, tool="delete_issue", escalate_after=60, escalate_to=["dave"])
    actions = [propose(room, bob) for _ in range(3)]
    for action in actions:
        due(action)

    def sweep(_: int) -> int:
        try:
            return services.action_escalate_due()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert sum(pool.map(sweep, range(2))) == 3
    events = RoomEvent.objects.filter(room=room, type="action")
    assert len([e for e in events if e.payload["escalated_at"]]) == 3
    assert Delivery.objects.filter(event="action.escalated").count() == 3
