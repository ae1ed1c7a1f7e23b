"""The chaos run's checker catches planted bugs (issue 27).

Each test makes a real state in the database through the services, plants one bug
the way a broken build would leave it (a tool run on one vote of a quorum of two, a
decision committed without its request being advanced, an effect sent twice, a lost
event, a delivery id that posted two requests, an expiry without its audit record, a
grant that matched after it expired), and checks that the checker names that
invariant first; and that the same state without the bug passes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from bench.chaos.check import Gathered, check
from bench.chaos.gather import from_database
from chat import services
from chat.models import (
    Action,
    AuditRecord,
    Membership,
    PolicyRule,
    Request,
    Room,
    RoomEvent,
    User,
)
from chat.services.audit import audit_write
from tests.chat.test_policies import approve, propose, rule
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(room: Room) -> User:
    user = _user("carol")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


def _update(room: Room, bob: User, tag: str) -> Action:
    rule(room, tool="update_issue", approvals_required=2)
    return propose(room, bob, "update_issue", id="ENG-3", title=tag)


def _effect(tag: str) -> dict:
    return {
        "pack": "linear",
        "op": "issueUpdate",
        "target": "ENG-3",
        "text": {"title": tag},
    }


def _first(data: Gathered) -> tuple[str, str] | None:
    return check(data).first


def test_a_tool_run_on_one_vote_of_a_quorum_of_two_is_caught(
    room: Room, alice: User, bob: User
) -> None:
    action = _update(room, bob, "cx7-1")
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    assert Action.objects.get(pk=action.pk).status == Action.Status.PENDING
    # The planted bug: the tool was claimed and run on this one vote.
    Action.objects.filter(pk=action.pk).update(status=Action.Status.SUCCEEDED)
    data = from_database()
    data.effects = [_effect("cx7-1")]

    invariant, detail = _first(data) or ("", "")
    assert invariant == "effect_only_when_allowed"
    assert "1 eligible approval(s)" in detail and "2 required" in detail


def test_the_same_run_after_two_votes_passes(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    action = _update(room, bob, "cx7-1")
    for voter in (alice, carol):
        services.action_decide(action_id=str(action.pk), user=voter, decision="approve")
    Action.objects.filter(pk=action.pk).update(status=Action.Status.SUCCEEDED)
    data = from_database()
    data.effects = [_effect("cx7-1")]
    # The request waits for its next step (no worker here): only that is flagged.
    assert [v[0] for v in check(data).violations] == ["request_not_stranded"]


def test_an_effect_sent_twice_is_caught(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    action = _update(room, bob, "cx7-2")
    for voter in (alice, carol):
        services.action_decide(action_id=str(action.pk), user=voter, decision="approve")
    Action.objects.filter(pk=action.pk).update(status=Action.Status.SUCCEEDED)
    data = from_database()
    data.effects = [_effect("cx7-2"), _effect("cx7-2")]
    invariant, detail = _first(data) or ("", "")
    assert invariant == "effect_at_most_once"
    assert str(action.pk) in detail


def test_an_effect_of_a_denied_or_retracted_action_is_caught(
    room: Room, alice: User, bob: User
) -> None:
    action = _update(room, bob, "cx7-3")
    services.action_decide(action_id=str(action.pk), user=alice, decision="deny")
    data = from_database()
    data.effects = [_effect("cx7-3")]
    invariant, detail = _first(data) or ("", "")
    assert (invariant, "the action is denied" in detail) == (
        "effect_only_when_allowed",
        True,
    )


def test_a_request_advanced_outside_its_decisions_transaction_is_caught(
    room: Room,
    alice: User,
    bob: User,
    settings,
    django_capture_on_commit_callbacks: Callable,
) -> None:
    """The planted bug: the denial commits, its request is left to be advanced
    later (by a process that then dies). The checker flags the stranded request;
    the sweep (the fix on main) moves it on, and the checker then passes."""
    action = propose(room, bob)
    with transaction.atomic():
        Action.objects.filter(pk=action.pk).update(
            status=Action.Status.DENIED, decided_by=alice, decided_via="api"
        )
        audit_write(room=room, kind="denied", actor=alice, via="api", action=action)
    invariant, detail = _first(from_database()) or ("", "")
    assert invariant == "request_not_stranded"
    assert "awaiting_approval with 0 action(s) pending" in detail

    ago = timezone.now() - timedelta(seconds=settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    Action.objects.filter(pk=action.pk).update(updated=ago)
    Request.objects.filter(pk=action.request_id).update(updated=ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sweep()["advanced"] == 1
    # Advanced: its next step is queued; once the step ends the request (as a
    # worker would), nothing is stranded.
    Request.objects.filter(pk=action.request_id).update(status="completed")
    assert _first(from_database()) is None


def test_a_lost_event_and_a_watcher_that_saw_events_out_of_order_are_caught(
    room: Room, bob: User
) -> None:
    propose(room, bob)
    Request.objects.update(status="cancelled")
    Action.objects.update(status="cancelled")
    data = from_database()
    assert _first(data) is None
    last = data.last_seq[room.slug]
    assert last >= 2
    watcher = {
        "name": "w",
        "room": room.slug,
        "snapshot_seq": 0,
        "seqs": list(range(1, last + 1)),
        "streamed": {},
        "final": {},
        "stayed": True,
    }
    data.watchers = [watcher]
    assert _first(data) is None
    data.watchers = [{**watcher, "seqs": [2, 1, *range(3, last + 1)]}]
    assert (_first(data) or ("",))[0] == "watcher_saw_events_in_order"
    data.watchers = [{**watcher, "seqs": list(range(1, last))}]  # missed the last
    assert (_first(data) or ("",))[0] == "watcher_saw_events_in_order"

    RoomEvent.objects.filter(room=room, seq=1).delete()
    assert (_first(from_database()) or ("",))[0] == "room_events_gap_free"


def test_a_message_that_differs_from_its_deltas_is_caught() -> None:
    watcher = {
        "name": "w",
        "room": "r",
        "snapshot_seq": 0,
        "seqs": [],
        "stayed": False,
        "streamed": {"m1": {"text": "1 2 3 ", "from_start": True}},
        "final": {"m1": "1 2 3 "},
    }
    assert _first(Gathered(watchers=[watcher])) is None
    watcher["final"] = {"m1": "1 2 3 4 "}
    assert (_first(Gathered(watchers=[watcher])) or ("",))[0] == (
        "message_equals_deltas"
    )


def test_a_delivery_never_received_or_under_two_ids_is_caught() -> None:
    sent = {"id": "d1", "status": "sent", "event": "action.pending", "body": "{}"}
    hit = {"id": "d1", "body": "{}"}
    assert _first(Gathered(deliveries=[sent], received=[hit, hit])) is None
    assert (_first(Gathered(deliveries=[sent])) or ("",))[0] == (
        "delivery_sent_once_with_one_id"
    )
    twice = [hit, {"id": "d2", "body": "{}"}]
    assert (_first(Gathered(deliveries=[sent], received=twice)) or ("",))[0] == (
        "delivery_sent_once_with_one_id"
    )


def _ended(*requests: Request) -> None:
    # As a worker would have left them (no worker here).
    Request.objects.filter(pk__in=[r.pk for r in requests]).update(status="completed")


def test_a_delivery_id_that_posted_two_requests_is_caught(room: Room) -> None:
    """The planted bug: the delivery id is not claimed, so a duplicate sent at once
    posts a second request."""
    delivery = {"kind": "webhook", "id": "t1", "source": "github", "event": "issues"}
    first = services.request_start_triggered(
        room=room, text="count to 3", trigger={**delivery, "delivery": "d-1"}
    )
    other = services.request_start_triggered(
        room=room, text="count to 3", trigger={**delivery, "delivery": "d-2"}
    )
    _ended(first, other)
    answered = {
        "trigger": "t1",
        "delivery": "d-1",
        "status": 202,
        "body": {"request": str(first.pk)},
    }
    duplicate = {**answered, "status": 200, "body": {"duplicate": True, **answered}}
    data = from_database()
    data.hooks = [answered, duplicate]
    assert _first(data) is None

    again = services.request_start_triggered(
        room=room, text="count to 3", trigger={**delivery, "delivery": "d-1"}
    )
    _ended(again)
    data = from_database()
    data.hooks = [answered]
    invariant, detail = _first(data) or ("", "")
    assert invariant == "trigger_delivery_posts_at_most_once"
    assert "delivery d-1 posted 2 requests" in detail


def test_a_delivery_answered_202_whose_request_is_missing_is_caught(
    room: Room,
) -> None:
    hook = {"trigger": "t1", "delivery": "d-9", "status": 202, "body": {"request": "r"}}
    invariant, detail = _first(Gathered(hooks=[hook])) or ("", "")
    assert invariant == "trigger_delivery_posts_at_most_once"
    assert "answered 202 with request r, but posted []" in detail


def test_a_schedule_slot_posted_twice_is_caught(room: Room) -> None:
    slot = {"kind": "schedule", "id": "s1", "slot": "2026-12-07T20:41:00Z"}
    posted = [services.request_start_triggered(room=room, text="report", trigger=slot)]
    _ended(*posted)
    assert _first(from_database()) is None
    # The planted bug: the slot's claim (next_run's conditional UPDATE) is lost.
    posted.append(
        services.request_start_triggered(room=room, text="report", trigger=slot)
    )
    _ended(*posted)
    invariant, detail = _first(from_database()) or ("", "")
    assert invariant == "schedule_slot_posts_at_most_once"
    assert "slot 2026-12-07T20:41:00Z posted 2 requests" in detail


def test_an_expiry_without_its_audit_record_is_caught(room: Room, bob: User) -> None:
    expired = propose(room, bob)
    Action.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.action_expire_overdue() == 1
    _ended(Request.objects.get(pk=expired.request_id))
    assert _first(from_database()) is None
    # The planted bug: an expiry committed without its record.
    other = propose(room, bob, id="ENG-4")
    Action.objects.filter(pk=other.pk).update(status=Action.Status.EXPIRED)
    _ended(Request.objects.get(pk=other.request_id))
    invariant, detail = _first(from_database()) or ("", "")
    assert invariant == "audit_matches_action"
    assert str(other.pk) in detail and "0 expired record(s), 1 expected" in detail


def test_a_vote_without_its_record_or_a_gap_in_the_audit_is_caught(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    action = _update(room, bob, "cx7-4")
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    assert _first(from_database()) is None
    # The planted bugs: the vote's record lost (a gap in the room's audit)...
    AuditRecord.objects.filter(action_ref=action.pk, kind="vote").delete()
    report = check(from_database())
    assert {name for name, _ in report.violations} == {
        "audit_seq_gap_free",
        "audit_matches_action",
    }
    assert (
        "alice's approve vote has no vote record"
        in dict((name, detail) for name, detail in report.violations)[
            "audit_matches_action"
        ]
    )


def test_a_grant_that_matched_after_it_expired_is_caught(
    room: Room, alice: User, bob: User
) -> None:
    action = propose(room, bob)
    assert approve(alice, action, grant={"seconds": 600}).status_code == 200
    granted = propose(room, bob)
    assert granted.status == Action.Status.EXECUTING
    Action.objects.filter(request=granted.request_id).update(
        status=Action.Status.SUCCEEDED
    )
    _ended(*Request.objects.all())
    assert _first(from_database()) is None
    assert check(from_database()).checked["grant_matches_only_until_expiry"] == 1
    # The planted bug: the grant kept matching past its end.
    PolicyRule.objects.filter(source_action=action).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    invariant, detail = _first(from_database()) or ("", "")
    assert invariant == "grant_matches_only_until_expiry"
    assert str(granted.pk) in detail
