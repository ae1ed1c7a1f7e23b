"""A schedule with real processes: two beats send the sweep, a worker runs their
sweeps at once (two threads, a database connection each), and each slot is posted
once, within seconds of its time."""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from chat import services
from chat.models import Request, Schedule
from tests.plugins.stack import reached, wait_for

pytestmark = pytest.mark.e2e


# Slots are whole minutes: up to a minute's wait for the first one, on top of the
# processes' start.
@pytest.mark.timeout(300)
def test_two_beats_post_each_slot_once(stack, room, alice):
    stack.worker(concurrency=2)
    beats = [stack.beat(), stack.beat()]
    for beat in beats:
        wait_for(
            lambda beat=beat: "Sending due task" in beat.output(),
            timeout=30,
            what="each beat to send a sweep",
        )
    schedule = services.schedule_create(
        room_slug=room.slug,
        user=alice,
        data={"cron": "* * * * *", "prompt": "Tick {{ $slot }}", "name": "tick"},
    )
    slot = schedule.next_run
    assert slot is not None and slot - datetime.now(UTC) <= timedelta(minutes=1)

    def requests() -> list[Request]:
        return list(Request.objects.filter(trigger__id=schedule.pk))

    wait_for(lambda: requests(), timeout=90, what="the slot's request")
    # Several more sweeps of each beat (AGENT_SWEEP_SECONDS=1 here).
    time.sleep(5)
    slots = Counter(r.trigger["slot"] for r in requests())
    assert slots[_iso(slot)] == 1 and set(slots.values()) == {1}, slots
    [request] = [r for r in requests() if r.trigger["slot"] == _iso(slot)]
    assert request.created - slot < timedelta(seconds=10), (request.created, slot)
    assert request.user == room.bot
    reached(request, Request.Status.COMPLETED, timeout=60)
    schedule.refresh_from_db()
    assert schedule.last_run == slot and schedule.last_request_id == request.pk
    assert schedule.skipped == 0
    assert Schedule.objects.get(pk=schedule.pk).next_run > slot


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_after_a_restart_a_slot_inside_the_catch_up_window_runs_once_outside_skips(
    stack, room, alice
):
    """The system was down while two hourly slots passed (as a restart finds them):
    the one 2 minutes ago, inside SCHEDULE_CATCH_UP (300 s), is posted once when beat
    and a worker come back; the one 10 minutes ago is skipped and counted, and each
    schedule moves on to its next hour."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    recent, old = now - timedelta(minutes=2), now - timedelta(minutes=10)

    def hourly_due(slot: datetime, name: str) -> Schedule:
        made = services.schedule_create(
            room_slug=room.slug,
            user=alice,
            data={"cron": f"{slot.minute} * * * *", "prompt": "Hourly", "name": name},
        )
        # What the schedule held when the processes stopped: this slot next.
        Schedule.objects.filter(pk=made.pk).update(next_run=slot)
        return made

    inside, outside = hourly_due(recent, "inside"), hourly_due(old, "outside")
    stack.worker()
    stack.beat()

    wait_for(
        lambda: Request.objects.filter(trigger__id=inside.pk).exists(),
        timeout=60,
        what="the slot inside the window to be posted",
    )
    [request] = Request.objects.filter(trigger__id=inside.pk)
    assert request.trigger["slot"] == _iso(recent) and request.user == room.bot
    reached(request, Request.Status.COMPLETED, timeout=60)
    wait_for(
        lambda: Schedule.objects.get(pk=outside.pk).skipped == 1,
        timeout=30,
        what="the slot outside the window to be skipped",
    )
    time.sleep(3)  # several more sweeps (AGENT_SWEEP_SECONDS=1 here)
    assert Request.objects.filter(trigger__id=inside.pk).count() == 1
    assert not Request.objects.filter(trigger__id=outside.pk).exists()
    inside.refresh_from_db()
    outside.refresh_from_db()
    assert (inside.last_run, inside.skipped) == (recent, 0)
    assert (outside.last_skipped, outside.last_run) == (old, None)
    assert inside.next_run == recent + timedelta(hours=1)
    assert outside.next_run == old + timedelta(hours=1)
