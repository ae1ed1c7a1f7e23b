"""The one way events reach a room: durable events with a seq, and ephemeral deltas.

Durable events are stored in the same transaction as the change they describe and
published after it commits (a watcher never hears of a change that rolled back).
Publishing goes straight to a Redis channel per room from a single background thread
per process, so callers never wait on Redis and events leave in the order they
committed in this process. Each web process subscribes once per room and fans the
frames out to its watchers (chat.hub); watchers fill any gap between processes from
the database by seq.
"""

import atexit
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, cast

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from redis.exceptions import RedisError

from .models import Room, RoomEvent
from .redis_client import redis_client, redis_key

logger = logging.getLogger(__name__)

# How long the partial text of a streaming answer is kept for late joiners.
PARTIAL_TTL_SECONDS = 3600
# A durable event is retried this long while Redis is away (a restart, a failover);
# watchers would fill the gap from the database anyway, but only at the next event.
DURABLE_RETRY_SECONDS = 60


def room_channel(room_id: int) -> str:
    return redis_key("room", room_id)


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, cls=DjangoJSONEncoder, separators=(",", ":"))


def event_frame(event: RoomEvent) -> dict[str, Any]:
    return {"type": event.type, "seq": event.seq, event.type: event.payload}


def event_emit(*, room_id: int, type: str, payload: Mapping[str, Any]) -> RoomEvent:
    """Store a durable room event under the room's next seq; publish it after commit.

    The UPDATE takes the room's row lock until the surrounding transaction ends, so
    concurrent writers get consecutive seqs and a rolled-back one leaves no gap.
    """
    stored = json.loads(encode(dict(payload)))
    # No savepoint: a failure here fails the caller's whole transaction anyway, and
    # two statements fewer per event (most writes emit one or two).
    with transaction.atomic(savepoint=False):
        seq = _next_seq(room_id)
        event = RoomEvent.objects.create(
            room_id=room_id, seq=seq, type=type, payload=stored
        )
    text = encode(event_frame(event))
    transaction.on_commit(lambda: publisher.submit(room_id, seq, text))
    return event


def _next_seq(room_id: int) -> int:
    # One statement where the ORM needs two (an UPDATE, then a SELECT of the new
    # value): PostgreSQL and SQLite (3.35+) both answer UPDATE ... RETURNING.
    table, column = Room._meta.db_table, Room._meta.get_field("last_seq").column
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET {quote(column)} = {quote(column)} + 1 "
            f"WHERE {quote(Room._meta.pk.column)} = %s RETURNING {quote(column)}",
            [room_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Room.DoesNotExist(f"No room {room_id}.")
    return int(row[0])


def events_after(room_id: int, after: int, limit: int = 500) -> list[RoomEvent]:
    return list(
        RoomEvent.objects.filter(room_id=room_id, seq__gt=after).order_by("seq")[:limit]
    )


def ephemeral_send(room_id: int, frame: dict[str, Any]) -> None:
    """Publish an event without a seq (delta, presence) to the room now."""
    publisher.submit(room_id, None, encode(frame))


# A control message for the web processes, not a frame for watchers: frames are JSON
# objects, so a leading "!" cannot be one.
CONTROL_PREFIX = "!"


def member_evict(*, room_id: int, user_id: int) -> None:
    """After commit, have every web process close `user_id`'s sockets in the room.

    Sent on the room's channel, which every process with a watcher there hears; a
    process that misses it (Redis away) checks membership in the snapshot it resends.
    """
    text = f"{CONTROL_PREFIX}evict {user_id}"
    transaction.on_commit(lambda: publisher.submit(room_id, None, text))


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
    stream = DeltaStream(room_id=room_id, request_id=request_id, message_id=message_id)
    deltas_send([stream.item(offset, text)])


class DeltaStream:
    """One message's deltas, each built in one string operation (a stream sends
    hundreds): the frame is `encode`'s, byte for byte."""

    def __init__(
        self, *, room_id: int, request_id: uuid.UUID, message_id: uuid.UUID
    ) -> None:
        self.channel = room_channel(room_id)
        self.key = redis_key("partial", message_id)
        self._head = (
            f'{{"type":"delta","request":"{request_id}",'
            f'"message":"{message_id}","offset":'
        )

    def item(self, offset: int, text: str) -> "Item":
        """The delta at `offset`, with the partial text's write for late joiners
        (made in the same pipeline, just before the frame)."""
        frame = f'{self._head}{offset},"text":{json.dumps(text)}}}'
        store = ("set" if offset == 0 else "append", self.key, text)
        return (self.channel, None, frame, store)


def deltas_send(items: "list[Item]") -> None:
    """Publish deltas (`DeltaStream.item`) in one hand-over to the publisher, which
    sends them, with their partial texts, in one pipeline."""
    publisher.submit_many(items)


def partial_text(message_id: uuid.UUID) -> str | None:
    try:
        # The client decodes replies (decode_responses=True): a str or None.
        return cast(str | None, redis_client().get(redis_key("partial", message_id)))
    except RedisError:
        logger.warning("realtime: partial text unavailable", exc_info=True)
        return None


def partial_clear(message_id: uuid.UUID) -> None:
    """Forget a message's partial text, after any delta of it still on its way (a
    lost delete leaves it to expire: PARTIAL_TTL_SECONDS)."""
    publisher.store(("delete", redis_key("partial", message_id), ""))


# A write of a message's partial text: ("set" | "append" | "delete", key, text).
Store = tuple[str, str, str]
# What the publisher's thread sends: a frame for a channel (none for a bare store),
# its seq (none for ephemeral events), and a partial-text write to make before it.
Item = tuple[str | None, int | None, str, Store | None]


class Publisher:
    """A process-wide background thread that publishes to Redis in order, in batches.

    Each event is published once, already encoded as the frame watchers receive, as
    `"<seq> <frame>"` (no seq for ephemeral events) on the room's channel. Under load
    the thread sends everything queued in one pipeline: one round trip per batch.
    A delta's partial text for late joiners is written in the same pipeline, so a
    streaming thread never waits on Redis.
    """

    BATCH = 500

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        # Replaced with the thread's own queue in each process by _ensure_started.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def submit(
        self, room_id: int, seq: int | None, text: str, store: Store | None = None
    ) -> None:
        self._ensure_started()
        self._queue.put((room_channel(room_id), seq, text, store))

    def submit_many(self, items: list[Item]) -> None:
        self._ensure_started()
        self._queue.put(items)

    def store(self, store: Store) -> None:
        self._ensure_started()
        self._queue.put((None, None, "", store))

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until everything submitted so far has been handed to Redis."""
        if self._pid != os.getpid():
            return
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            logger.warning("realtime: events still unsent after %.1f s", timeout)

    def _ensure_started(self) -> None:
        # After a fork (Celery's prefork pool) the parent's thread is gone: start anew.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.SimpleQueue()
            threading.Thread(target=self._run, name="realtime", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            batch: list[Any] = []
            item = self._queue.get()
            while True:
                # A list is a batch of deltas (`submit_many`), sent in order.
                if isinstance(item, list):
                    batch.extend(item)
                else:
                    batch.append(item)
                if len(batch) >= self.BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            events = [item for item in batch if not isinstance(item, threading.Event)]
            if events:
                self._publish(events)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()

    def _publish(self, events: list[Item]) -> None:
        deadline, delay = time.monotonic() + DURABLE_RETRY_SECONDS, 0.1
        while events:
            try:
                with redis_client().pipeline(transaction=False) as pipe:
                    for channel, seq, text, store in events:
                        if store is not None:
                            _stage(pipe, store)
                        if channel is not None:
                            pipe.publish(
                                channel, f"{'' if seq is None else seq} {text}"
                            )
                    pipe.execute()
                return
            except RedisError as exc:
                # Deltas and partial text are stale a moment later (the final
                # message is in the database); durable events wait for Redis, in
                # order (and the database keeps them for resync regardless).
                if any(event[1] is None for event in events):
                    logger.warning("realtime: dropped live text: %r", exc)
                events = [event for event in events if event[1] is not None]
                if time.monotonic() > deadline:
                    logger.warning("realtime: dropped %d events: %r", len(events), exc)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


def _stage(pipe: Any, store: Store) -> None:
    op, key, text = store
    if op == "set":
        pipe.set(key, text, ex=PARTIAL_TTL_SECONDS)
    elif op == "append":
        pipe.append(key, text)
    else:
        pipe.delete(key)


publisher = Publisher()
atexit.register(publisher.flush)
