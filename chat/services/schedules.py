"""A room's schedules: a request posted by the room's bot at every cron slot
(contract: "Schedules"), set by its approvers, fired by the sweep.

At most once per slot: `next_run` is the claim. The sweep moves it past the slot with
a conditional UPDATE (`WHERE next_run = <the slot it read>`) in the transaction that
posts the slot's request, so a second beat, a restart or a redelivered sweep finds
it moved and posts nothing; a rollback undoes both. PATCH and DELETE take the same
row, so nothing is posted for a slot of the old settings after their answer.
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from chat.cron import cron_clean, slot_after, slot_due, timezone_clean
from chat.errors import Conflict, Invalid, NotFound
from chat.models import Room, Schedule, User
from chat.prompt_template import SCHEDULE_VARIABLES, template_parse
from chat.text import single_line, storable

from .access import room_get_for_approver
from .bots import room_bot
from .requests import request_start_triggered

logger = logging.getLogger(__name__)

BATCH = 500
FIELDS = ("cron", "timezone", "prompt", "name", "enabled")


def _id(schedule_id: object) -> str | None:
    """An id as a client gave it, or None when it cannot be one: PostgreSQL refuses
    a NUL in a query (a 500), and pk=None matches no row."""
    if isinstance(schedule_id, str) and 0 < len(schedule_id) <= 64:
        if storable(schedule_id):
            return schedule_id
    return None


def schedule_list(*, room_slug: str, user: User) -> list[Schedule]:
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its schedules")
    return list(_with_people().filter(room=room))


def schedule_get(*, room_slug: str, user: User, schedule_id: str) -> Schedule:
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its schedules")
    schedule = _with_people().filter(room=room, pk=_id(schedule_id)).first()
    if schedule is None:
        raise NotFound("No such schedule.")
    return schedule


def _with_people() -> QuerySet[Schedule]:
    return Schedule.objects.select_related("author", "created_by")


def schedule_create(*, room_slug: str, user: User, data: Mapping[str, Any]) -> Schedule:
    """Add a schedule (approvers only); its first slot is the next one from now.

    The room's row is locked for the count, so two creations at once cannot both
    pass SCHEDULES_PER_ROOM.
    """
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its schedules")
    clean = _clean(data, partial=False)
    with transaction.atomic():
        Room.objects.select_for_update().filter(pk=room.pk).first()
        limit = settings.SCHEDULES_PER_ROOM
        if Schedule.objects.filter(room=room).count() >= limit:
            raise Conflict(f"This room has {limit} schedules, the most it may have.")
        schedule = Schedule(room=room, created_by=user, author=room_bot(room))
        for field, value in clean.items():
            setattr(schedule, field, value)
        schedule.next_run = _next_run(schedule, timezone.now())
        schedule.save()
    return schedule


def schedule_update(
    *, room_slug: str, user: User, schedule_id: str, data: Mapping[str, Any]
) -> Schedule:
    """Change a schedule; its next slot is computed again from now (null while it
    is disabled). Its row is locked, so a sweep firing the old slot at the same
    time either posts before this answer or finds its claim gone."""
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its schedules")
    clean = _clean(data, partial=True)
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update()
            .filter(room=room, pk=_id(schedule_id))
            .first()
        )
        if schedule is None:
            raise NotFound("No such schedule.")
        for field, value in clean.items():
            setattr(schedule, field, value)
        schedule.next_run = _next_run(schedule, timezone.now())
        schedule.save()
    return schedule_get(room_slug=room_slug, user=user, schedule_id=schedule_id)


def schedule_delete(*, room_slug: str, user: User, schedule_id: str) -> None:
    """Delete a schedule. A sweep posting one of its slots holds its row, which the
    DELETE waits for: that post commits before this answer, none after it."""
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its schedules")
    with transaction.atomic():
        deleted, _ = Schedule.objects.filter(room=room, pk=_id(schedule_id)).delete()
    if not deleted:
        raise NotFound("No such schedule.")


def schedules_disable(*, schedule_ids: list[str]) -> int:
    """Disable schedules (the admin's action): no slot is posted or skipped until
    one is enabled again, from its next slot then."""
    return Schedule.objects.filter(pk__in=schedule_ids, enabled=True).update(
        enabled=False, next_run=None
    )


def _next_run(schedule: Schedule, now: datetime) -> datetime | None:
    if not schedule.enabled:
        return None
    return slot_after(schedule.cron, schedule.timezone, now)


def _clean(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The fields given, checked; Invalid (400) names the first bad one."""
    if not isinstance(data, Mapping):
        raise Invalid("The body must be a JSON object.")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise Invalid(f"{unknown[0]}: not a field a client sets (or it cannot change).")
    if not partial:
        for required in ("cron", "prompt"):
            if required not in data:
                raise Invalid(f"{required}: this field is required.")
    clean: dict[str, Any] = {}
    if "cron" in data:
        clean["cron"] = cron_clean(data["cron"])
    if "timezone" in data:
        clean["timezone"] = timezone_clean(data["timezone"])
    if "prompt" in data:
        clean["prompt"] = _prompt_clean(data["prompt"])
    if "name" in data:
        name = data["name"]
        if (
            not isinstance(name, str)
            or len(name) > 100
            or not storable(name)
            or not single_line(name)
        ):
            raise Invalid("name must be one line of at most 100 characters.")
        clean["name"] = name
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise Invalid("enabled must be true or false.")
        clean["enabled"] = data["enabled"]
    return clean


def _prompt_clean(prompt: object) -> str:
    limit = settings.AGENT_MAX_INPUT_CHARS
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= limit:
        raise Invalid(f"prompt must be text of 1 to {limit} characters.")
    if not storable(prompt):
        raise Invalid("prompt: NUL characters and invalid Unicode are not accepted.")
    # A schedule has no event: its prompt knows $slot and $schedule, no paths.
    template_parse(prompt, variables=SCHEDULE_VARIABLES, paths=False)
    return prompt


# Firing (the sweep) ----------------------------------------------------------------


def schedules_fire(now: datetime | None = None) -> dict[str, int]:
    """Post the due slot of every enabled schedule whose `next_run` has come, each
    in a transaction of its own; returns how many were posted and skipped."""
    now = now or timezone.now()
    due = list(
        Schedule.objects.filter(enabled=True, next_run__lte=now)
        .order_by("next_run")
        .values_list("pk", flat=True)[:BATCH]
    )
    posted = skipped = 0
    for schedule_id in due:
        try:
            ran, passed = _fire(schedule_id, now)
        except Exception:
            # One schedule's failure (its claim rolled back with it) must not stop
            # the others; the next sweep tries it again.
            logger.exception("schedule %s: could not post its slot", schedule_id)
            continue
        posted += ran
        skipped += passed
    return {"posted": posted, "skipped": skipped}


def _fire(schedule_id: str, now: datetime) -> tuple[int, int]:
    """Claim a schedule's passed slots and post the latest, if it is less than
    SCHEDULE_CATCH_UP seconds late; the others are skipped. One transaction: the
    claim and the post commit together or not at all."""
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_related("room")
            .filter(pk=schedule_id, enabled=True, next_run__lte=now)
            .first()
        )
        if schedule is None or schedule.next_run is None:
            return 0, 0
        due = schedule.next_run
        latest, earlier, before, upcoming = slot_due(
            schedule.cron, schedule.timezone, due, now
        )
        runs = (now - latest).total_seconds() < settings.SCHEDULE_CATCH_UP
        passed = earlier if runs else earlier + 1
        last_skipped = before if runs else latest
        # The claim: whoever moves next_run off `due` first owns these slots; a
        # second sweep's UPDATE waits for this transaction, then matches no row.
        changes: dict[str, Any] = {"next_run": upcoming}
        if passed:
            changes.update(skipped=F("skipped") + passed, last_skipped=last_skipped)
        claimed = Schedule.objects.filter(
            pk=schedule.pk, enabled=True, next_run=due
        ).update(**changes)
        if not claimed:
            return 0, 0
        if passed:
            _log_skipped(schedule, passed, last_skipped)
        if not runs:
            return 0, passed
        request = _post(schedule, latest)
        if request is not None:
            Schedule.objects.filter(pk=schedule.pk).update(
                last_run=latest, last_request=request
            )
        return int(request is not None), passed


def _post(schedule: Schedule, slot: datetime) -> Any:
    local = slot.astimezone(ZoneInfo(schedule.timezone))
    template = template_parse(
        schedule.prompt, variables=SCHEDULE_VARIABLES, paths=False
    )
    text = template.render(
        variables={"slot": local.isoformat(), "schedule": schedule.name}
    )
    trigger = {"kind": "schedule", "id": schedule.pk, "slot": _utc_iso(slot)}
    try:
        with transaction.atomic():
            return request_start_triggered(
                room=schedule.room, text=text, trigger=trigger
            )
    except Invalid as exc:
        # A prompt that renders blank (`{{ $schedule }}` of an unnamed one): the
        # slot is spent, nothing is posted.
        logger.warning("schedule %s: slot %s not posted: %s", schedule.pk, slot, exc)
        return None


def _utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _log_skipped(schedule: Schedule, count: int, latest: datetime | None) -> None:
    ids = {"schedule_id": schedule.pk, "room": schedule.room.slug}
    when = _utc_iso(latest) if latest else "?"
    transaction.on_commit(
        lambda: logger.warning(
            "schedule %s skipped %d slot(s), the latest %s (more than "
            "SCHEDULE_CATCH_UP late, or not the latest)",
            ids["schedule_id"],
            count,
            when,
            extra=ids,
        )
    )
