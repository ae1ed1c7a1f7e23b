"""The one lease, proved once for each kind of work that holds it: a turn's model
step, a tool call and an outbox delivery (`chat/services/leases.py`).

Each kind is driven through the services its worker calls (a delivery's renew and
release, which its sender never needs, through the lease functions themselves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from chat import services
from chat.models import Action, Delivery, Leased, Request, Room, User
from chat.services import leases
from tests.chat.test_api import pending_action


@dataclass
class Kind:
    """One kind of leased work, as its worker sees it."""

    row: Leased  # the row, to read back
    claim: Callable[[], Any]
    renew: Callable[[Any, datetime], bool]
    release: Callable[[Any], object]
    settle: Callable[[Any], object]
    open_status: str  # its status while it is worked on
    settled_status: str  # its status once its holder settled it

    def now(self) -> Leased:
        self.row.refresh_from_db()
        return self.row

    def status(self) -> str:
        row = self.now()
        assert isinstance(row, Request | Action | Delivery)
        return row.status

    def expire(self) -> None:
        """As if its holder died: the lease ran out a moment ago."""
        past = timezone.now() - timedelta(seconds=1)
        type(self.row)._default_manager.filter(pk=self.row.pk).update(lease_until=past)


def _step(room: Room, bob: User) -> Kind:
    turn = services.request_start(room=room, user=bob, text="What is ENG-3 about?")
    return Kind(
        row=turn,
        claim=lambda: services.step_claim(request_id=turn.pk, step=0),
        renew=lambda held, until: services.step_renew(request=held, until=until),
        release=lambda held: services.step_release(request=held),
        settle=lambda held: services.step_record(
            request=held, text="A login bug.", calls=[], previews={}, usage={}
        ),
        open_status=Request.Status.RUNNING,
        settled_status=Request.Status.COMPLETED,
    )


def _tool_call(room: Room, alice: User, bob: User) -> Kind:
    action = pending_action(room, bob)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    return Kind(
        row=action,
        claim=lambda: services.action_claim(action_id=action.pk),
        renew=lambda held, until: services.action_renew(action=held, until=until),
        release=lambda held: services.action_release(action=held),
        settle=lambda held: services.action_finish(
            action=held, status=Action.Status.SUCCEEDED, result={"ok": True}
        ),
        open_status=Action.Status.EXECUTING,
        settled_status=Action.Status.SUCCEEDED,
    )


def _delivery(room: Room) -> Kind:
    # An outbox row as `notify` writes it in the transaction of a change.
    delivery = Delivery.objects.create(
        key="action.pending:test",
        channel=Delivery.Channel.WEBHOOK,
        event="action.pending",
        room=room,
        body="{}",
        next_attempt_at=timezone.now(),
    )
    return Kind(
        row=delivery,
        claim=lambda: services.delivery_claim(delivery_id=str(delivery.pk)),
        renew=lambda held, until: leases.lease_renew(held=held, until=until),
        release=lambda held: leases.lease_release(held=held),
        settle=lambda held: services.delivery_record(delivery=held, error=None),
        open_status=Delivery.Status.PENDING,
        settled_status=Delivery.Status.SENT,
    )


@pytest.fixture(params=["model step", "tool call", "delivery"])
def kind(request: pytest.FixtureRequest, room: Room, alice: User, bob: User) -> Kind:
    if request.param == "model step":
        return _step(room, bob)
    if request.param == "tool call":
        return _tool_call(room, alice, bob)
    return _delivery(room)


def _later() -> datetime:
    return timezone.now() + timedelta(minutes=5)


def test_a_live_lease_refuses_a_second_claim(kind: Kind) -> None:
    held = kind.claim()
    assert held is not None and held.attempts == 1
    assert leases.lease_live(held)
    # The same task delivered twice, while the first worker still works.
    assert kind.claim() is None
    row = kind.now()
    assert (row.attempts, row.lease_token) == (1, held.lease_token)


def test_an_expired_lease_is_taken_over_and_its_stale_holder_writes_nothing(
    kind: Kind,
) -> None:
    stale = kind.claim()
    kind.expire()
    taker = kind.claim()
    assert taker is not None
    assert taker.attempts == 2 and taker.lease_token != stale.lease_token
    lease = (taker.lease_token, taker.lease_until)

    assert kind.renew(stale, _later()) is False
    kind.release(stale)
    kind.settle(stale)

    row = kind.now()
    assert (row.lease_token, row.lease_until) == lease
    assert kind.status() == kind.open_status
    # The one who holds it now settles it, and the lease ends with it.
    kind.settle(taker)
    assert kind.status() == kind.settled_status
    row = kind.now()
    assert (row.lease_token, row.lease_until) == ("", None)


def test_the_holder_renews_its_lease(kind: Kind) -> None:
    held = kind.claim()
    later = _later()
    assert kind.renew(held, later) is True
    assert kind.now().lease_until == later


def test_a_released_lease_lets_the_next_claim_in_at_once(kind: Kind) -> None:
    held = kind.claim()
    kind.release(held)  # after a transient failure (a rate limit, a timeout)
    assert not leases.lease_live(kind.now())
    retry = kind.claim()
    assert retry is not None and retry.attempts == 2


def test_a_settled_lease_is_never_claimed_again(kind: Kind) -> None:
    held = kind.claim()
    kind.settle(held)
    kind.expire()
    assert kind.claim() is None
    assert kind.status() == kind.settled_status
