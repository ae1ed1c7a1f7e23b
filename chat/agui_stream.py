"""One AG-UI run as a Server-Sent Events body, told from the room's own events.

The run watches the room like a WebSocket watcher (chat.hub: one subscription per
room per process; chat.catchup: the durable events in seq order, gaps filled from
the database), so there is no second path for what happened. It runs on the event
loop: no thread and no database connection is held while it waits (each read
borrows one through `database_sync_to_async`). A client that hangs up cancels
nothing: the request goes on for the room.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ag_ui.core import CustomEvent, RunErrorEvent
from channels.db import database_sync_to_async
from django.conf import settings
from redis.exceptions import RedisError

from . import socket_cap
from .agui import KEEP_ALIVE, RunMapper, history_messages, sse
from .catchup import CatchUp
from .hub import hub
from .services.agui import agui_state, tool_parameters

if TYPE_CHECKING:
    from chat.models import User

    from .models import Room

logger = logging.getLogger(__name__)

# What the watcher's queue carries besides frames: the run must stop.
_EVICTED, _FAILED, _BEHIND = object(), object(), object()


@dataclass
class RunPlan:
    """What the view settled before the stream: who, where, which request, how."""

    room: Room
    user: User
    thread_id: str
    run_id: str
    request_id: str | None
    mode: str  # "run" (a new request), "resume" or "connect"
    after: int = 0  # resume: the room's seq before the entries' votes
    answered: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    refusal: tuple[str, str] | None = None  # (code, message): one RUN_ERROR
    connection: str = field(default_factory=lambda: uuid.uuid4().hex)
    seen: dict[str, Any] | None = None  # resume: the request as it was at `after`


def stream_admit(*, user_id: int, connection: str) -> bool:
    """One of the user's AGUI_MAX_STREAMS_PER_USER slots, over every web process."""
    return socket_cap.socket_admit(
        user_id=user_id, connection=connection, kind=socket_cap.AGUI_STREAMS
    )


class _Watcher:
    """The run as one of the hub's watchers of the room (chat.hub.Watcher)."""

    def __init__(self, plan: RunPlan, queue: asyncio.Queue[Any]) -> None:
        self.room_id, self.user_id = plan.room.pk, plan.user.pk
        self.username, self.connection = plan.user.username, plan.connection
        self.queue = queue
        snapshot = partial(
            agui_state, request_id=plan.request_id, history=plan.mode == "connect"
        )
        self.catchup = CatchUp(
            room=plan.room,
            user=plan.user,
            write=self._write,
            evict=self.evict,
            fail=self._fail,
            snapshot=snapshot,
        )

    def _write(self, text: str) -> None:
        if self.queue.qsize() > settings.WS_MAX_BACKLOG:
            self.queue.put_nowait(_BEHIND)
            return
        self.queue.put_nowait(text)

    async def _fail(self) -> None:
        self.queue.put_nowait(_FAILED)

    def deliver(self, seq: int | None, text: str) -> None:
        self.catchup.deliver(seq, text)

    def resync(self) -> None:
        self.catchup.resync()

    def evict(self) -> None:
        self.queue.put_nowait(_EVICTED)


async def run_events(plan: RunPlan) -> AsyncIterator[bytes]:
    """The run's body: its events as SSE, keep-alives while nothing happens."""
    if plan.refusal is not None:
        code, message = plan.refusal
        yield sse(RunErrorEvent(message=message, code=code))
        await _release(plan)
        return
    queue: asyncio.Queue[Any] = asyncio.Queue()
    watcher = _Watcher(plan, queue)
    mapper = RunMapper(
        thread_id=plan.thread_id,
        run_id=plan.run_id,
        request_id=plan.request_id,
        username=plan.user.username,
        answered=plan.answered if plan.mode == "resume" else None,
    )
    joined = False
    try:
        # Subscribe before reading: nothing that happens in between is lost.
        await hub().join(watcher)
        joined = True
        for event in mapper.started():
            yield sse(event)
        for warning in plan.warnings:
            yield sse(CustomEvent(name="agentsite.warning", value={"detail": warning}))
        if plan.mode == "resume":
            assert plan.seen is not None
            mapper.seen(plan.seen)
            await watcher.catchup.start_after(plan.after)
        else:
            await watcher.catchup.start()
        first = plan.mode == "connect"  # its first frame is the room's history
        events = [] if first else mapper.ending()
        renew_at = time.monotonic() + socket_cap.socket_ttl() / 3
        while True:
            for event in events:
                yield sse(event)
            if mapper.interrupting and not mapper.done:
                tools = sorted({a["tool"] for a in mapper.interrupting})
                schemas = await database_sync_to_async(tool_parameters)(tools=tools)
                for event in mapper.interrupt(schemas):
                    yield sse(event)
            if mapper.done:
                return
            if time.monotonic() > renew_at:
                # The slot counts while renewed (a killed process's stop counting).
                await _renew(plan)
                renew_at = time.monotonic() + socket_cap.socket_ttl() / 3
            try:
                item = await asyncio.wait_for(
                    queue.get(), timeout=settings.AGUI_KEEPALIVE_SECONDS
                )
            except TimeoutError:
                yield KEEP_ALIVE
                events = []
                continue
            stopped = _stopped(item)
            if stopped is not None:
                mapper.done = True
                events = stopped
            elif first:
                first = False
                state = json.loads(item)
                history = history_messages(**state["history"])
                events = [history, *mapper.attach(state)]
            else:
                events = mapper.frame(json.loads(item))
    finally:
        if joined:
            await hub().leave(watcher)
        await _release(plan)


def _stopped(item: Any) -> list[Any] | None:
    """The last event when the queue says the run must stop, else None."""
    if item is _EVICTED:
        message, code = "You are no longer a member of this room.", "forbidden"
    elif item is _BEHIND:
        message, code = "The stream fell behind the room; attach again.", "fell_behind"
    elif item is _FAILED:
        message, code = (
            "The server could not read the room; attach again.",
            "server_error",
        )
    else:
        return None
    return [RunErrorEvent(message=message, code=code)]


async def _renew(plan: RunPlan) -> None:
    try:
        await asyncio.to_thread(
            socket_cap.sockets_renew,
            [(plan.user.pk, plan.connection)],
            socket_cap.AGUI_STREAMS,
        )
    except RedisError:
        logger.warning("agui: could not renew a stream's slot", exc_info=True)


async def _release(plan: RunPlan) -> None:
    await asyncio.to_thread(
        partial(
            socket_cap.socket_release,
            user_id=plan.user.pk,
            connection=plan.connection,
            kind=socket_cap.AGUI_STREAMS,
        )
    )
