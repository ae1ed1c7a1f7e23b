"""Streamed text on its way to the room: `delta` events, coalesced, never held long."""

import threading
import time
from collections.abc import Callable

from django.conf import settings

from chat.models import Request
from chat.realtime import delta_send

from .heartbeat import keeper


class DeltaRelay:
    """Publishes streamed text as `delta` events, coalesced but never held >50 ms.

    A delta leaves at once unless another left less than `AGENT_DELTA_INTERVAL_MS`
    before; then the process's lease keeper sends it when its slot comes
    (`flush_due`).
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.message_id = request.draft_message_id
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._pending = ""
        self._last = 0.0
        self._interval = settings.AGENT_DELTA_INTERVAL_MS / 1000
        self._closer: Callable[[], None] | None = None

    def set_closer(self, close: Callable[[], None]) -> None:
        self._closer = close

    def halt(self) -> None:
        """Stop sending, and cut a silent stream short (the reader sees Stopped)."""
        self.stop.set()
        keeper().forget(self)
        if closer := self._closer:
            self._closer = None
            closer()

    def reset(self) -> None:
        # A retried call streams under the same message id: watchers clear the old text.
        self._send(0, "")

    def add(self, text: str) -> None:
        with self._lock:
            self._pending += text
            if time.monotonic() - self._last >= self._interval:
                self._flush_locked()
                return
        keeper().flush_at(self, self._last + self._interval)

    def flush_due(self) -> float | None:
        """Send held-back text whose slot came; when more is due, or None."""
        with self._lock:
            if not self._pending or self.stop.is_set():
                return None
            slot = self._last + self._interval
            if time.monotonic() < slot:
                return slot
            self._flush_locked()
            return None

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._flush_locked()
        keeper().forget(self)

    def _flush_locked(self) -> None:
        if self.stop.is_set():
            return
        text, self._pending = self._pending, ""
        self._send(self._sent, text)
        self._sent += len(text)
        self._last = time.monotonic()

    def _send(self, offset: int, text: str) -> None:
        delta_send(
            room_id=self.request.room_id,
            request_id=self.request.pk,
            message_id=self.message_id,
            offset=offset,
            text=text,
        )
