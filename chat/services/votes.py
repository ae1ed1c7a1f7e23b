"""Votes that stop counting: a voter removed, demoted or deactivated.

A vote counts only while its voter may still vote (PROTOCOL.md, "Approval
policies"). The quorum count already leaves such votes out (`Ballots.approvals`);
dropping them here makes the rows say so too, and tells the room: an `action` event
per changed action shows the new `approvals` (and `eligible`).
"""

from collections.abc import Collection
from functools import partial

from django.db import transaction
from django.db.models import F

from chat.eligibility import Ballots
from chat.models import Action, Vote

from .events import action_emit
from .locks import action_lock
from .notify import action_notify


def votes_drop_stale(*, user_ids: Collection[int], room_id: int | None = None) -> int:
    """Delete the votes of `user_ids` (in `room_id`, or anywhere) on the current
    ballot of pending actions they may no longer vote on; one `action` event per
    action changed. Votes on decided actions are history and stay. Returns how many
    actions changed.

    One transaction per action, taking its request's row lock first (the services'
    lock order), so a vote racing with the drop waits for it or precedes it.
    """
    affected = Action.objects.filter(
        status=Action.Status.PENDING,
        votes__user_id__in=list(user_ids),
        votes__ballot=F("ballot"),
    )
    if room_id is not None:
        affected = affected.filter(room_id=room_id)
    changed = 0
    for action_id in list(affected.values_list("pk", flat=True).distinct()):
        with transaction.atomic():
            locked = action_lock(action_id=action_id)
            if locked is None or locked[1].status != Action.Status.PENDING:
                continue
            request, action = locked
            ballots = Ballots([action], requesters={action.pk: request.user_id})
            stale = [v.user_id for v in ballots.stale_votes(action)]
            if not stale:
                continue
            Vote.objects.filter(
                action=action, ballot=action.ballot, user_id__in=stale
            ).delete()
            action.save(update_fields=["updated"])
            announced = action_emit(action)  # its ballots read afresh
            action_notify(action, announced)
        changed += 1
    return changed


def votes_drop_stale_on_commit(
    *, user_ids: Collection[int], room_id: int | None = None
) -> None:
    """`votes_drop_stale` once the caller's transaction (a membership or account
    change) commits: its locks come after a request's in the lock order, and the
    change must be visible to the eligibility check. A failure is logged, not
    raised: the change stands, and the quorum count leaves the votes out anyway."""
    transaction.on_commit(
        partial(votes_drop_stale, user_ids=list(user_ids), room_id=room_id),
        robust=True,
    )
