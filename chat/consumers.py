"""The room WebSocket as a frame protocol: a snapshot on connect, then the room's
events, and the frames a client may send, each handled by the same service as the
REST API.

Who may connect and how fast they may send is chat.connection's; the order of the
frames sent (snapshot, gap fills, resyncs, live events) is chat.catchup's; this
module validates frames and dispatches them to chat.services, and owns the socket's
outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Coroutine
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, cast

from asgiref.typing import WebSocketReceiveEvent, WebSocketSendEvent
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agentsite import telemetry

from . import services
from .catchup import CatchUp
from .connection import (
    FELL_BEHIND,
    FORBIDDEN,
    MAX_FRAME_BYTES,
    NOT_FOUND,
    SERVER_ERROR,
    TOO_MANY,
    FrameThrottle,
    SocketSlot,
    Verdict,
    handshake_refusal,
)
from .eager import start_eagerly
from .errors import AppError, Invalid
from .hub import hub
from .realtime import encode

if TYPE_CHECKING:
    from chat.models import User

    from .models import Room

logger = logging.getLogger(__name__)


def _frame(text: str) -> WebSocketSendEvent:
    # ASGI lets a send event leave "bytes" out; asgiref's TypedDict requires it.
    return cast(WebSocketSendEvent, {"type": "websocket.send", "text": text})


class RoomConsumer(AsyncWebsocketConsumer):
    """One watcher of a room (chat.hub.Watcher) and the frames it may send.

    Every frame to the client goes through one outbox, written by one task at a time,
    so the snapshot, gap fills, live events and error frames leave in order, and a
    client that stops reading costs a bounded queue, not the room.
    """

    room: Room | None = None
    slot: SocketSlot | None = None  # one of the user's WS_MAX_SOCKETS_PER_USER

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outbox: deque[str] = deque()  # what waits behind a send that blocked
        self.writer: asyncio.Task[None] | None = None
        self.dropped = False  # the socket is gone or let go: no frame is sent

    @property
    def user(self) -> User:
        """The scope's user; connect() closes the socket unless it is signed in."""
        return cast("User", self.scope["user"])

    @property
    def member_room(self) -> Room:
        """The room connect() admitted this socket to (frames come only after)."""
        assert self.room is not None
        return self.room

    # The connection --------------------------------------------------------------

    async def connect(self) -> None:
        """Admit the socket (signed in, this site's Origin, a member of the room,
        within the user's socket cap), subscribe to the room, send its snapshot."""
        refusal = handshake_refusal(self.scope)
        refusal = refusal or await self._find_room() or await self._take_slot()
        if refusal is not None:
            await self.close(code=refusal)
            return
        self._open()
        await self.accept()
        # Subscribe before reading the snapshot: nothing that happens in between is
        # lost, and anything the snapshot already holds is dropped by its seq.
        try:
            await hub().join(self)
        except Exception:
            logger.exception("room consumer: could not subscribe to the room")
            await self.close(code=SERVER_ERROR)
            return
        await self.catchup.start()

    async def disconnect(self, code: int) -> None:
        """Give back the user's socket slot and leave the room's watchers."""
        if self.slot is not None:
            await self.slot.release()
        if self.room is None:
            return
        self._gone()
        await hub().leave(self)

    async def _find_room(self) -> int | None:
        """The room this socket names, if the user is a member (else 4404)."""
        try:
            self.room = await database_sync_to_async(services.room_get_for_member)(
                slug=self.scope["url_route"]["kwargs"]["slug"], user=self.user
            )
        except AppError:
            return NOT_FOUND
        # What chat.hub reads of its watchers.
        self.room_id, self.username = self.room.pk, self.user.username
        self.user_id, self.connection = self.user.pk, uuid.uuid4().hex
        return None

    async def _take_slot(self) -> int | None:
        """One of the user's socket slots (else 4429, or 1011 without Redis)."""
        self.slot = SocketSlot(user_id=self.user_id, connection=self.connection)
        return await self.slot.take()

    def _open(self) -> None:
        """What an admitted socket needs before its first frame, either way."""
        self.throttle = FrameThrottle()
        self.max_backlog = settings.WS_MAX_BACKLOG
        self.catchup = CatchUp(
            room=self.member_room,
            user=self.user,
            write=self._write,
            evict=self.evict,
            fail=self._fail,
        )

    async def _fail(self) -> None:
        await self.close(code=SERVER_ERROR)

    # chat.hub.Watcher ------------------------------------------------------------

    def deliver(self, seq: int | None, text: str) -> None:
        """A frame of the room, from the hub: in seq order, each durable event once."""
        self.catchup.deliver(seq, text)

    def evict(self) -> None:
        """The user left the room: not one more frame, and the socket closes (4403)
        as soon as the loop gets to it."""
        self._gone()
        asyncio.create_task(self.close(code=FORBIDDEN))

    def resync(self) -> None:
        """Frames may have been lost (the hub lost Redis): catch up by snapshot."""
        self.catchup.resync()

    # Server -> client ------------------------------------------------------------

    def _write(self, text: str) -> None:
        """Send a frame, or queue it behind the send that is waiting."""
        if self.dropped:
            return
        if self.writer is None:
            # Nothing queued: most sends complete at once, without a task.
            try:
                # The server's send is a coroutine function; the stub says Awaitable.
                sending = cast(Coroutine[Any, Any, None], self.base_send(_frame(text)))
                rest = start_eagerly(sending)
            except Exception:
                self._gone()
                return
            if rest is not None:
                self.writer = asyncio.create_task(self._drain(rest))
            return
        self.outbox.append(text)
        if len(self.outbox) > self.max_backlog:
            # The client stopped reading: rather than hold the room's stream for it
            # without bound, let it go; it reconnects and catches up by snapshot.
            logger.warning("room consumer: a watcher fell behind; closing it")
            self._gone()
            asyncio.create_task(self.close(code=FELL_BEHIND))

    async def _drain(self, blocked: Coroutine[Any, Any, None]) -> None:
        """Finish the send that had to wait, then everything queued behind it."""
        try:
            await blocked
            while self.outbox:
                await self.base_send(_frame(self.outbox.popleft()))
        except Exception:
            self._gone()
        finally:
            self.writer = None

    def _gone(self) -> None:
        self.dropped = True  # the socket is gone or let go; disconnect() follows
        self.outbox.clear()

    def _error(self, frame_type: str, detail: str) -> None:
        """An `error` frame answering a frame of `frame_type` ("" when unknown)."""
        self._write(encode({"type": "error", "detail": detail, "frame": frame_type}))

    # Client -> server ------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Client frames pass the throttle before anything else happens to them: a
        flood must not queue up behind the database thread and refill its tokens.
        (Calling the handler directly also skips the thread hop Channels makes on
        every message to close stale database connections.)"""
        if message["type"] != "websocket.receive":
            await super().dispatch(message)
            return
        verdict = self.throttle.take()
        if verdict is Verdict.READ:
            try:
                await self.websocket_receive(cast(WebSocketReceiveEvent, message))
            finally:
                self.throttle.handled()
        elif verdict is Verdict.WARN:
            self._error("", "Too many frames; slow down.")
        elif verdict is Verdict.CLOSE:
            asyncio.ensure_future(self.close(code=TOO_MANY))

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """One client frame: a JSON object whose `type` names its handler."""
        frame = self._decode(text_data)
        if frame is None:
            return
        kind = frame.get("type")
        handler = self.FRAME_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error(
                str(kind or ""),
                "Unknown frame type; expected chat, decide, decide_all, retract, "
                "cancel or resync.",
            )
            return
        # Frames that change something are SERVER spans (`ws chat`), the root of
        # the request they create or the link of the decision they make.
        traced = kind != "resync"
        try:
            with telemetry.server_span(f"ws {kind}") if traced else nullcontext():
                await handler(self, frame)
        except AppError as exc:
            self._error(str(kind), exc.detail)
        except Exception:
            # A bug must cost this frame, not the connection (and its presence).
            logger.exception("room consumer: %s frame failed", kind)
            self._error(str(kind), "The server could not handle this frame.")

    def _decode(self, text_data: str | None) -> dict[str, Any] | None:
        """The frame as a JSON object (other JSON values as `{}`, which names no
        type); None, after an error frame, when it is not JSON text in bounds."""
        # surrogatepass: a lone surrogate is the service's to refuse, not a crash here.
        size = len(text_data.encode("utf-8", "surrogatepass")) if text_data else 0
        if text_data is None or size > MAX_FRAME_BYTES:
            self._error(
                "", f"Frames must be JSON text of at most {MAX_FRAME_BYTES} bytes."
            )
            return None
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            self._error("", "The frame is not valid JSON (or nested too deeply).")
            return None
        return frame if isinstance(frame, dict) else {}

    async def frame_chat(self, frame: dict[str, Any]) -> None:
        """`chat`: the text starts a request in the room."""
        await database_sync_to_async(services.request_start)(
            room=self.member_room, user=self.user, text=frame.get("text")
        )

    async def frame_decide(self, frame: dict[str, Any]) -> None:
        """`decide`: the user's vote on an action of the room."""
        action_id, decision = frame.get("action"), frame.get("decision")
        arguments, reason = frame.get("arguments"), frame.get("reason")
        if not isinstance(action_id, str) or not isinstance(decision, str):
            raise Invalid("decide needs an action id and a decision.")
        if arguments is not None and not isinstance(arguments, dict):
            raise Invalid("arguments must be a JSON object.")
        if reason is not None and not isinstance(reason, str):
            raise Invalid("reason must be a string.")
        await database_sync_to_async(services.action_decide_in_room)(
            room=self.member_room,
            action_id=action_id,
            user=self.user,
            decision=decision,
            reason=reason or "",
            arguments=arguments,
            grant=frame.get("grant"),
        )

    async def frame_decide_all(self, frame: dict[str, Any]) -> None:
        """`decide_all`: the user's vote on every pending action of a request; the
        sender alone hears what was voted on and what refused (`decided_all`)."""
        request_id, decision = frame.get("request"), frame.get("decision")
        reason = frame.get("reason")
        if not isinstance(request_id, str) or not isinstance(decision, str):
            raise Invalid("decide_all needs a request id and a decision.")
        if reason is not None and not isinstance(reason, str):
            raise Invalid("reason must be a string.")
        done = await database_sync_to_async(services.request_decide_all_in_room)(
            room=self.member_room,
            request_id=request_id,
            user=self.user,
            decision=decision,
            reason=reason or "",
        )
        self._write(
            encode(
                {
                    "type": "decided_all",
                    "request": request_id,
                    "decision": decision,
                    "actions": [a["id"] for a in done.actions],
                    "refused": done.refused,
                }
            )
        )

    async def frame_retract(self, frame: dict[str, Any]) -> None:
        """`retract`: the user takes back their approval while it waits its delay."""
        action_id, reason = frame.get("action"), frame.get("reason") or ""
        if not isinstance(action_id, str) or not isinstance(reason, str):
            raise Invalid("retract needs an action id (and a text reason).")
        await database_sync_to_async(services.action_retract_in_room)(
            room=self.member_room, action_id=action_id, user=self.user, reason=reason
        )

    async def frame_cancel(self, frame: dict[str, Any]) -> None:
        """`cancel`: stop a request of the room."""
        request_id = frame.get("request")
        if not isinstance(request_id, str) or services.id_or_none(request_id) is None:
            raise Invalid("cancel needs a request id.")
        await database_sync_to_async(services.request_cancel_in_room)(
            room=self.member_room, request_id=request_id, user=self.user
        )

    async def frame_resync(self, frame: dict[str, Any]) -> None:
        """`resync`: every durable event after the client's seq (from far back, a
        snapshot), if the user is still in the room (else 4403)."""
        after = frame.get("after")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise Invalid("resync needs after: a seq (integer >= 0).")
        if not await database_sync_to_async(services.is_active_member)(
            room=self.member_room, user=self.user
        ):
            await self.close(code=FORBIDDEN)
            return
        await self.catchup.resync_after(after)

    FRAME_HANDLERS = {
        "chat": frame_chat,
        "decide": frame_decide,
        "decide_all": frame_decide_all,
        "retract": frame_retract,
        "cancel": frame_cancel,
        "resync": frame_resync,
    }
