"""A worker's companion thread while it holds a lease on a request or an action.

It renews the lease (so the sweep knows the worker is alive), notices a cancel within
a fraction of a second, and sends streamed text that waited for its coalescing slot.
"""

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from chat.redis_client import redis_client

TICK_SECONDS = 0.01
CANCEL_POLL_SECONDS = 0.2


class Heartbeat(threading.Thread):
    def __init__(
        self,
        *,
        renew: Callable[[object], bool],
        cancel_key: str | None = None,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.renew = renew
        self.cancel_key = cancel_key
        self.tick = tick
        self.stopped = threading.Event()
        self.lost = threading.Event()
        self.on_lost: Callable[[], None] = lambda: None
        self._done = threading.Event()

    def __enter__(self) -> "Heartbeat":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join(timeout=5)

    def run(self) -> None:
        lease = settings.AGENT_LEASE_SECONDS
        next_renew = time.monotonic() + lease / 3
        next_poll = time.monotonic() + CANCEL_POLL_SECONDS
        try:
            while not self._done.wait(TICK_SECONDS):
                self.tick()
                now = time.monotonic()
                if now >= next_poll and not self.lost.is_set():
                    next_poll = now + CANCEL_POLL_SECONDS
                    if self.cancel_key and _flag_set(self.cancel_key):
                        self._lose()
                if now >= next_renew and not self.lost.is_set():
                    next_renew = now + lease / 3
                    if not self.renew(timezone.now() + timedelta(seconds=lease)):
                        self._lose()
        finally:
            # This thread's own database connection must not outlive it.
            connection.close()

    def _lose(self) -> None:
        self.lost.set()
        self.on_lost()


def _flag_set(key: str) -> bool:
    # Redis may be restarting; the lease renewal still catches a cancel then.
    try:
        return bool(redis_client().exists(key))
    except Exception:
        return False
