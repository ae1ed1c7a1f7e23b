"""A room's triggers: signed webhook deliveries that post requests as the room's bot
(contract: "Triggers" and "`POST /hooks/<id>`: deliveries").

Approvers (and holders of `chat.decide_action`) manage them; members get 403,
outsiders 404. A delivery runs the contract's checks in order; from the delivery id
on, everything happens in one transaction with the trigger's row locked, so the
same id sent twice at once posts one request and the rate is counted one by one.
"""

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.errors import Conflict, Invalid, NotFound
from chat.models import Room, Trigger, TriggerDelivery, User
from chat.prompt_template import (
    TRIGGER_VARIABLES,
    filter_matches,
    path_parse,
    template_parse,
)
from chat.text import single_line, storable
from chat.trigger_signatures import (
    DELIVERY_HEADERS,
    Unverified,
    event_name,
    secret_clean,
    secret_new,
    verify,
)

from .access import room_get_for_approver
from .bots import room_bot
from .requests import request_start_triggered

EVENTS_MAX = 50
FILTER_KEYS_MAX = 20
NAME_MAX = 100
DELIVERY_ID_MAX = 200
_EVENT = re.compile(r"[A-Za-z0-9_.-]{1,100}")
EDITABLE = ("prompt", "events", "filter", "name", "enabled", "secret")


def trigger_id_valid(trigger_id: object) -> bool:
    """Whether `trigger_id` can be one (PostgreSQL refuses a NUL in a query: a 500)."""
    return (
        isinstance(trigger_id, str)
        and 0 < len(trigger_id) <= 64
        and storable(trigger_id)
    )


def trigger_list(*, room_slug: str, user: User) -> list[Trigger]:
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its triggers")
    return list(Trigger.objects.filter(room=room).select_related("room", "created_by"))


def trigger_get(*, room_slug: str, user: User, trigger_id: str) -> Trigger:
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its triggers")
    if not trigger_id_valid(trigger_id):
        raise NotFound("No such trigger.")
    trigger = (
        Trigger.objects.filter(room=room, pk=trigger_id)
        .select_related("room", "created_by")
        .first()
    )
    if trigger is None:
        raise NotFound("No such trigger.")
    return trigger


def trigger_create(*, room_slug: str, user: User, data: Mapping[str, Any]) -> Trigger:
    """Add a trigger; its secret is generated when none is given and shown in this
    answer only. The room's bot is made with its first trigger."""
    room = room_get_for_approver(slug=room_slug, user=user, what="manage its triggers")
    source = data.get("source")
    if source not in Trigger.Source.values:
        raise Invalid(f"source must be one of {', '.join(Trigger.Source.values)}.")
    if "prompt" not in data:
        raise Invalid("prompt is required.")
    trigger = Trigger(room=room, source=source, created_by=user)
    _apply(trigger, {"secret": None, **data})
    room_bot(room)
    with transaction.atomic():
        # The room's row lock counts concurrent creations one by one.
        Room.objects.select_for_update().filter(pk=room.pk).first()
        limit = settings.TRIGGERS_PER_ROOM
        if Trigger.objects.filter(room=room).count() >= limit:
            raise Conflict(f"The room has {limit} triggers (TRIGGERS_PER_ROOM).")
        trigger.save()
    return trigger


def trigger_update(
    *, room_slug: str, user: User, trigger_id: str, data: Mapping[str, Any]
) -> tuple[Trigger, bool]:
    """Change a trigger; also whether its secret was set (then shown once)."""
    trigger = trigger_get(room_slug=room_slug, user=user, trigger_id=trigger_id)
    if "source" in data and data["source"] != trigger.source:
        raise Invalid("source cannot change: delete the trigger and add another.")
    _apply(trigger, data)
    trigger.save()
    return trigger, "secret" in data


def trigger_delete(*, room_slug: str, user: User, trigger_id: str) -> None:
    trigger_get(room_slug=room_slug, user=user, trigger_id=trigger_id).delete()


def triggers_disable(*, trigger_ids: list[str]) -> int:
    """Disable these triggers (the admin's action); how many were enabled."""
    return Trigger.objects.filter(pk__in=trigger_ids, enabled=True).update(
        enabled=False
    )


def _apply(trigger: Trigger, data: Mapping[str, Any]) -> None:
    """Set the editable fields present in `data`, each checked (Invalid: 400)."""
    if "prompt" in data:
        trigger.prompt = _clean_prompt(data["prompt"])
    if "events" in data:
        trigger.events = _clean_events(data["events"])
    if "filter" in data:
        trigger.filter = _clean_filter(data["filter"])
    if "name" in data:
        trigger.name = _clean_name(data["name"])
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise Invalid("enabled must be true or false.")
        trigger.enabled = data["enabled"]
    if "secret" in data:
        secret = data["secret"]
        trigger.secret = (
            secret_new(trigger.source)
            if secret is None
            else secret_clean(trigger.source, secret)
        )


def _clean_prompt(prompt: object) -> str:
    limit = settings.AGENT_MAX_INPUT_CHARS
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= limit:
        raise Invalid(f"prompt must be text of 1 to {limit} characters.")
    if not storable(prompt):
        raise Invalid("prompt contains a NUL character or invalid Unicode.")
    template_parse(prompt, variables=TRIGGER_VARIABLES)
    return prompt


def _clean_events(events: object) -> list[str]:
    if events is None:
        return []
    if not isinstance(events, list) or len(events) > EVENTS_MAX:
        raise Invalid(f"events must be a list of at most {EVENTS_MAX} event names.")
    for event in events:
        if not isinstance(event, str) or not _EVENT.fullmatch(event):
            raise Invalid(
                f"events: {event!r} is not an event name (1 to 100 of [A-Za-z0-9_.-])."
            )
    return list(events)


def _clean_filter(conditions: object) -> dict[str, Any]:
    if conditions is None:
        return {}
    if not isinstance(conditions, dict) or len(conditions) > FILTER_KEYS_MAX:
        raise Invalid(f"filter must be an object of at most {FILTER_KEYS_MAX} paths.")
    for path, value in conditions.items():
        try:
            path_parse(path, wildcard=True)
        except Invalid as error:
            raise Invalid(f"filter: {error.detail}") from None
        if isinstance(value, dict | list) or (
            isinstance(value, str) and not storable(value)
        ):
            raise Invalid(f"filter: {path!r} must map to a JSON scalar.")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"filter: {path!r} must map to a JSON scalar.")
    return dict(conditions)


def _clean_name(name: object) -> str:
    if name is None:
        return ""
    if not isinstance(name, str) or len(name) > NAME_MAX or not storable(name):
        raise Invalid(f"name must be text of at most {NAME_MAX} characters.")
    if not single_line(name):
        raise Invalid("name must be one line, without control characters.")
    return name


# Deliveries ---------------------------------------------------------------------


@dataclass
class HookAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def trigger_deliver(
    *, trigger: Trigger, headers: Mapping[str, str], body: bytes
) -> HookAnswer:
    """Checks 4 to 12 of a delivery whose trigger exists, whose body is within
    TRIGGER_MAX_BYTES and JSON (the view checked 1 to 3). `headers`: lower-case
    names."""
    try:
        verify(source=trigger.source, secret=trigger.secret, headers=headers, body=body)
    except Unverified as error:
        return HookAnswer(401, {"detail": str(error)})
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        payload = None
    if not isinstance(payload, dict):
        return HookAnswer(400, {"detail": "The body must be a JSON object."})
    delivery = headers.get(DELIVERY_HEADERS[trigger.source], "")
    if not delivery or len(delivery) > DELIVERY_ID_MAX or not storable(delivery):
        return HookAnswer(
            400,
            {
                "detail": f"The {DELIVERY_HEADERS[trigger.source]} header (1 to "
                f"{DELIVERY_ID_MAX} characters) is required."
            },
        )
    event = _storable(event_name(source=trigger.source, headers=headers, body=payload))
    try:
        with transaction.atomic():
            return _record_and_post(trigger.pk, payload, event, delivery)
    except IntegrityError:
        # Only if the row lock did not serialize the two (it always should): the
        # unique constraint still lets one of them post.
        seen = TriggerDelivery.objects.filter(
            trigger_id=trigger.pk, delivery=delivery
        ).first()
        return _duplicate(seen)


def _record_and_post(
    trigger_id: str, payload: dict[str, Any], event: str, delivery: str
) -> HookAnswer:
    # The row lock serializes this trigger's deliveries: a duplicate sent at once
    # waits here and then finds the first one's row (the unique constraint stands
    # behind it); the rate below is counted one delivery at a time.
    trigger = (
        Trigger.objects.select_for_update()
        .select_related("room")
        .filter(pk=trigger_id)
        .first()
    )
    if trigger is None:  # deleted since the view found it
        return HookAnswer(404, {"detail": "No such trigger."})
    now = timezone.now()
    Trigger.objects.filter(pk=trigger.pk).update(last_delivery=now)
    seen = TriggerDelivery.objects.filter(trigger=trigger, delivery=delivery).first()
    if seen is not None:
        return _duplicate(seen)
    record = TriggerDelivery.objects.create(trigger=trigger, delivery=delivery)
    ignored = _ignored(trigger, payload, event)
    if ignored is not None:
        return HookAnswer(202, {"ignored": ignored})
    text = _render(trigger, payload, event, delivery)
    if not text.strip():
        return HookAnswer(202, {"ignored": "empty"})
    wait = _rate_wait(trigger, now)
    if wait is not None:
        # Not recorded: the sender's retry of this very delivery may succeed.
        record.delete()
        return HookAnswer(
            429,
            {
                "detail": f"The trigger posted {settings.TRIGGER_MAX_PER_MINUTE} "
                "requests in the last minute (TRIGGER_MAX_PER_MINUTE)."
            },
            {"Retry-After": str(wait)},
        )
    request = request_start_triggered(
        room=trigger.room,
        text=text,
        trigger={
            "kind": "webhook",
            "id": trigger.pk,
            "source": trigger.source,
            "event": event,
            "delivery": delivery,
        },
    )
    record.request = request
    record.save(update_fields=["request"])
    trigger.fired += 1
    trigger.last_fired = now
    trigger.save(update_fields=["fired", "last_fired"])
    return HookAnswer(
        202, {"request": str(request.pk), "event": event, "delivery": delivery}
    )


def _duplicate(seen: TriggerDelivery | None) -> HookAnswer:
    posted = None if seen is None or seen.request_id is None else seen.request_id
    return HookAnswer(
        200, {"duplicate": True, "request": None if posted is None else str(posted)}
    )


def _ignored(trigger: Trigger, payload: dict[str, Any], event: str) -> str | None:
    if not trigger.enabled:
        return "disabled"
    if trigger.source == Trigger.Source.GITHUB and event == "ping":
        return "ping"
    if trigger.events and not any(
        event == entry or event.startswith(entry + ".") for entry in trigger.events
    ):
        return "event"
    if not filter_matches(payload, trigger.filter):
        return "filter"
    return None


def _render(
    trigger: Trigger, payload: dict[str, Any], event: str, delivery: str
) -> str:
    template = template_parse(trigger.prompt, variables=TRIGGER_VARIABLES)
    return _storable(
        template.render(
            body=payload,
            variables={
                "event": event,
                "delivery": delivery,
                "source": trigger.source,
                "trigger": trigger.name,
            },
        )
    )


def _storable(text: str) -> str:
    """Event text as the database can keep it: a JSON body may carry NULs and lone
    surrogates (`\\u0000`, `\\ud800`), which PostgreSQL refuses."""
    if storable(text):
        return text
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _rate_wait(trigger: Trigger, now: datetime) -> int | None:
    """Seconds until the trigger may post again, or None if it may now."""
    limit = settings.TRIGGER_MAX_PER_MINUTE
    window = now - timedelta(seconds=60)
    posted = list(
        TriggerDelivery.objects.filter(
            trigger=trigger, request__isnull=False, created__gt=window
        )
        .order_by("-created")
        .values_list("created", flat=True)[:limit]
    )
    if len(posted) < limit:
        return None
    oldest: datetime = posted[-1]
    return max(1, math.ceil((oldest - window).total_seconds()))


def trigger_deliveries_forget(*, now: datetime | None = None) -> int:
    """Drop delivery ids older than TRIGGER_DELIVERY_DAYS (the sweep calls this);
    how many went."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.TRIGGER_DELIVERY_DAYS)
    deleted, _ = TriggerDelivery.objects.filter(created__lt=cutoff).delete()
    return deleted
