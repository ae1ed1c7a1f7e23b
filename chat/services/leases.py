"""The one lease: who holds a model step, a tool call or a delivery, and until when.

Requests, actions and deliveries take the fields from `chat.models.Leased`, and
these functions are the rules, the same for every kind of work:

- A claim takes a row whose lease is free (never taken, released, or run out): a
  fresh token, an end time, one attempt more. A live lease refuses a second claim;
  one that ran out (its worker died) is taken over by the next claim.
- The holder renews the lease while it works, releases it after a transient
  failure (so that the retry claims at once), and ends it with its last write.
- Every write of a holder checks its token: a stale holder, whose lease ran out
  and was taken over, finds another token and writes nothing.
- Work claimed too often is given up (`lease_exhausted`); the caller says how.

Two ways to hold the row while writing it. A model step and a tool call are
claimed, renewed and settled on a row the caller holds locked (`request_lock`:
their claim changes a status the room is told about, and the lock order puts the
request first), so their services pass their `lock`. A delivery touches no other
row: it is claimed and settled with one conditional UPDATE each (healthchecks'
way); were a send ever to outlive its lease, it would renew under its own row's
lock (the default `lock`).
"""

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from chat.models import Action, Leased, Request

L = TypeVar("L", bound=Leased)

# What a settled (or cancelled) row holds: no lease, and no token a holder matches.
LEASE_ENDED: dict[str, Any] = {"lease_token": "", "lease_until": None}


def lease_live(row: Leased, now: datetime | None = None) -> bool:
    """Whether someone holds `row` now: a claim must wait for the lease to end."""
    return row.lease_until is not None and row.lease_until > (now or timezone.now())


def lease_free(now: datetime) -> Q:
    """The rows a claim may take: `not lease_live`, as a query."""
    return Q(lease_until__isnull=True) | lease_expired(now)


def lease_expired(now: datetime) -> Q:
    """The rows whose holder stopped renewing (it died): the sweep's to requeue."""
    return Q(lease_until__lte=now)


def lease_exhausted(row: Leased, *, limit: int) -> bool:
    """Whether `row` was claimed `limit` times already: time to give it up."""
    return row.attempts >= limit


def lease_take(row: Request | Action, *, status: str) -> None:
    """Claim a step or a tool call, which the caller holds locked and found free,
    moving it to `status` (running, executing) in the same write."""
    row.move_to(status)
    row.lease_token, row.lease_until = _grant(settings.AGENT_LEASE_SECONDS)
    row.attempts += 1
    row.save(
        update_fields=["status", "lease_token", "lease_until", "attempts", "updated"]
    )


def lease_claim(rows: QuerySet[L], *, seconds: float) -> str | None:
    """Claim the row `rows` selects, if its lease is free, in one conditional
    UPDATE (no lock held); its token, or None when another holds it."""
    token, until = _grant(seconds)
    claimed = rows.filter(lease_free(timezone.now())).update(
        lease_token=token, lease_until=until, attempts=F("attempts") + 1
    )
    return token if claimed else None


def _own_row(held: L) -> L | None:
    # A row that is its own unit of locking (a delivery): lock it and nothing else.
    rows: QuerySet[L] = type(held)._default_manager.all()
    return rows.select_for_update().filter(pk=held.pk).first()


def lease_held(*, held: L, lock: Callable[[L], L | None] = _own_row) -> L | None:
    """The row as it is now, locked by `lock`, if `held`'s lease is still its own.

    Inside `transaction.atomic()`. None when `lock` finds nothing to hold (a
    cancel, a settle) or another claim took the row over since `held` was claimed.
    """
    current = lock(held)
    if current is None or not held.lease_token:
        return None
    return current if current.lease_token == held.lease_token else None


def lease_renew(
    *, held: L, until: datetime | None, lock: Callable[[L], L | None] = _own_row
) -> bool:
    """Move the end of `held`'s lease to `until` (None: release it); False once the
    lease is no longer `held`'s, so that its holder stops."""
    with transaction.atomic():
        current = lease_held(held=held, lock=lock)
        if current is None:
            return False
        current.lease_until = until
        current.save(update_fields=["lease_until"])
    return True


def lease_release(*, held: L, lock: Callable[[L], L | None] = _own_row) -> bool:
    """Give the lease up after a transient failure, so the retry claims at once."""
    return lease_renew(held=held, until=None, lock=lock)


def lease_end(row: Leased) -> None:
    """End the lease of a row being settled (the caller saves it, locked)."""
    row.lease_token, row.lease_until = "", None


def lease_settle(rows: QuerySet[L], *, held: L, **changes: Any) -> bool:
    """Write `changes` and end the lease in one conditional UPDATE, if it is still
    `held`'s; False (nothing written) when another took the row over."""
    if not held.lease_token:
        return False
    ours = rows.filter(pk=held.pk, lease_token=held.lease_token)
    return ours.update(**LEASE_ENDED, **changes) > 0


def _grant(seconds: float) -> tuple[str, datetime]:
    # The token tells the claimant's later writes from a stale holder's.
    return uuid.uuid4().hex, timezone.now() + timedelta(seconds=seconds)
