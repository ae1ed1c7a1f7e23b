"""One Redis subscription per room per web process, fanned out to its watchers.

Workers and web processes publish each room event once, already encoded as the frame
watchers receive (chat.realtime). A web process subscribes once per room that has a
watcher here and hands the same text to each of them: no per-watcher channel, no
per-watcher decode and no task per message per watcher on the hot path.

Presence lives here too: the process's joins and leaves reach Redis in one batch, each
room hears one presence event per batch, and one task refreshes every local entry.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from typing import Protocol

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from . import presence, socket_cap
from .realtime import CONTROL_PREFIX, ephemeral_send, room_channel
from .redis_client import redis_key

logger = logging.getLogger(__name__)

# How long presence changes gather before one write and one event per room.
PRESENCE_BATCH_SECONDS = 0.05
# How long a new room's subscription may take before the watcher is refused.
SUBSCRIBE_TIMEOUT_SECONDS = 5.0


class Watcher(Protocol):
    room_id: int
    connection: str  # unique per connection, for presence
    username: str
    user_id: int

    def deliver(self, seq: int | None, text: str) -> None:
        """Take one frame of the room; must not block (called for every watcher)."""

    def resync(self) -> None:
        """Frames may have been lost (Redis went away): catch up from the database."""

    def evict(self) -> None:
        """The user left the room (or their role changed): stop and close (4403)."""


class RoomHub:
    """The subscriptions and presence of one event loop (one per web process)."""

    def __init__(self) -> None:
        self._redis = _client()
        self._rooms: dict[int, set[Watcher]] = {}
        self._by_channel: dict[str, int] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self._pubsub: aioredis.client.PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._joined: dict[int, dict[str, str]] = defaultdict(dict)
        self._left: dict[int, dict[str, str]] = defaultdict(dict)
        self._presence_flush: asyncio.Task[None] | None = None
        self._presence_refresher: asyncio.Task[None] | None = None

    # Watchers ---------------------------------------------------------------------

    async def join(self, watcher: Watcher) -> None:
        """Start delivering the room's frames to `watcher`; returns once subscribed."""
        async with self._lock:
            await self._start()
            watchers = self._rooms.get(watcher.room_id)
            if watchers is None:
                await self._subscribe(watcher.room_id)
                watchers = self._rooms[watcher.room_id] = set()
            watchers.add(watcher)
        self._presence_change(watcher, joined=True)

    async def leave(self, watcher: Watcher) -> None:
        async with self._lock:
            watchers = self._rooms.get(watcher.room_id)
            if watchers is None or watcher not in watchers:
                return
            watchers.discard(watcher)
            if not watchers:
                del self._rooms[watcher.room_id]
                await self._unsubscribe(watcher.room_id)
            if not self._rooms:
                await self._stop()
        self._presence_change(watcher, joined=False)

    # Subscriptions ----------------------------------------------------------------

    async def _start(self) -> None:
        if self._listener is not None:
            return
        self._pubsub = self._redis.pubsub()
        # The hub's own channel keeps the connection subscribed between rooms.
        await self._pubsub.subscribe(redis_key("hub"))
        self._listener = asyncio.create_task(self._listen(), name="room-hub")
        self._presence_refresher = asyncio.create_task(self._refresh_presence())

    async def _stop(self) -> None:
        for task in (self._listener, self._presence_refresher):
            if task is not None:
                task.cancel()
        self._listener = self._presence_refresher = None
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            await _close_quietly(pubsub)

    @property
    def _subscriber(self) -> aioredis.client.PubSub:
        # Set from _start() until _stop(); rooms are (un)subscribed only in between.
        assert self._pubsub is not None
        return self._pubsub

    async def _subscribe(self, room_id: int) -> None:
        channel = room_channel(room_id)
        self._by_channel[channel] = room_id
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmed[channel] = confirmed
        try:
            await self._subscriber.subscribe(channel)
            # Redis confirms in the message stream: from then on nothing published to
            # the room can pass this process by, so the watcher's snapshot is safe.
            await asyncio.wait_for(confirmed, SUBSCRIBE_TIMEOUT_SECONDS)
        except BaseException:
            self._by_channel.pop(channel, None)
            raise
        finally:
            self._confirmed.pop(channel, None)

    async def _unsubscribe(self, room_id: int) -> None:
        channel = room_channel(room_id)
        self._by_channel.pop(channel, None)
        try:
            await self._subscriber.unsubscribe(channel)
        except (RedisError, OSError):
            pass  # the listener reconnects without it

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._relay()
            except (RedisError, OSError) as exc:
                logger.warning("room hub: lost Redis (%r); reconnecting", exc)
            except Exception:
                logger.exception("room hub: relay failed; reconnecting")
            # Whatever was published meanwhile is gone: subscribe afresh, then every
            # watcher catches up from the database (events) and Redis (partial text).
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                async with self._lock:
                    await self._resubscribe()
            except (RedisError, OSError) as exc:
                logger.warning("room hub: Redis still away (%r)", exc)
                continue
            delay = 0.1
            for watchers in list(self._rooms.values()):
                for watcher in list(watchers):
                    watcher.resync()

    async def _resubscribe(self) -> None:
        old, self._pubsub = self._pubsub, self._redis.pubsub()
        if old is not None:
            await _close_quietly(old)
        await self._pubsub.subscribe(redis_key("hub"), *self._by_channel)

    async def _relay(self) -> None:
        pubsub = self._subscriber
        rooms = self._rooms
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            channel = message["channel"]
            if message["type"] != "message":
                if message["type"] == "subscribe" and channel in self._confirmed:
                    self._confirmed[channel].set_result(None)
                continue
            room_id = self._by_channel.get(channel)
            if room_id is None:
                continue  # a room just left
            seq, _, text = message["data"].partition(" ")
            if text.startswith(CONTROL_PREFIX):
                self._control(room_id, text)
                continue
            seq = int(seq) if seq else None
            for watcher in tuple(rooms.get(room_id, ())):
                try:
                    watcher.deliver(seq, text)
                except Exception:
                    # One watcher's bug must not cost the others their stream.
                    logger.exception("room hub: a watcher failed a frame")

    def _control(self, room_id: int, text: str) -> None:
        command, _, argument = text.removeprefix(CONTROL_PREFIX).partition(" ")
        if command != "evict" or not argument.isdigit():
            logger.warning("room hub: unknown control message %r", text[:80])
            return
        for watcher in tuple(self._rooms.get(room_id, ())):
            if watcher.user_id == int(argument):
                watcher.evict()

    # Presence ---------------------------------------------------------------------

    def _presence_change(self, watcher: Watcher, *, joined: bool) -> None:
        room, connection = watcher.room_id, watcher.connection
        if joined:
            self._joined[room][connection] = watcher.username
        elif self._joined[room].pop(connection, None) is None:
            self._left[room][connection] = watcher.username
        if self._presence_flush is None:
            self._presence_flush = asyncio.create_task(self._flush_presence())

    async def _flush_presence(self) -> None:
        await asyncio.sleep(PRESENCE_BATCH_SECONDS)
        joined, self._joined = self._joined, defaultdict(dict)
        left, self._left = self._left, defaultdict(dict)
        self._presence_flush = None
        try:
            users = await asyncio.to_thread(presence.presence_apply, joined, left)
        except RedisError:
            logger.warning("presence: could not record changes", exc_info=True)
            return
        for room_id, names in users.items():
            ephemeral_send(room_id, {"type": "presence", "users": names})

    async def _refresh_presence(self) -> None:
        # The same heartbeat renews the sockets' slots of the per-user cap.
        interval = min(presence.TTL_SECONDS, socket_cap.socket_ttl()) / 3
        while True:
            await asyncio.sleep(interval)
            entries = {
                room_id: {w.connection: w.username for w in watchers}
                for room_id, watchers in self._rooms.items()
            }
            sockets = [
                (w.user_id, w.connection)
                for watchers in self._rooms.values()
                for w in watchers
            ]
            try:
                await asyncio.to_thread(presence.presence_apply, entries, {})
                await asyncio.to_thread(socket_cap.sockets_renew, sockets)
            except RedisError:
                logger.warning("presence refresh failed", exc_info=True)


async def _close_quietly(pubsub: aioredis.client.PubSub) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    except (RedisError, OSError):
        pass  # its connection is gone already


def _client() -> aioredis.Redis:
    # No retries inside redis-py: a lost connection must surface here, because the
    # frames published meanwhile are lost and every watcher has to catch up.
    return aioredis.Redis.from_url(
        settings.REDIS_URL,
        decode_responses=True,
        socket_connect_timeout=3,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RoomHub] = (
    weakref.WeakKeyDictionary()
)


def hub() -> RoomHub:
    """The running event loop's hub (uvicorn runs one loop; tests may run several)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = RoomHub()
    return _hubs[loop]
