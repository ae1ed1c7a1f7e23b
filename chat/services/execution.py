"""A tool call's run: claimed with a lease, settled once, then the turn goes on.

The worker talks to the outside service; these functions hold the rules. The claim
is a lease with a token, so a redelivered task finds the action taken or settled; a
retry after a crash or a transient error is told (`attempts > 1`) to read back
whether the earlier attempt already took effect.

A run's changes (executing, succeeded, failed) are announced to the room and to the
model only: the outbox reports decisions, which were made before the run.
"""

import logging
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import metrics
from chat.models import Action

from .events import action_emit, tool_result_emit
from .leases import (
    lease_end,
    lease_exhausted,
    lease_held,
    lease_live,
    lease_renew,
    lease_take,
)
from .locks import action_lock
from .requests import request_advance

logger = logging.getLogger(__name__)


def action_claim(*, action_id: uuid.UUID | str) -> Action | None:
    """Take an approved or executing action with a fresh lease, or None if not ours."""
    now = timezone.now()
    with transaction.atomic():
        locked = action_lock(action_id=action_id)
        if locked is None:
            return None
        request, action = locked
        if (
            action.status not in (Action.Status.APPROVED, Action.Status.EXECUTING)
            or lease_live(action, now)
            # An approval's delay: it may still be retracted; never start before.
            or (action.runs_at and action.runs_at > now)
        ):
            return None
        if request.ended:
            _abandon(action)
            return None
        if lease_exhausted(action, limit=settings.AGENT_MAX_ATTEMPTS):
            _settle(
                action,
                Action.Status.FAILED,
                error=f"The tool call failed {action.attempts} times; giving up.",
            )
            transaction.on_commit(lambda: request_advance(request_id=request.pk))
            return None
        previous = action.status
        lease_take(action, status=Action.Status.EXECUTING)
        if previous != action.status:
            action_emit(action)
    return action


def action_renew(*, action: Action, until: datetime | None) -> bool:
    """Extend (or, with None, give up) our lease; False once it is no longer ours."""
    return lease_renew(held=action, until=until, lock=_executing)


def action_sending(*, action: Action, sending: bool) -> bool:
    """Record (`sending`) that the attempt we hold is about to send a write with no
    idempotency key, or (not `sending`) that the service answered it, so it can no
    longer land later; False, and nothing may be sent, once the lease is not ours.

    Committed before the write leaves: a retry after a crash finds when the write
    may have left, and waits until it can no longer land before reading back.
    """
    if not action.lease_token:
        return False
    sent_at = timezone.now() if sending else None
    ours = Action.objects.filter(
        pk=action.pk,
        lease_token=action.lease_token,
        status=Action.Status.EXECUTING,
    )
    if not ours.update(sent_at=sent_at):
        return False
    action.sent_at = sent_at
    return True


def action_release(*, action: Action) -> None:
    """Give the lease up after a transient failure, so the retry claims at once."""
    action_renew(action=action, until=None)


def action_finish(
    *,
    action: Action,
    status: str,
    result: dict[str, Any] | None = None,
    error: str = "",
) -> None:
    """Settle the action we hold as succeeded or failed; the model is told."""
    with transaction.atomic():
        current = _current_if_ours(action)
        if current is None:
            return  # another attempt finished it
        _settle(current, status, result=result, error=error)
    request_advance(request_id=action.request_id)


def action_gave_up(*, action_id: uuid.UUID | str, error: str) -> None:
    """Fail an executing action whose tool kept failing after every retry."""
    with transaction.atomic():
        locked = action_lock(action_id=action_id)
        if locked is None or locked[1].status != Action.Status.EXECUTING:
            return
        _settle(locked[1], Action.Status.FAILED, error=error)
    request_advance(request_id=locked[0].pk)


def action_abandon(*, action_id: uuid.UUID | str) -> None:
    """Settle a tool call whose request ended while it ran and whose worker died.

    A cancel stops no tool that already started; if that tool's worker then dies,
    nobody may run it again (no tool starts after a cancel), so it ends `failed`.
    """
    with transaction.atomic():
        locked = action_lock(action_id=action_id)
        if locked is None:
            return
        request, action = locked
        if request.ended and not lease_live(action):
            _abandon(action)


def _abandon(action: Action) -> None:
    if action.status == Action.Status.EXECUTING:
        _settle(
            action,
            Action.Status.FAILED,
            error=(
                "The request ended while this tool call ran and its worker stopped; "
                "it may or may not have taken effect, and it was not run again."
            ),
        )


def _current_if_ours(action: Action) -> Action | None:
    return lease_held(held=action, lock=_executing)


def _executing(action: Action) -> Action | None:
    locked = action_lock(action_id=action.pk)
    if locked is None or locked[1].status != Action.Status.EXECUTING:
        return None
    return locked[1]


def _settle(
    action: Action,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: str = "",
) -> None:
    action.move_to(status)
    action.result, action.error = result, error
    lease_end(action)
    action.save()
    metrics.action_ended(tool=action.tool, outcome=status)
    action_emit(action)
    tool_result_emit(action)
    if status == Action.Status.FAILED:
        ids = {
            "action_id": str(action.pk),
            "request_id": str(action.request_id),
            "room": action.room.slug,
        }
        transaction.on_commit(
            lambda: logger.error(
                "action %s (%s) failed: %s",
                ids["action_id"],
                action.tool,
                error,
                extra=ids,
            )
        )
