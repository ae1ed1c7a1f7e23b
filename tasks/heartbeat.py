"""One thread per worker process that keeps every lease of the process alive.

While a step streams or a tool runs, its lease is renewed (so the sweep knows the
worker is alive) and a cancel is noticed within a fraction of a second. One thread
serves every turn the process runs, so a few hundred turns at once cost one wake-up
per poll; renewals and cancel polls are batched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from chat.redis_client import redis_client

logger = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.2


class Lease:
    """A step's or a tool call's claim on its row, as the keeper sees it."""

    def __init__(
        self,
        *,
        renew: Callable[[datetime], bool],
        cancel_key: str | None = None,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.renew = renew
        self.cancel_key = cancel_key
        self.on_lost = on_lost
        self.lost = threading.Event()
        self.renewed = time.monotonic()

    def lose(self) -> None:
        if not self.lost.is_set():
            self.lost.set()
            self.on_lost()


class Keeper(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="lease-keeper", daemon=True)
        self._lock = threading.Lock()
        self._leases: set[Lease] = set()

    @contextmanager
    def hold(self, lease: Lease) -> Iterator[Lease]:
        """Keep `lease` alive for the length of the block."""
        with self._lock:
            self._leases.add(lease)
        try:
            yield lease
        finally:
            with self._lock:
                self._leases.discard(lease)

    def run(self) -> None:
        while True:
            time.sleep(CANCEL_POLL_SECONDS)
            self._poll()

    def _poll(self) -> None:
        with self._lock:
            leases = [lease for lease in self._leases if not lease.lost.is_set()]
        if not leases:
            return
        try:
            self._poll_cancels(leases)
            self._renew_due(leases)
        except Exception:
            logger.exception("the lease keeper's round failed; it goes on")

    def _poll_cancels(self, leases: list[Lease]) -> None:
        watched = [lease for lease in leases if lease.cancel_key]
        if not watched:
            return
        try:
            with redis_client().pipeline(transaction=False) as pipe:
                for lease in watched:
                    assert lease.cancel_key is not None  # (filtered above)
                    pipe.exists(lease.cancel_key)
                flags = pipe.execute()
        except Exception:
            return  # Redis may be restarting; the lease renewal still catches a cancel
        for lease, flag in zip(watched, flags, strict=True):
            if flag:
                lease.lose()

    def _renew_due(self, leases: list[Lease]) -> None:
        period = settings.AGENT_LEASE_SECONDS / 3
        now = time.monotonic()
        due = [lease for lease in leases if now - lease.renewed >= period]
        if not due:
            return
        until = timezone.now() + timedelta(seconds=settings.AGENT_LEASE_SECONDS)
        try:
            for lease in due:
                lease.renewed = now
                if not lease.renew(until):
                    lease.lose()
        finally:
            # Back to the pool between rounds: the keeper holds no connection idle.
            close_old_connections()
            connection.close()


_keeper: Keeper | None = None
_keeper_lock = threading.Lock()


def keeper() -> Keeper:
    """The process's keeper, started on first use (after a fork, in the child)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None or not _keeper.is_alive():
            _keeper = Keeper()
            _keeper.start()
        return _keeper
