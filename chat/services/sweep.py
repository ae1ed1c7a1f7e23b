"""Recovery: work that lost its worker or its enqueue, and approvals that ran out."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chat import enqueue
from chat.models import Action, Request

from .actions import action_expire_overdue
from .execution import action_abandon
from .leases import lease_expired
from .notify import action_remind_due, deliveries_lost

BATCH = 500


def sweep() -> dict[str, Any]:
    """Queue again every step and tool call whose lease ran out or never started.

    Queuing one twice is harmless: its claim finds it taken or done. Runs every
    few seconds (`AGENT_SWEEP_SECONDS`, Celery beat).
    """
    now = timezone.now()
    settle = now - timedelta(seconds=settings.AGENT_SWEEP_GRACE_SECONDS)
    stale = lease_expired(now) | Q(lease_until__isnull=True, updated__lt=settle)
    steps = list(
        Request.objects.filter(
            stale, status__in=[Request.Status.QUEUED, Request.Status.RUNNING]
        )
        .exclude(actions__status__in=Action.ACTIVE)
        .values_list("id", "step")[:BATCH]
    )
    unsettled = Action.objects.filter(
        stale, status__in=[Action.Status.APPROVED, Action.Status.EXECUTING]
    ).exclude(runs_at__gt=now)
    actions = list(
        unsettled.exclude(request__status__in=Request.ENDED).values_list(
            "id", flat=True
        )[:BATCH]
    )
    abandoned = list(
        unsettled.filter(request__status__in=Request.ENDED).values_list(
            "id", flat=True
        )[:BATCH]
    )
    for request_id, step in steps:
        enqueue.model_step(request_id=request_id, step=step)
    for action_id in actions:
        enqueue.tool_call(action_id=action_id)
    for action_id in abandoned:
        action_abandon(action_id=action_id)
    expired = action_expire_overdue()
    # Outbox rows whose task was lost (a worker restart, a failed enqueue).
    lost = deliveries_lost()
    for delivery_id in lost:
        enqueue.deliver(delivery_id=delivery_id)
    return {
        "steps": len(steps),
        "actions": len(actions),
        "abandoned": len(abandoned),
        "expired": expired,
        "reminded": action_remind_due(),
        "deliveries": len(lost),
    }
