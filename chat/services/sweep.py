"""Recovery: work that lost its worker or its enqueue, turns left between a decision
and its advance, and approvals that ran out."""

from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from redis.exceptions import RedisError

from chat import enqueue
from chat.models import Action, Request
from chat.redis_client import redis_client, redis_key

from .actions import action_expire_overdue
from .escalation import action_escalate_due
from .execution import action_abandon
from .grants import policy_expire_due
from .leases import lease_expired
from .notify import action_remind_due, deliveries_lost
from .requests import request_advance
from .schedules import schedules_fire
from .triggers import trigger_deliveries_forget

BATCH = 500
# A row's task is queued again once per claim, then once per this many leases.
REQUEUE_LEASES = 3
T = TypeVar("T")


def sweep() -> dict[str, Any]:
    """Queue again every step and tool call whose lease ran out or never started,
    and advance every request a crash left between a decision and its advance.

    Queuing one twice is harmless: its claim finds it taken or done; so is advancing
    one twice. Runs every few seconds (`AGENT_SWEEP_SECONDS`, Celery beat), which
    is also what posts the schedules' due slots, each claimed once.
    """
    now = timezone.now()
    settle = now - timedelta(seconds=settings.AGENT_SWEEP_GRACE_SECONDS)
    stale = lease_expired(now) | Q(lease_until__isnull=True, updated__lt=settle)
    steps = _not_queued_since_claimed(
        "step",
        [
            ((pk, step, attempts), (pk, step, trace))
            for pk, step, attempts, trace in Request.objects.filter(
                stale, status__in=[Request.Status.QUEUED, Request.Status.RUNNING]
            )
            .exclude(actions__status__in=Action.ACTIVE)
            .values_list("id", "step", "attempts", "trace_context")[:BATCH]
        ],
    )
    unsettled = Action.objects.filter(
        stale, status__in=[Action.Status.APPROVED, Action.Status.EXECUTING]
    ).exclude(runs_at__gt=now)
    actions = _not_queued_since_claimed(
        "action",
        [
            ((pk, attempts), (pk, trace))
            for pk, attempts, trace in unsettled.exclude(
                request__status__in=Request.ENDED
            ).values_list("id", "attempts", "trace_context")[:BATCH]
        ],
    )
    abandoned = list(
        unsettled.filter(request__status__in=Request.ENDED).values_list(
            "id", flat=True
        )[:BATCH]
    )
    for request_id, step, trace in steps:
        enqueue.model_step(request_id=request_id, step=step, trace=trace)
    for action_id, trace in actions:
        enqueue.tool_call(action_id=action_id, trace=trace)
    for action_id in abandoned:
        action_abandon(action_id=action_id)
    misfiled = _misfiled(settle)
    for request_id in misfiled:
        request_advance(request_id=request_id)
    expired = action_expire_overdue()
    escalated = action_escalate_due()
    rules_expired = policy_expire_due()
    # Outbox rows whose task was lost (a worker restart, a failed enqueue).
    lost = _not_queued_since_claimed(
        "delivery", [((pk, attempts), pk) for pk, attempts in deliveries_lost()]
    )
    for delivery_id in lost:
        enqueue.deliver(delivery_id=delivery_id)
    scheduled = schedules_fire(now)
    return {
        "scheduled": scheduled["posted"],
        "skipped_slots": scheduled["skipped"],
        "steps": len(steps),
        "actions": len(actions),
        "abandoned": len(abandoned),
        "expired": expired,
        "escalated": escalated,
        "rules_expired": rules_expired,
        "reminded": action_remind_due(),
        "deliveries": len(lost),
        "advanced": len(misfiled),
        # Delivery ids past TRIGGER_DELIVERY_DAYS (an indexed range: cheap when none).
        "forgotten": trigger_deliveries_forget(now=now),
    }


def _not_queued_since_claimed(
    kind: str, rows: list[tuple[tuple[object, ...], T]]
) -> list[T]:
    """Of `rows` (a row's claim, what to queue), those no sweep queued since that
    claim; each is marked as queued now.

    A row whose task waits in a long queue looks the same as one whose task was
    lost. Queued again on every sweep, a backlog grows faster than the workers
    drain it (seen in the chaos run: 72,000 copies of a few hundred tasks). So a
    sweep queues a row's task once per claim (the row's id and `attempts`, and a
    request's step) and, should that copy be lost too, again after
    `AGENT_LEASE_SECONDS` x 3. The marks live in Redis beside the queue: a Redis
    restart that loses the queue loses them too.
    """
    if not rows:
        return []
    ttl = settings.AGENT_LEASE_SECONDS * REQUEUE_LEASES
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            for claim, _ in rows:
                pipe.set(redis_key("requeued", kind, *claim), 1, nx=True, ex=ttl)
            fresh = pipe.execute()
    except RedisError:
        fresh = [True] * len(rows)  # the enqueue says why it fails
    return [item for (_, item), new in zip(rows, fresh, strict=True) if new]


def _misfiled(settle: datetime) -> list[UUID]:
    """Requests whose status their actions contradict, left so since `settle`.

    Every decision commits first and advances its request after (`request_advance`,
    in a transaction of its own); a process that dies in between leaves a request
    `awaiting_approval` with nothing pending, which no step or tool call would ever
    move again, or (a retract) `running` with no worker and an action pending.
    Advancing it again is what the dead process would have done.
    """
    pending = Action.objects.filter(
        request=OuterRef("pk"), status=Action.Status.PENDING
    )
    recent = Action.objects.filter(request=OuterRef("pk"), updated__gte=settle)
    return list(
        Request.objects.alias(has_pending=Exists(pending))
        .filter(
            Q(status=Request.Status.AWAITING_APPROVAL, has_pending=False)
            | Q(status=Request.Status.RUNNING, lease_until=None, has_pending=True),
            updated__lt=settle,
        )
        # A decision just made is still being advanced by its own process.
        .exclude(Exists(recent))
        .values_list("id", flat=True)[:BATCH]
    )
