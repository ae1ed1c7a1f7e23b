"""Cron expressions and time zones of schedules (contract: "Schedules"): what is
accepted, and the slots they make, DST changes included."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice

import pytest

from chat.cron import cron_clean, slot_after, slot_due, slots, timezone_clean
from chat.errors import Invalid

ACCEPTED = [
    ("* * * * *", "* * * * *"),
    ("  */15   9-17 * * mon-fri ", "*/15 9-17 * * mon-fri"),
    ("0 0 1,15 * *", "0 0 1,15 * *"),
    ("0 12 * jan-mar SUN", "0 12 * jan-mar SUN"),
    ("0 0 * * 7", "0 0 * * 7"),
    ("0 0 * * 0", "0 0 * * 0"),
    ("5 4 * * sun", "5 4 * * sun"),
    ("0 22 * * 1-5", "0 22 * * 1-5"),
    ("23 0-20/2 * * *", "23 0-20/2 * * *"),
    ("0 0 29 2 *", "0 0 29 2 *"),
    ("59 23 31 12 6", "59 23 31 12 6"),
    ("0 0 * jul wed", "0 0 * jul wed"),
]

REFUSED = [
    ("", "five fields"),
    ("* * * *", "five fields"),
    ("0 * * * * *", "five fields"),  # six: cronsim would read seconds first
    ("0 0 * * * * 2030", "five fields"),
    ("@hourly", "@-names"),
    ("@reboot", "@-names"),
    ("60 * * * *", "bad minute"),
    ("* 24 * * *", "bad hour"),
    ("* * 0 * *", "bad day-of-month"),
    ("* * 32 * *", "bad day-of-month"),
    ("* * * 13 *", "bad month"),
    ("* * * * 8", "bad day-of-week"),
    ("*/0 * * * *", "bad minute"),
    ("5-1 * * * *", "bad minute"),
    ("0 0 L * *", "extensions"),
    ("0 0 LW * *", "extensions"),
    ("0 0 * * 5L", "extensions"),
    ("0 0 * * mon#2", "extensions"),
    ("0 0 15W * *", "extensions"),
    ("0 0 ? * *", "extensions"),
    ("0 0 * * ſun", "is not valid"),  # "ſun".upper() == "SUN"
    ("0 0 31 2 *", "bad day-of-month"),  # never
    ("0 0 30 2 *", "bad day-of-month"),
    ("a b c d e", "bad minute"),
    (5, "text"),
    (None, "text"),
    ("* " * 150, "at most"),
]


@pytest.mark.parametrize(("given", "stored"), ACCEPTED)
def test_debian_cron_expressions_are_accepted(given: str, stored: str) -> None:
    assert cron_clean(given) == stored


@pytest.mark.parametrize(("given", "reason"), REFUSED)
def test_other_expressions_are_refused(given: object, reason: str) -> None:
    with pytest.raises(Invalid) as refused:
        cron_clean(given)
    assert reason in refused.value.detail.lower()


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/New_York"])
def test_iana_time_zones_are_accepted(name: str) -> None:
    assert timezone_clean(name) == name


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "CEST", 3, None]
)
def test_unknown_time_zones_are_refused(name: object) -> None:
    with pytest.raises(Invalid):
        timezone_clean(name)


def _iso(cron: str, tz: str, after: datetime, n: int = 4) -> list[str]:
    return [s.isoformat() for s in islice(slots(cron, tz, after), n)]


def test_both_day_fields_restricted_either_matches() -> None:
    # The 13th, or any Friday (Debian's cron), from Thursday 2026-11-12.
    start = datetime(2026, 11, 12, 1, tzinfo=UTC)
    assert _iso("0 0 13 * 5", "UTC", start) == [
        "2026-11-13T00:00:00+00:00",  # a Friday the 13th: once
        "2026-11-20T00:00:00+00:00",
        "2026-11-27T00:00:00+00:00",
        "2026-12-04T00:00:00+00:00",
    ]
    # One field a star: only the other one counts.
    assert _iso("0 0 13 * *", "UTC", start, 2) == [
        "2026-11-13T00:00:00+00:00",
        "2026-12-13T00:00:00+00:00",
    ]


def test_slots_are_wall_times_in_the_schedule_time_zone() -> None:
    start = datetime(2026, 7, 1, tzinfo=UTC)
    assert slot_after("0 9 * * *", "Europe/Berlin", start) == datetime(
        2026, 7, 1, 7, tzinfo=UTC
    )
    assert slot_after("0 9 * * *", "America/New_York", start) == datetime(
        2026, 7, 1, 13, tzinfo=UTC
    )


# Europe/Berlin: 2026-03-29 02:00 -> 03:00 (skipped), 2026-10-25 03:00 -> 02:00
# (02:00-03:00 twice). America/New_York: 2026-03-08 02:00 -> 03:00, 2026-11-01
# 02:00 -> 01:00 (01:00-02:00 twice).
DST = [
    # A slot in a skipped hour runs right after the change.
    (
        "30 2 * * *",
        "Europe/Berlin",
        datetime(2026, 3, 28, 12, tzinfo=UTC),
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    (
        "30 2 * * *",
        "America/New_York",
        datetime(2026, 3, 7, 12, tzinfo=UTC),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    # One in a repeated hour runs once, at its first occurrence.
    (
        "30 2 * * *",
        "Europe/Berlin",
        datetime(2026, 10, 24, 12, tzinfo=UTC),
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    ),
    (
        "30 1 * * *",
        "America/New_York",
        datetime(2026, 10, 31, 12, tzinfo=UTC),
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    ),
    # An hourly slot too: 02:30 once on the day the hour repeats...
    (
        "30 * * * *",
        "Europe/Berlin",
        datetime(2026, 10, 24, 22, 45, tzinfo=UTC),
        [
            "2026-10-25T01:30:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T03:30:00+01:00",
        ],
    ),
    # ...and none on the day it is skipped: Debian's cron runs a job whose hour is
    # `*` by the clock, and 02:30 never shows on it.
    (
        "30 * * * *",
        "America/New_York",
        datetime(2026, 3, 8, 5, 45, tzinfo=UTC),
        [
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:30:00-04:00",
            "2026-03-08T04:30:00-04:00",
        ],
    ),
]


@pytest.mark.parametrize(("cron", "tz", "after", "expected"), DST)
def test_dst_changes(cron: str, tz: str, after: datetime, expected: list[str]) -> None:
    assert _iso(cron, tz, after, len(expected)) == expected


def test_from_inside_the_repeated_hour_the_next_slot_is_not_in_the_past() -> None:
    # 01:20 EST, the second pass of New York's 01:00 hour: 01:30 EDT has passed.
    now = datetime(2026, 11, 1, 6, 20, tzinfo=UTC)
    assert slot_after("30 1 * * *", "America/New_York", now) == datetime(
        2026, 11, 2, 6, 30, tzinfo=UTC
    )


def test_slot_due_counts_the_passed_slots() -> None:
    first = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 10, 4, 30, tzinfo=UTC)
    latest, earlier, before, upcoming = slot_due("* * * * *", "UTC", first, now)
    assert latest == datetime(2026, 1, 1, 10, 4, tzinfo=UTC)
    assert earlier == 4
    assert before == datetime(2026, 1, 1, 10, 3, tzinfo=UTC)
    assert upcoming == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    # Only the due one.
    assert slot_due("* * * * *", "UTC", first, first) == (
        first,
        0,
        None,
        datetime(2026, 1, 1, 10, 1, tzinfo=UTC),
    )


def test_slot_due_past_its_limit_still_finds_the_latest() -> None:
    first = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime(2026, 1, 1, 2, 30, 10, tzinfo=UTC)
    latest, earlier, before, upcoming = slot_due(
        "* * * * *", "UTC", first, now, limit=10
    )
    assert latest == datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    assert before == datetime(2026, 1, 1, 2, 29, tzinfo=UTC)
    assert earlier == 10
    assert upcoming == datetime(2026, 1, 1, 2, 31, tzinfo=UTC)
