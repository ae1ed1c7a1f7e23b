"""Schedules firing from the sweep (contract: "Schedules"): one request per slot,
posted by the room's bot, claimed once however many sweeps run; catch-up after an
outage; disabled ones neither run nor skip."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction

from chat import services
from chat.models import Message, Request, Room, Schedule, User
from tests.chat.test_api import api, forget_throttle_counts  # noqa: F401  (autouse)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def schedule_at(
    room: Room, user: User, *, cron: str, due: datetime, **data: object
) -> Schedule:
    """A schedule made over the service, its next slot then set to `due`: as if it
    had been created before `due` and the sweep had not run since."""
    made = services.schedule_create(
        room_slug=room.slug,
        user=user,
        data={"cron": cron, "prompt": "Report for {{ $slot }} ({{ $schedule }})"}
        | data,
    )
    Schedule.objects.filter(pk=made.pk).update(next_run=due)
    return Schedule.objects.get(pk=made.pk)


def posted(schedule: Schedule) -> list[Request]:
    return list(Request.objects.filter(trigger__id=schedule.pk).order_by("created"))


@pytest.mark.django_db
def test_a_due_slot_is_posted_once_by_the_room_bot(room: Room, alice: User) -> None:
    schedule = schedule_at(
        room,
        alice,
        cron="0 10 * * *",
        due=T0,
        timezone="Europe/Berlin",
        name="Daily",
    )
    now = T0 + timedelta(seconds=2)
    assert services.schedules_fire(now) == {"posted": 1, "skipped": 0}
    [request] = posted(schedule)
    assert request.trigger == {
        "kind": "schedule",
        "id": schedule.pk,
        "slot": "2026-03-02T09:00:00Z",
    }
    assert request.user == room.bot and request.user != alice
    message = Message.objects.get(request=request, role=Message.Role.USER)
    # $slot in the schedule's offset, exactly the rendered prompt.
    assert message.content == "Report for 2026-03-02T10:00:00+01:00 (Daily)"
    assert message.author == room.bot
    shown = api(alice).get(f"/api/requests/{request.pk}").json()
    assert shown["trigger"] == request.trigger and shown["user"] == room.bot.username
    schedule.refresh_from_db()
    assert schedule.last_run == T0 and schedule.last_request == request
    assert schedule.next_run == T0 + timedelta(days=1)
    assert (schedule.skipped, schedule.last_skipped) == (0, None)
    # The same sweep again (a redelivered task), and one after a restart: nothing.
    assert services.schedules_fire(now) == {"posted": 0, "skipped": 0}
    assert services.schedules_fire(now + timedelta(seconds=30)) == {
        "posted": 0,
        "skipped": 0,
    }
    assert len(posted(schedule)) == 1


@pytest.mark.django_db
def test_the_sweep_posts_due_slots(room: Room, alice: User) -> None:
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    from django.utils import timezone

    Schedule.objects.filter(pk=schedule.pk).update(
        next_run=timezone.now().replace(microsecond=0, second=0)
    )
    assert services.sweep()["scheduled"] == 1
    assert len(posted(schedule)) == 1


@pytest.mark.django_db
def test_after_an_outage_only_the_latest_slot_runs_inside_the_window(
    room: Room,
    alice: User,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks,
) -> None:
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    now = T0 + timedelta(minutes=3, seconds=10)  # 09:00 to 09:03 passed
    with caplog.at_level(logging.WARNING, logger="chat.services.schedules"):
        # The log line is written once the claim commits.
        with django_capture_on_commit_callbacks(execute=True):
            result = services.schedules_fire(now)
    assert result == {"posted": 1, "skipped": 3}
    [request] = posted(schedule)
    assert request.trigger["slot"] == "2026-03-02T09:03:00Z"
    schedule.refresh_from_db()
    assert schedule.skipped == 3
    assert schedule.last_skipped == T0 + timedelta(minutes=2)
    assert schedule.last_run == T0 + timedelta(minutes=3)
    assert schedule.next_run == T0 + timedelta(minutes=4)
    assert any("skipped 3 slot(s)" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_a_slot_as_late_as_the_catch_up_window_is_skipped(
    room: Room, alice: User, settings
) -> None:
    settings.SCHEDULE_CATCH_UP = 300
    schedule = schedule_at(room, alice, cron="0 * * * *", due=T0)
    now = T0 + timedelta(hours=2, seconds=300)  # 11:00 is exactly 300 s late
    assert services.schedules_fire(now) == {"posted": 0, "skipped": 3}
    assert posted(schedule) == []
    schedule.refresh_from_db()
    assert (schedule.skipped, schedule.last_skipped) == (3, T0 + timedelta(hours=2))
    assert schedule.last_run is None and schedule.last_request is None
    assert schedule.next_run == T0 + timedelta(hours=3)
    # A second later the next slot runs as usual, and skipped stays.
    assert services.schedules_fire(T0 + timedelta(hours=3, seconds=1)) == {
        "posted": 1,
        "skipped": 0,
    }
    schedule.refresh_from_db()
    assert schedule.skipped == 3


@pytest.mark.django_db
def test_a_disabled_schedule_neither_runs_nor_skips(room: Room, alice: User) -> None:
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    services.schedule_update(
        room_slug=room.slug,
        user=alice,
        schedule_id=schedule.pk,
        data={"enabled": False},
    )
    assert services.schedules_fire(T0 + timedelta(days=3)) == {
        "posted": 0,
        "skipped": 0,
    }
    schedule.refresh_from_db()
    assert (schedule.next_run, schedule.skipped, schedule.last_skipped) == (
        None,
        0,
        None,
    )
    assert posted(schedule) == []


@pytest.mark.django_db
def test_the_admin_action_disables_the_selected(room: Room, alice: User) -> None:
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    assert services.schedules_disable(schedule_ids=[schedule.pk]) == 1
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.next_run) == (False, None)
    assert services.schedules_fire(T0 + timedelta(seconds=1))["posted"] == 0


@pytest.mark.django_db
def test_a_prompt_that_renders_blank_spends_the_slot(room: Room, alice: User) -> None:
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    Schedule.objects.filter(pk=schedule.pk).update(prompt="{{ $schedule }}")
    assert services.schedules_fire(T0)["posted"] == 0
    schedule.refresh_from_db()
    assert schedule.next_run == T0 + timedelta(minutes=1) and schedule.last_run is None


@pytest.mark.django_db
def test_deleted_schedule_posts_nothing(room: Room, alice: User) -> None:
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    services.schedule_delete(room_slug=room.slug, user=alice, schedule_id=schedule.pk)
    assert services.schedules_fire(T0)["posted"] == 0
    assert not Request.objects.filter(room=room).exists()


def _waiting_for_locks() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_post_a_slot_once(room: Room, alice: User) -> None:
    """Two beats' sweeps, each on a connection of its own, both read the due slot
    before either claims it (the row is held until both wait on it): one posts,
    the other's claim then matches no row."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    now = T0 + timedelta(seconds=1)
    started = threading.Barrier(3)

    def sweep(_: int) -> dict[str, int]:
        try:
            started.wait()
            return services.schedules_fire(now)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        with transaction.atomic():
            # Held here: both sweeps read the slot, then wait at their UPDATE.
            Schedule.objects.select_for_update().get(pk=schedule.pk)
            results = [pool.submit(sweep, n) for n in range(2)]
            started.wait()
            deadline = time.monotonic() + 10
            while _waiting_for_locks() < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _waiting_for_locks() >= 2
        outcomes = sorted(r.result(timeout=30)["posted"] for r in results)

    assert outcomes == [0, 1]
    assert len(posted(schedule)) == 1
    schedule.refresh_from_db()
    assert schedule.next_run == T0 + timedelta(minutes=1)
    # A restart: a new process sweeps again, and posts nothing for that slot.
    assert services.schedules_fire(now + timedelta(seconds=5))["posted"] == 0
    assert len(posted(schedule)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_delete_during_a_post_answers_after_it_and_nothing_follows(
    room: Room, alice: User
) -> None:
    """A sweep that claimed a slot holds the schedule's row until its request
    commits; a DELETE meanwhile waits for it, so what it answers is final."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    schedule = schedule_at(room, alice, cron="* * * * *", due=T0)
    now = T0 + timedelta(seconds=1)

    def sweep() -> dict[str, int]:
        try:
            return services.schedules_fire(now)
        finally:
            connection.close()

    def delete() -> int:
        try:
            services.schedule_delete(
                room_slug=room.slug, user=alice, schedule_id=schedule.pk
            )
            # What a client can see once the DELETE answered.
            return Request.objects.filter(trigger__id=schedule.pk).count()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        with transaction.atomic():
            # The room's row, held here: the sweep claims the slot, then waits to
            # post its request into the room.
            Room.objects.select_for_update().get(pk=room.pk)
            swept = pool.submit(sweep)
            deadline = time.monotonic() + 10
            while _waiting_for_locks() < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            deleted = pool.submit(delete)
            while _waiting_for_locks() < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _waiting_for_locks() >= 2
        assert swept.result(timeout=30)["posted"] == 1
        assert deleted.result(timeout=30) == 1

    assert not Schedule.objects.filter(pk=schedule.pk).exists()
    assert services.schedules_fire(now + timedelta(minutes=5))["posted"] == 0
    assert len(posted(schedule)) == 1
