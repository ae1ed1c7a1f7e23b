"""Escalation (PROTOCOL.md, "Governance"): an action nobody decided in time widens
who may vote on it.

The rule's `escalate_after` / `escalate_to` are copied onto the action when it is
created (`rule_copy`: `escalates_at`, `escalate_to`). The sweep, every few seconds,
escalates the actions still pending past `escalates_at`, each once: from then on
`chat.eligibility` lets its `escalate_to` users vote (so the inbox, `eligible`, the
mails and the page's buttons follow), the room gets an `action` event, webhooks get
`action.escalated` and each new voter a mail.
"""

from datetime import datetime
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from chat.eligibility import Ballots
from chat.models import Action

from .audit import audit_write
from .events import action_emit
from .locks import action_lock
from .notify import escalation_notify

BATCH = 200


def action_escalate_due(*, now: datetime | None = None) -> int:
    """Escalate every pending action past its `escalates_at`; how many did."""
    now = now or timezone.now()
    due = Action.objects.filter(
        status=Action.Status.PENDING,
        escalated_at__isnull=True,
        escalates_at__lte=now,
    ).order_by("escalates_at")
    ids = list(due.values_list("id", flat=True)[:BATCH])
    return sum(action_escalate(action_id=action_id) for action_id in ids)


def action_escalate(*, action_id: UUID) -> bool:
    """Escalate one action if it is due and still pending; False if it is not (or
    another sweep did it first).

    The claim is a conditional UPDATE (`escalated_at` still null) in the transaction
    that also stores the event and the outbox rows: two sweeps at once escalate it
    once, and a crash before the commit leaves it to the next sweep, whole.
    """
    with transaction.atomic():
        locked = action_lock(action_id=action_id)
        if locked is None:
            return False
        request, action = locked
        now = timezone.now()
        claimed = Action.objects.filter(
            pk=action.pk,
            status=Action.Status.PENDING,
            escalated_at__isnull=True,
            escalates_at__lte=now,
        ).update(escalated_at=now, updated=now)
        if not claimed:
            return False
        action.escalated_at = now
        ballots = Ballots([action], requesters={action.pk: request.user_id})
        payload = action_emit(action, ballots)
        escalation_notify(action, payload, escalated_to(action, ballots))
        audit_write(
            room=action.room_id,
            kind="escalated",
            actor="system",
            via=Action.Via.SYSTEM,
            action=action,
            data={"escalate_to": list(action.escalate_to or [])},
        )
    return True


def escalated_to(action: Action, ballots: Ballots) -> list[str]:
    """The `escalate_to` users the escalation reaches: members of the room (any
    role) and holders of chat.decide_action."""
    names = set(action.escalate_to or ())
    people = [
        *ballots.members.get(action.room_id, {}).values(),
        *ballots.deciders.values(),
    ]
    return sorted({p.username for p in people if p.username in names})
