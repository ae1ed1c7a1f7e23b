"""The one way events reach a room: durable events with a seq, and ephemeral deltas.

Durable events are stored in the same transaction as the change they describe and
published after it commits (a watcher never hears of a change that rolled back).
Publishing goes through the channel layer from a single background thread per
process, so callers never wait on Redis and events leave in the order they committed
in this process. Watchers fill any gap between processes from the database by seq.
"""

import asyncio
import atexit
import json
import logging
import os
import threading
import uuid

from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from redis.exceptions import RedisError

from . import redis as rds
from .models import Room, RoomEvent

logger = logging.getLogger(__name__)

# How long the partial text of a streaming answer is kept for late joiners.
PARTIAL_TTL_SECONDS = 3600
# A durable event is retried this long while Redis is away (a restart, a failover);
# watchers would fill the gap from the database anyway, but only at the next event.
DURABLE_RETRY_SECONDS = 60


def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def encode(frame: dict) -> str:
    return json.dumps(frame, cls=DjangoJSONEncoder, separators=(",", ":"))


def event_frame(event: RoomEvent) -> dict:
    return {"type": event.type, "seq": event.seq, event.type: event.payload}


def event_emit(*, room_id: int, type: str, payload: dict) -> RoomEvent:
    """Store a durable room event under the room's next seq; publish it after commit.

    The UPDATE takes the room's row lock until the surrounding transaction ends, so
    concurrent writers get consecutive seqs and a rolled-back one leaves no gap.
    """
    payload = json.loads(encode(payload))
    with transaction.atomic():
        Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") + 1)
        seq = Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).get()
        event = RoomEvent.objects.create(
            room_id=room_id, seq=seq, type=type, payload=payload
        )
    message = {"type": "room.event", "seq": seq, "text": encode(event_frame(event))}
    transaction.on_commit(lambda: publisher.submit(room_group(room_id), message))
    return event


def events_after(room_id: int, after: int, limit: int = 500) -> list[RoomEvent]:
    return list(
        RoomEvent.objects.filter(room_id=room_id, seq__gt=after).order_by("seq")[:limit]
    )


def ephemeral_send(room_id: int, frame: dict) -> None:
    """Publish an event without a seq (delta, presence) to the room now."""
    message = {"type": "room.event", "seq": None, "text": encode(frame)}
    publisher.submit(room_group(room_id), message)


def delta_send(
    *,
    room_id: int,
    request_id: uuid.UUID,
    message_id: uuid.UUID,
    offset: int,
    text: str,
) -> None:
    """Publish streamed text and keep the message's partial text for late joiners.

    Clients apply a delta as `content = content[:offset] + text`; a delta at offset 0
    with empty text therefore clears a message whose model call is being retried.
    """
    partial = rds.key("partial", message_id)
    try:
        with rds.client().pipeline(transaction=False) as pipe:
            if offset == 0:
                pipe.set(partial, text, ex=PARTIAL_TTL_SECONDS)
            else:
                pipe.append(partial, text)
            pipe.execute()
    except RedisError as exc:
        # Live text is best effort: while Redis is away the answer goes on streaming
        # into the database's final message, and late joiners miss only the partial.
        logger.warning("realtime: could not store partial text: %r", exc)
    frame = {
        "type": "delta",
        "request": str(request_id),
        "message": str(message_id),
        "offset": offset,
        "text": text,
    }
    ephemeral_send(room_id, frame)


def partial_text(message_id: uuid.UUID) -> str | None:
    try:
        return rds.client().get(rds.key("partial", message_id))
    except RedisError:
        logger.warning("realtime: partial text unavailable", exc_info=True)
        return None


def partial_clear(message_id: uuid.UUID) -> None:
    try:
        rds.client().delete(rds.key("partial", message_id))
    except RedisError:
        pass  # it expires on its own (PARTIAL_TTL_SECONDS)


class Publisher:
    """A process-wide background event loop that sends to the channel layer in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None

    def submit(self, group: str, message: dict) -> None:
        self._ensure_started()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (group, message))

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until everything submitted so far has been handed to Redis."""
        if self._pid != os.getpid() or self._loop is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._queue.join(), self._loop)
        try:
            done.result(timeout)
        except TimeoutError:
            logger.warning("realtime: %d events still unsent", self._queue.qsize())

    def _ensure_started(self) -> None:
        # After a fork (Celery's prefork pool) the parent's thread is gone: start anew.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._loop = asyncio.new_event_loop()
            self._queue = asyncio.Queue()
            threading.Thread(target=self._run, name="realtime", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while True:
            group, message = await self._queue.get()
            try:
                await self._send(layer, group, message)
            finally:
                self._queue.task_done()

    async def _send(self, layer: object, group: str, message: dict) -> None:
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + DURABLE_RETRY_SECONDS, 0.1
        while True:
            try:
                await layer.group_send(group, message)
                return
            except Exception as exc:
                # Deltas are stale a moment later; durable events wait for Redis,
                # in order (and the database keeps them for resync regardless).
                if message["seq"] is None or loop.time() > deadline:
                    logger.warning("realtime: dropped an event for %s: %r", group, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


publisher = Publisher()
atexit.register(publisher.flush)
