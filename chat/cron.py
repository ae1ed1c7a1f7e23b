"""Cron expressions of schedules: five fields as Debian's cron reads them, stepped
in an IANA time zone (contract: "Schedules").

`cronsim` parses and steps them (Debian cron's DST behaviour for jobs at a fixed
time: a slot in a skipped hour comes right after the change, one in a repeated hour
once). It also reads six fields (seconds first) and the `L`, `LW` and `#` extensions,
which the contract refuses, so the fields are counted and those are refused first.
"""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from chat.errors import Invalid

MAX_CRON_CHARS = 200
# Fields hold digits, names (jan-dec, sun-sat), `*`, `-`, `/` and `,` only: cronsim
# upper-cases before it reads names, and "ſun".upper() is "SUN".
_FIELD = re.compile(r"[0-9A-Za-z*,/-]+")
FIELDS = ("minute", "hour", "day of month", "month", "day of week")
# Debian's cron gives up on nothing; cronsim stops looking 50 years ahead. A schedule
# whose next slot is further away than that (31 February) is refused.


def cron_clean(cron: object) -> str:
    """The expression with its fields joined by one space; `Invalid` names the fault."""
    if not isinstance(cron, str) or len(cron) > MAX_CRON_CHARS:
        raise Invalid(f"cron must be text of at most {MAX_CRON_CHARS} characters.")
    fields = cron.split()
    if cron.strip().startswith("@"):
        raise Invalid("cron: @-names (@hourly, @daily...) are not accepted.")
    if len(fields) != 5:
        raise Invalid(
            "cron must have five fields (minute, hour, day of month, month, "
            f"day of week), not {len(fields)}."
        )
    days, weekdays = fields[2].upper(), fields[4].upper()
    if "#" in cron or "?" in cron or "L" in days + weekdays or "W" in days:
        raise Invalid("cron: the L, W, # and ? extensions are not accepted.")
    for name, field in zip(FIELDS, fields, strict=True):
        if not _FIELD.fullmatch(field):
            raise Invalid(f"cron: the {name} field {field!r} is not valid.")
    expression = " ".join(fields)
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        raise Invalid(f"cron: {str(exc).lower()} field.") from None
    if slot_after(expression, "UTC", datetime.now(UTC)) is None:
        raise Invalid("cron: no slot matches it in the next 50 years.")
    return expression


def timezone_clean(name: object) -> str:
    """An IANA time zone name that zoneinfo knows."""
    if not isinstance(name, str) or not name or len(name) > 64:
        raise Invalid("timezone must be an IANA time zone name such as Europe/Berlin.")
    # zoneinfo also opens paths ("../..") and files that are not zones; only the
    # names it lists are accepted.
    if name not in _zones():
        raise Invalid(f"timezone: unknown time zone {name!r}.")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"timezone: unknown time zone {name!r}.") from None
    return name


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
        _ZONES.add("UTC")
    return _ZONES


def slots(cron: str, tz: str, after: datetime) -> Iterator[datetime]:
    """The slots strictly after `after`, in order, as aware datetimes in `tz`.

    A wall time that a DST change repeats is one slot, its first occurrence: cronsim
    steps by elapsed time when the minute or hour field starts with `*`, which would
    give `30 * * * *` two slots at 01:30.
    """
    zone = ZoneInfo(tz)
    local = after.astimezone(zone)
    seen_after = after.astimezone(UTC)
    try:
        for slot in CronSim(cron, local):
            if slot.tzinfo is None:  # pragma: no cover - cronsim always sets it
                slot = slot.replace(tzinfo=zone)
            if slot.astimezone(UTC) <= seen_after:
                # cronsim steps a fixed-time job in wall time: from inside a repeated
                # hour's second pass, its next slot can be the first pass's.
                continue
            if _second_pass(slot):
                continue
            yield slot
    except StopIteration:  # pragma: no cover - cronsim raises it inside __next__
        return


def _second_pass(slot: datetime) -> bool:
    """The later occurrence of a wall time that a DST change repeats."""
    return slot.fold == 1 and slot.utcoffset() != slot.replace(fold=0).utcoffset()


def slot_after(cron: str, tz: str, after: datetime) -> datetime | None:
    """The first slot strictly after `after`, in UTC; None if none in 50 years."""
    for slot in slots(cron, tz, after):
        return slot.astimezone(UTC)
    return None


def slot_due(
    cron: str, tz: str, first: datetime, now: datetime, *, limit: int = 10_000
) -> tuple[datetime, int, datetime | None, datetime | None]:
    """The slots passed since a schedule's due slot `first` (at or before `now`):
    the latest of them, how many came before it, the one just before it (or None),
    and the next slot after `now` (None: none in 50 years).

    Counting stops at `limit` slots (a week of a slot a minute; stepping costs some
    40 us a slot, in the sweep's transaction); the latest is then found stepping
    back from `now`.
    """
    latest, earlier, before = first, 0, None
    for slot in slots(cron, tz, first):
        at = slot.astimezone(UTC)
        if at > now:
            return latest, earlier, before, at
        before, latest, earlier = latest, at, earlier + 1
        if earlier >= limit:
            latest, before = _two_latest(cron, tz, now)
            return latest, earlier, before, slot_after(cron, tz, now)
    return latest, earlier, before, None


def _two_latest(cron: str, tz: str, now: datetime) -> tuple[datetime, datetime]:
    """The latest slot at or before `now` and the one before it."""
    zone = ZoneInfo(tz)
    back = CronSim(cron, (now + timedelta(seconds=1)).astimezone(zone), reverse=True)
    latest = next(back).astimezone(UTC)
    return latest, next(back).astimezone(UTC)
