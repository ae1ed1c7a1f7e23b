"""The outbox: what approvers outside the room are told, and how each send ends.

The services that change an action or end a request call `action_notify` or
`request_notify` themselves, beside the room event they emit. Rows are written in
the transaction of the change they report (so a rolled-back change tells nobody and
a committed one is never lost) and sent by a task after the commit
(`tasks.deliver`). Each row's `key` names the change and the recipient, so a change
reported twice (every vote reports its action again) is one row.
"""

import json
import logging
import random
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import enqueue
from chat.eligibility import Ballots
from chat.links import decide_url
from chat.models import Action, Delivery, Request, Room, User, Webhook
from chat.payloads import ActionPayload, request_payload
from chat.text import one_line
from chat.webhooks import dumps, slack_message

from .leases import LEASE_ENDED, lease_claim, lease_exhausted, lease_free, lease_settle
from .locks import action_lock

logger = logging.getLogger(__name__)

DECIDED = (
    Action.Status.APPROVED,
    Action.Status.DENIED,
    Action.Status.EXPIRED,
    Action.Status.CANCELLED,
)
# Longer than a send may take (a 10 s timeout, SMTP's too): a claim outlives it.
LEASE_SECONDS = 30


def action_notify(action: Action, payload: ActionPayload) -> None:
    """Write the outbox rows a change of `action` calls for (in its transaction);
    `payload`: the action as its room event just showed it (`action_emit`).

    `action.pending` when it starts to wait (again, after an edit or a retract: the
    votes so far no longer count), `action.decided` when it is approved, denied,
    expired, cancelled, or its approval retracted.
    """
    if action.status == Action.Status.PENDING:
        changes = [("action.pending", f"{action.pk}:{action.ballot}")]
        if action.retractions:
            retracted = f"{action.pk}:retracted:{len(action.retractions)}"
            changes.append(("action.decided", retracted))
    elif action.status in DECIDED:
        changes = [("action.decided", f"{action.pk}:{action.status}:{action.ballot}")]
    else:
        return
    # The locks and lists that emit actions read their room with them.
    cached = Action.room.is_cached(action)
    room = action.room if cached else Room.objects.get(pk=action.room_id)
    link = decide_url(action)
    rows: list[Delivery] = []
    for event, change in changes:
        body = {"type": event, "room": _room(room), "action": payload}
        body["decide_url"] = link
        rows += _webhook_rows(room, event, change, body)
    if action.status == Action.Status.PENDING:
        key = f"action.pending:{changes[0][1]}"
        rows += _email_rows(action, room, link, key, names=payload["eligible"])
    _store(rows)


def policy_notify(*, room: Room, payload: Mapping[str, Any], change: str) -> None:
    """`policy.changed` to the room's webhooks; `change` names it (once per key)."""
    body = {"type": "policy.changed", "room": _room(room), "policy": payload}
    _store(_webhook_rows(room, "policy.changed", change, body))


def escalation_notify(
    action: Action, payload: ActionPayload, escalated_to: list[str]
) -> None:
    """An escalation, once: `action.escalated` to the room's webhooks, and a mail
    ("Escalated: ...") to each escalated user who may now vote and has an address."""
    room = Room.objects.get(pk=action.room_id)
    link = decide_url(action)
    body = {
        "type": "action.escalated",
        "room": _room(room),
        "action": payload,
        "decide_url": link,
        "escalated_to": escalated_to,
    }
    rows = _webhook_rows(room, "action.escalated", str(action.pk), body)
    names = sorted(set(escalated_to) & set(payload["eligible"]))
    people = User.objects.filter(username__in=names, is_active=True).exclude(email="")
    subject = one_line(
        f"Escalated: [{room.name}] {action.tool} waits for your approval"
    )
    for person in people:
        text = _email_text(action, room, link, person, reminder=False)
        text = text.replace(
            "and you may approve or deny it.",
            "and you may approve or deny it: nobody decided it in time, so it was "
            "escalated to you.",
            1,
        )
        rows.append(
            Delivery(
                key=f"email:action.escalated:{action.pk}:{person.pk}",
                channel=Delivery.Channel.EMAIL,
                event="action.escalated",
                room=room,
                to=person.email,
                subject=subject[:200],
                body=text,
            )
        )
    _store(rows)


def request_notify(request: Request) -> None:
    """`request.ended`, once, when a request completes, fails or is cancelled."""
    if not request.ended:
        return
    room = Room.objects.get(pk=request.room_id)
    body = {"type": "request.ended", "room": _room(room)}
    body["request"] = request_payload(request)
    _store(_webhook_rows(room, "request.ended", str(request.pk), body))


def action_remind_due() -> int:
    """Email the voters who have not voted once more, at half an action's timeout."""
    now = timezone.now()
    candidates = Action.objects.filter(
        status=Action.Status.PENDING,
        reminded_at__isnull=True,
        expires_at__isnull=False,
    ).order_by("expires_at")
    reminded = 0
    for action_id, created, expires_at in candidates.values_list(
        "id", "created", "expires_at"
    )[:200]:
        if expires_at is None or created + (expires_at - created) / 2 > now:
            continue
        with transaction.atomic():
            locked = action_lock(action_id=action_id)
            if locked is None:
                continue
            action = locked[1]
            if action.status != Action.Status.PENDING or action.reminded_at:
                continue
            room = Room.objects.get(pk=action.room_id)
            key = f"action.reminder:{action.pk}"
            _store(_email_rows(action, room, decide_url(action), key, reminder=True))
            action.reminded_at = now
            action.save(update_fields=["reminded_at"])
        reminded += 1
    return reminded


def _room(room: Room) -> dict[str, str]:
    return {"slug": room.slug, "name": room.name}


def _webhook_rows(
    room: Room, event: str, change: str, body: dict[str, Any]
) -> list[Delivery]:
    rows = []
    for hook in Webhook.objects.filter(room=room):
        if event not in hook.events:
            continue
        row = Delivery(
            key=f"{event}:{change}:{hook.pk}",
            channel=Delivery.Channel.WEBHOOK,
            event=event,
            room=room,
            webhook=hook,
        )
        message = {"id": str(row.pk), **body}
        if hook.format == Webhook.Format.SLACK:
            message = slack_message(message)
        row.body = dumps(message)
        rows.append(row)
    return rows


def _email_rows(
    action: Action,
    room: Room,
    link: str,
    key: str,
    reminder: bool = False,
    names: list[str] | None = None,
) -> list[Delivery]:
    """A mail to each voter who may still vote and has an address; `names`: the
    action's `eligible` as its payload shows it, when the caller has it."""
    if names is None:
        names = Ballots([action]).eligible(action)
    people = User.objects.filter(username__in=names, is_active=True).exclude(email="")
    # A name from before names were one line must not break the header.
    subject = one_line(f"[{room.name}] {action.tool} waits for your approval")
    if reminder:
        subject = f"Reminder: {subject}"
    return [
        Delivery(
            key=f"email:{key}:{person.pk}",
            channel=Delivery.Channel.EMAIL,
            event="action.reminder" if reminder else "action.pending",
            room=room,
            to=person.email,
            subject=subject[:200],
            body=_email_text(action, room, link, person, reminder),
        )
        for person in people
    ]


def _email_text(
    action: Action, room: Room, link: str, person: User, reminder: bool
) -> str:
    lines = [
        f"Hello {person.username},",
        "",
        f"The agent in {room.name} wants to run {action.tool}, and you may approve "
        "or deny it."
        + (" It is still waiting, and half its time is gone." if reminder else ""),
        "",
        f"Room: {room.name} ({room.slug})",
        f"Tool: {action.tool}",
    ]
    if action.preview:
        lines.append("Preview: " + json.dumps(action.preview, ensure_ascii=False))
    lines.append("Arguments: " + json.dumps(action.arguments, ensure_ascii=False))
    if action.expires_at:
        lines.append(f"Expires: {action.expires_at.isoformat()}")
    lines += ["", f"Approve or deny: {link}", ""]
    return "\n".join(lines)


def _store(rows: list[Delivery]) -> None:
    if not rows:
        return
    existing = set(
        Delivery.objects.filter(key__in=[row.key for row in rows]).values_list(
            "key", flat=True
        )
    )
    fresh = [row for row in rows if row.key not in existing]
    now = timezone.now()
    for row in fresh:
        row.next_attempt_at = now
    Delivery.objects.bulk_create(fresh)
    for row in fresh:
        transaction.on_commit(partial(enqueue.deliver, delivery_id=row.pk))


def delivery_claim(*, delivery_id: str) -> Delivery | None:
    """Take a pending delivery for one attempt; None if it is sent, failed or held.

    A conditional UPDATE, so that a task run twice (a redelivery, the sweep's copy)
    sends once at a time.
    """
    pending = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING)
    if lease_claim(pending, seconds=LEASE_SECONDS) is None:
        return None
    return Delivery.objects.select_related("webhook").get(pk=delivery_id)


def delivery_record(*, delivery: Delivery, error: str | None) -> float | None:
    """How an attempt ended; the seconds until the next one, or None if it is over.

    Sent, or after `DELIVERY_MAX_ATTEMPTS` failed with the last error (the admin can
    send it again). None too when our lease ran out and another sender took it over:
    that one records its own attempt.
    """
    now = timezone.now()
    changes: dict[str, Any] = {"updated": now}
    countdown = None
    if error is None:
        changes.update(status=Delivery.Status.SENT, sent_at=now, last_error="")
    elif lease_exhausted(delivery, limit=settings.DELIVERY_MAX_ATTEMPTS):
        changes.update(status=Delivery.Status.FAILED, last_error=error)
    else:
        countdown = backoff(delivery.attempts)
        changes.update(
            last_error=error, next_attempt_at=now + timedelta(seconds=countdown)
        )
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING)
    if not lease_settle(pending, held=delivery, **changes):
        return None
    if changes.get("status") == Delivery.Status.FAILED:
        logger.error(
            "delivery %s gave up after %s attempts: %s",
            delivery.pk,
            delivery.attempts,
            error,
            extra={"delivery_id": str(delivery.pk), "room": delivery.room.slug},
        )
    return countdown


def backoff(attempts: int) -> float:
    # base * 2**n, with jitter so that a receiver coming back is not stampeded.
    wait = settings.DELIVERY_RETRY_BASE * 2 ** (attempts - 1)
    return float(wait * random.uniform(0.8, 1.2))


def delivery_resend(*, delivery_ids: list[str]) -> int:
    """Send failed (or stuck) deliveries again, from a fresh count of attempts."""
    with transaction.atomic():
        ids = list(
            Delivery.objects.filter(pk__in=delivery_ids)
            .exclude(status=Delivery.Status.SENT)
            .values_list("pk", flat=True)
        )
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            **LEASE_ENDED,
        )
        for pk in ids:
            transaction.on_commit(partial(enqueue.deliver, delivery_id=pk))
    return len(ids)


def deliveries_lost(*, limit: int = 500) -> list[tuple[str, int]]:
    """Pending deliveries due for a while and held by nobody, with their attempts:
    their task was lost (or waits in a long queue)."""
    now = timezone.now()
    settle = now - timedelta(seconds=settings.AGENT_SWEEP_GRACE_SECONDS)
    return [
        (str(pk), attempts)
        for pk, attempts in Delivery.objects.filter(
            lease_free(now),
            status=Delivery.Status.PENDING,
            next_attempt_at__lt=settle,
        ).values_list("pk", "attempts")[:limit]
    ]
