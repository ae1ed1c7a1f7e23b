"""A watcher's room frames in seq order: the snapshot, the gap fills and resyncs read
from the database, and the live events that arrive meanwhile.

Each durable event reaches the watcher once and in order. While a catch-up reads the
database, live events are held; after it they are replayed, and those it already
sent are dropped by their seq. A resync from further back than RESYNC_MAX_EVENTS is
answered with a snapshot: cheaper than replaying them, and it holds everything a
replay would bring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async

from . import services
from .realtime import encode, event_frame, events_after
from .snapshot import snapshot_build

if TYPE_CHECKING:
    from chat.models import User

    from .models import Room

logger = logging.getLogger(__name__)

RESYNC_MAX_EVENTS = 500


def member_snapshot(*, room: Room, user: User) -> dict[str, Any] | None:
    """The room's snapshot if `user` is still an active member of it, else None."""
    if not services.is_active_member(room=room, user=user):
        return None
    return snapshot_build(room=room, user=user)


def events_since(*, room_id: int, after: int) -> list[tuple[int, str]] | None:
    """The room's durable events after seq `after`, as (seq, frame text); None when
    there are more than RESYNC_MAX_EVENTS (a snapshot answers instead)."""
    events = events_after(room_id, after, RESYNC_MAX_EVENTS + 1)
    if len(events) > RESYNC_MAX_EVENTS:
        return None
    return [(event.seq, encode(event_frame(event))) for event in events]


class CatchUp:
    """The order of one watcher's frames (chat.hub.Watcher): `write` sends a frame,
    `evict` lets a watcher go that left the room, `fail` closes it on an error."""

    def __init__(
        self,
        *,
        room: Room,
        user: User,
        write: Callable[[str], None],
        evict: Callable[[], None],
        fail: Callable[[], Awaitable[None]],
        snapshot: Callable[..., dict[str, Any] | None] = member_snapshot,
    ) -> None:
        self.room, self.user = room, user
        # What a catch-up from scratch sends (called with room= and user=): the
        # room's snapshot, or for an AG-UI run one of its request alone.
        self.snapshot = snapshot
        self.write, self.evict, self.fail = write, evict, fail
        self.last_seq = 0
        self.held: list[tuple[int | None, str]] = []
        # Live frames wait until the first snapshot is sent.
        self.catching_up, self.stale = True, False

    async def start(self) -> None:
        """Send the whole snapshot (on connect), then what arrived meanwhile."""
        await self._run(after=None)

    async def start_after(self, after: int) -> None:
        """Send the durable events after seq `after` (from far back, a snapshot),
        then what arrived meanwhile."""
        await self._run(after=after)

    def deliver(self, seq: int | None, text: str) -> None:
        """A frame of the room, from the hub: in seq order, each durable event once."""
        if self.catching_up:
            self.held.append((seq, text))
            return
        if seq is not None:
            if seq <= self.last_seq:
                return  # already sent (snapshot, gap fill or resync)
            if seq > self.last_seq + 1:
                # Another process's event is still on its way; send the gap from
                # the database first so this watcher sees every event in order.
                self.held.append((seq, text))
                self._start(self.last_seq)
                return
            self.last_seq = seq
        self.write(text)

    def resync(self) -> None:
        """Frames may have been lost (the hub lost Redis): send a whole snapshot."""
        if self.catching_up:
            self.stale = True
        else:
            self._start(None)

    async def resync_after(self, after: int) -> None:
        """The client's `resync`: the events after seq `after` (from far back, a
        snapshot), then what arrived meanwhile."""
        if self.catching_up:
            # Whatever is held after that replays in order (or, from far back, the
            # catch-up under way ends with a snapshot).
            if not await self._send_events_after(after):
                self.stale = True
        else:
            await self._run(after)

    def _start(self, after: int | None) -> None:
        self.catching_up = True
        asyncio.create_task(self._run(after))

    async def _run(self, after: int | None) -> None:
        """Send what the live stream may have missed, then what it held meanwhile:
        the events after `after`, or a snapshot (`after=None`, or from far back)."""
        self.catching_up = True
        try:
            if not await self._send_missed(after):
                # Removed while this process could not hear it (Redis away).
                self.evict()
                return
        except Exception:
            logger.exception("room consumer: catching up failed")
            await self.fail()
            return
        finally:
            self.catching_up = False
        held, self.held = self.held, []
        for seq, text in held:
            self.deliver(seq, text)

    async def _send_missed(self, after: int | None) -> bool:
        """The catch-up's reads, until no resync asked for another snapshot
        meanwhile; False when the user is no longer in the room."""
        while True:
            if after is not None and not await self._send_events_after(after):
                after = None
            if after is None and not await self._send_snapshot():
                return False
            if not self.stale:
                return True
            self.stale, after = False, None

    async def _send_events_after(self, after: int) -> bool:
        """Send the durable events after `after`; False, sending none, from further
        back than RESYNC_MAX_EVENTS."""
        frames = await database_sync_to_async(events_since)(
            room_id=self.room.pk, after=after
        )
        if frames is None:
            return False
        for seq, text in frames:
            self.write(text)
            self.last_seq = max(self.last_seq, seq)
        return True

    async def _send_snapshot(self) -> bool:
        """Send the room's snapshot; False when the user is no longer in the room."""
        snapshot = await database_sync_to_async(self.snapshot)(
            room=self.room, user=self.user
        )
        if snapshot is None:
            return False
        self.last_seq = snapshot["seq"]
        self.write(encode(snapshot))
        return True
