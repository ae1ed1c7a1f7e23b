"""Grants and expiring rules (PROTOCOL.md, "Governance").

A grant is an approval that also allows the same call on the same target for a
while: the vote counts as usual and, in its transaction, an `auto` rule for the
action's tool and target is made, expiring `seconds` later. A grant never lowers a
bar: an action whose copied rule asks more than one approval, four eyes or a delay,
or a voter who may not change the policy, is refused (403, nothing recorded).

A rule stops matching at its `expires_at` (`rule_resolve` checks the time); the
sweep reports each expiry once, within seconds (`policy_expire_due`).
"""

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from chat.errors import Forbidden, Invalid
from chat.models import Action, PolicyRule, Room, User
from chat.tools import catalogue

from .access import can_decide
from .policies import policy_changed

MAX_GRANT_SECONDS = 24 * 3600
BATCH = 200


def grant_clean(
    grant: object, *, decision: str, arguments: object, action: Action
) -> int:
    """The grant's seconds, or Invalid (400, before anything is recorded)."""
    if not isinstance(grant, dict) or set(grant) - {"seconds"}:
        raise Invalid("grant: an object {seconds}.")
    seconds = grant.get("seconds")
    if (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not 1 <= seconds <= MAX_GRANT_SECONDS
    ):
        raise Invalid(f"grant.seconds: an integer from 1 to {MAX_GRANT_SECONDS}.")
    if decision != "approve":
        raise Invalid("grant: only an approval may grant.")
    if arguments is not None:
        raise Invalid("grant: an edit (arguments) may not grant.")
    _target(action)
    return seconds


def _target(action: Action) -> tuple[str, Any]:
    spec = catalogue().get(action.tool)
    target = spec.target if spec is not None else None
    if target is None or target not in action.arguments:
        raise Invalid(
            f"grant: {action.tool} names no target (GET /api/tools: target is null), "
            "so a grant could not say what it allows."
        )
    return target, action.arguments[target]


def grant_check(*, action: Action, room: Room, user: User) -> None:
    """Forbidden when a grant would lower a bar (under the action's lock)."""
    if (
        action.approvals_required > 1
        or not action.requester_may_approve
        or action.delay > 0
    ):
        raise Forbidden(
            "This action's rule asks more than one approval, four eyes or a delay; "
            "a grant would lower that bar. Approve it without a grant."
        )
    if not can_decide(room=room, user=user):
        raise Forbidden(
            "Only those who may change this room's policy (its approvers) may grant."
        )


def grant_create(
    *, action: Action, room: Room, user: User, seconds: int, via: str
) -> PolicyRule:
    """The grant's `auto` rule, in the vote's transaction, and its `policy` event."""
    target, value = _target(action)
    rule = PolicyRule.objects.create(
        room=room,
        tool=action.tool,
        arguments={target: value},
        mode=PolicyRule.Mode.AUTO,
        expires_at=timezone.now() + timedelta(seconds=seconds),
        created_by=user,
        source_action=action,
    )
    policy_changed(
        room=room,
        change="granted",
        rule=rule,
        actor=user,
        action=action,
        via=via,
        data={"seconds": seconds},
    )
    return rule


def policy_expire_due(*, now: datetime | None = None) -> int:
    """Report every rule past its `expires_at` not reported yet; how many."""
    now = now or timezone.now()
    due = PolicyRule.objects.filter(
        expiry_reported_at__isnull=True, expires_at__lte=now
    ).order_by("expires_at")
    ids = list(due.values_list("id", flat=True)[:BATCH])
    return sum(policy_expire(rule_id=rule_id) for rule_id in ids)


def policy_expire(*, rule_id: UUID) -> bool:
    """Report one rule's expiry, once: the conditional UPDATE is the claim, in the
    transaction that stores the event (two sweeps at once report it once; a crash
    before the commit leaves it whole to the next one)."""
    with transaction.atomic():
        now = timezone.now()
        claimed = PolicyRule.objects.filter(
            pk=rule_id, expiry_reported_at__isnull=True, expires_at__lte=now
        ).update(expiry_reported_at=now)
        if not claimed:
            return False
        rule = PolicyRule.objects.select_related("room", "created_by").get(pk=rule_id)
        policy_changed(
            room=rule.room,
            change="expired",
            rule=rule,
            actor=None,
            via=Action.Via.SYSTEM,
        )
    return True
