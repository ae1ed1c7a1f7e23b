"""Streamed text on its way to the room: `delta` events, coalesced, never held long.

Relays live on the stream engine's loop (`tasks.engine`): text a stream reads is
appended to its relay, and once per turn of the loop every relay with new text
sends it, all of them in one hand-over to the publisher, which writes the deltas
and their partial texts in one Redis pipeline.
"""

from __future__ import annotations

import asyncio
import threading

from django.conf import settings

from chat.models import Request
from chat.realtime import DeltaStream, Item, deltas_send


class DeltaRelay:
    """Publishes streamed text as `delta` events, coalesced but never held >50 ms.

    Text leaves at the end of the loop's turn that read it (text read in the same
    turn goes out as one delta), unless the message's previous delta left less than
    `AGENT_DELTA_INTERVAL_MS` before; then it leaves when that interval is up.
    Called on the engine's loop only, but for `halt` (any thread).
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.message_id = request.draft_message_id
        self.stop = threading.Event()
        self._stream = DeltaStream(
            room_id=request.room_id,
            request_id=request.pk,
            message_id=self.message_id,
        )
        self._sent = 0
        self._pending: list[str] = []
        self._last = -1e9
        self._waiting = False  # marked for the turn's batch, or for its slot
        self._interval = settings.AGENT_DELTA_INTERVAL_MS / 1000

    def halt(self) -> None:
        """Stop sending (from any thread): held text is dropped."""
        self.stop.set()

    def reset(self) -> None:
        # A retried call streams under the same message id: watchers clear the old text.
        deltas_send([self._stream.item(0, "")])

    def add(self, text: str) -> None:
        self._pending.append(text)
        if not self._waiting:
            self._waiting = True
            _batch.mark(self)

    def flush(self) -> None:
        """Send what is held now (the stream ended): before the final message."""
        if item := self.take():
            deltas_send([item])

    def take(self, now: float | None = None) -> Item | None:
        """The held text as one delta, or None (nothing held, stopped, or `now`
        too soon after the last delta: then it is due at `due`)."""
        self._waiting = False
        if not self._pending or self.stop.is_set():
            return None
        if now is not None and now < self._last + self._interval:
            self._waiting = True
            return None
        text = "".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        item = self._stream.item(self._sent, text)
        self._sent += len(text)
        self._last = now if now is not None else asyncio.get_running_loop().time()
        return item

    @property
    def due(self) -> float:
        return self._last + self._interval


class _Batch:
    """The relays with new text in this turn of the loop, sent at its end."""

    def __init__(self) -> None:
        self._relays: list[DeltaRelay] = []

    def mark(self, relay: DeltaRelay) -> None:
        if not self._relays:
            asyncio.get_running_loop().call_soon(self.send)
        self._relays.append(relay)

    def send(self) -> None:
        relays, self._relays = self._relays, []
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = []
        for relay in relays:
            if (item := relay.take(now)) is not None:
                items.append(item)
            elif relay._waiting:
                loop.call_at(relay.due, self._slot, relay)
        if items:
            deltas_send(items)

    def _slot(self, relay: DeltaRelay) -> None:
        if relay._waiting:
            relay._waiting = False
            self.mark(relay)


_batch = _Batch()
