"""The room WebSocket: a snapshot on connect, then the room's events, and the frames
a client may send, each handled by the same service as the REST API."""

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import Any, cast
from urllib.parse import urlsplit

from asgiref.typing import WebSocketReceiveEvent, WebSocketSendEvent
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import User
from django.http.request import validate_host
from redis.exceptions import RedisError

from . import services
from .eager import start_eagerly
from .errors import AppError
from .hub import hub
from .models import Action, Membership, Room
from .realtime import encode, event_frame, events_after
from .snapshot import snapshot_build
from .socket_cap import socket_admit, socket_release

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
# Token bucket per connection: a steady 10 frames/s, bursts of 30.
RATE_PER_SECOND = 10.0
BURST = 30.0
# Past this many refused frames within the window the client is not listening: close.
FLOOD_CLOSE_AFTER = 300
FLOOD_WINDOW_SECONDS = 10.0
# A resync further back than this many events is answered with a snapshot: cheaper
# than replaying them, and it holds everything a replay would bring.
RESYNC_MAX_EVENTS = 500


DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(headers: dict[bytes, bytes], scheme: str) -> tuple[str, int | None]:
    """The host and port the client says it reached (Host header; the scheme's
    default port); no host without the header."""
    host = headers.get(b"host", b"").decode("latin1")
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port
    except ValueError:
        return "", None
    return (parts.hostname or "").rstrip("."), port or DEFAULT_PORTS[scheme]


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
    last_seq = 0
    admitted = False  # holds one of the user's WS_MAX_SOCKETS_PER_USER slots

    @property
    def user(self) -> User:
        """The scope's user; connect() closes the socket unless it is signed in."""
        return cast(User, self.scope["user"])

    @property
    def member_room(self) -> Room:
        """The room connect() admitted this socket to (frames come only after)."""
        assert self.room is not None
        return self.room

    async def connect(self) -> None:
        user = self.user
        if not user.is_authenticated:
            await self.close(code=4401)
            return
        if not self._origin_allowed():
            await self.close(code=4403)
            return
        try:
            self.room = await database_sync_to_async(services.room_get_for_member)(
                slug=self.scope["url_route"]["kwargs"]["slug"], user=user
            )
        except AppError:
            await self.close(code=4404)
            return
        self.room_id, self.username, self.user_id = self.room.pk, user.username, user.pk
        self.connection = uuid.uuid4().hex
        if not await self._admit():
            return
        self.tokens, self.refill_at = BURST, time.monotonic()
        self.refused, self.refused_since = 0, time.monotonic()
        self.outbox: deque[str] = deque()  # what waits behind a send that blocked
        self.max_backlog = settings.WS_MAX_BACKLOG
        self.writer: asyncio.Task[None] | None = None
        self.held: list[tuple[int | None, str]] = []
        self.catching_up, self.stale, self.dropped = True, False, False
        await self.accept()
        # Subscribe before reading the snapshot: nothing that happens in between is
        # lost, and anything the snapshot already holds is dropped by its seq.
        try:
            await hub().join(self)
        except Exception:
            logger.exception("room consumer: could not subscribe to the room")
            await self.close(code=1011)
            return
        await self._catch_up(after=None)

    async def disconnect(self, code: int) -> None:
        if self.admitted:
            self.admitted = False
            await asyncio.to_thread(
                socket_release, user_id=self.user_id, connection=self.connection
            )
        if self.room is None:
            return
        self._gone()
        await hub().leave(self)

    # Server -> client ----------------------------------------------------------

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
                self._start_catch_up(self.last_seq)
                return
            self.last_seq = seq
        self._write(text)

    def evict(self) -> None:
        # Not one more frame: the socket is let go now, and closed as soon as the
        # loop gets to it.
        self._gone()
        asyncio.create_task(self.close(code=4403))

    def resync(self) -> None:
        if self.catching_up:
            self.stale = True
        else:
            self._start_catch_up(None)

    def _start_catch_up(self, after: int | None) -> None:
        self.catching_up = True
        asyncio.create_task(self._catch_up(after))

    async def _catch_up(self, after: int | None) -> None:
        """Send what the live stream may have missed, then what it held meanwhile.

        `after=None` sends a whole snapshot (on connect and when the hub lost Redis);
        otherwise the durable events after that seq, or a snapshot when they are
        more than RESYNC_MAX_EVENTS.
        """
        self.catching_up = True
        try:
            while True:
                if after is not None and not await self._send_events_after(after):
                    after = None
                if after is None:
                    snapshot = await database_sync_to_async(self._member_snapshot)()
                    if snapshot is None:
                        # Removed while this process could not hear it (Redis away).
                        self.evict()
                        return
                    self.last_seq = snapshot["seq"]
                    self._write(encode(snapshot))
                if not self.stale:
                    break
                self.stale, after = False, None
        except Exception:
            logger.exception("room consumer: catching up failed")
            await self.close(code=1011)
            return
        finally:
            self.catching_up = False
        held, self.held = self.held, []
        for seq, text in held:
            self.deliver(seq, text)

    async def _send_events_after(self, after: int) -> bool:
        """Send the durable events after `after`; False, sending none, when there
        are more than RESYNC_MAX_EVENTS (the caller sends a snapshot instead)."""
        events = await database_sync_to_async(events_after)(
            self.room_id, after, RESYNC_MAX_EVENTS + 1
        )
        if len(events) > RESYNC_MAX_EVENTS:
            return False
        for event in events:
            self._write(encode(event_frame(event)))
            self.last_seq = max(self.last_seq, event.seq)
        return True

    def _write(self, text: str) -> None:
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
            asyncio.create_task(self.close(code=4408))

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

    # Client -> server ----------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Client frames are throttled here, before anything else happens to them: a
        # flood must not queue up behind the database thread and refill its tokens.
        # (Calling the handler directly also skips the thread hop Channels makes on
        # every message to close stale database connections.)
        if message["type"] == "websocket.receive":
            if self._take_token():
                await self.websocket_receive(cast(WebSocketReceiveEvent, message))
        else:
            await super().dispatch(message)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        # surrogatepass: a lone surrogate is the service's to refuse, not a crash here.
        size = len(text_data.encode("utf-8", "surrogatepass")) if text_data else 0
        if text_data is None or size > MAX_FRAME_BYTES:
            self._error(
                "", f"Frames must be JSON text of at most {MAX_FRAME_BYTES} bytes."
            )
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            self._error("", "The frame is not valid JSON (or nested too deeply).")
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        handler = self.FRAME_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error(
                str(kind or ""),
                "Unknown frame type; expected chat, decide, cancel or resync.",
            )
            return
        try:
            await handler(self, frame)
        except AppError as exc:
            self._error(str(kind), exc.detail)
        except Exception:
            # A bug must cost this frame, not the connection (and its presence).
            logger.exception("room consumer: %s frame failed", kind)
            self._error(str(kind), "The server could not handle this frame.")

    async def frame_chat(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.request_start)(
            room=self.member_room, user=self.user, text=frame.get("text")
        )

    async def frame_decide(self, frame: dict[str, Any]) -> None:
        action_id, decision = frame.get("action"), frame.get("decision")
        arguments = frame.get("arguments")
        if not isinstance(action_id, str) or not isinstance(decision, str):
            self._error("decide", "decide needs an action id and a decision.")
            return
        if arguments is not None and not isinstance(arguments, dict):
            self._error("decide", "arguments must be a JSON object.")
            return
        reason = frame.get("reason")
        if reason is not None and not isinstance(reason, str):
            self._error("decide", "reason must be a string.")
            return
        await database_sync_to_async(self._decide)(
            action_id, decision, reason or "", arguments
        )

    def _decide(
        self,
        action_id: str,
        decision: str,
        reason: str,
        arguments: dict[str, Any] | None,
    ) -> None:
        self._check_in_room(action_id)
        services.action_decide(
            action_id=action_id,
            user=self.user,
            decision=decision,
            reason=reason,
            arguments=arguments,
            via=Action.Via.ROOM,
        )

    async def frame_retract(self, frame: dict[str, Any]) -> None:
        action_id, reason = frame.get("action"), frame.get("reason") or ""
        if not isinstance(action_id, str) or not isinstance(reason, str):
            self._error("retract", "retract needs an action id (and a text reason).")
            return
        await database_sync_to_async(self._retract)(action_id, reason)

    def _retract(self, action_id: str, reason: str) -> None:
        self._check_in_room(action_id)
        services.action_retract(
            action_id=action_id, user=self.user, reason=reason, via=Action.Via.ROOM
        )

    def _check_in_room(self, action_id: str) -> None:
        # pk=None (a malformed id) matches no row; the stubs refuse None.
        if not Action.objects.filter(  # type: ignore[misc]
            pk=services.id_or_none(action_id), room=self.room
        ).exists():
            raise services.NotFound("No such action in this room.")

    async def frame_cancel(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("request")
        if not isinstance(request_id, str) or services.id_or_none(request_id) is None:
            self._error("cancel", "cancel needs a request id.")
            return
        await database_sync_to_async(self._cancel)(request_id)

    def _cancel(self, request_id: str) -> None:
        if not self.member_room.requests.filter(pk=request_id).exists():
            raise services.NotFound("No such request in this room.")
        services.request_cancel(request_id=request_id, user=self.user)

    async def frame_resync(self, frame: dict[str, Any]) -> None:
        after = frame.get("after")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            self._error("resync", "resync needs after: a seq (integer >= 0).")
            return
        if not await database_sync_to_async(self._still_member)():
            await self.close(code=4403)
            return
        if self.catching_up:
            # Already catching up: whatever is held after that replays in order
            # (or, from far back, the catch-up ends with a snapshot).
            if not await self._send_events_after(after):
                self.stale = True
        else:
            await self._catch_up(after)

    def _member_snapshot(self) -> dict[str, Any] | None:
        """The room's snapshot if the user is still in it and active, else None."""
        if not self._still_member():
            return None
        return snapshot_build(room=self.member_room, user=self.user)

    def _still_member(self) -> bool:
        return Membership.objects.filter(
            room=self.room, user=self.user, user__is_active=True
        ).exists()

    FRAME_HANDLERS = {
        "chat": frame_chat,
        "decide": frame_decide,
        "retract": frame_retract,
        "cancel": frame_cancel,
        "resync": frame_resync,
    }

    # Helpers -------------------------------------------------------------------

    def _error(self, frame_type: str, detail: str) -> None:
        self._write(encode({"type": "error", "detail": detail, "frame": frame_type}))

    def _take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.refill_at) * RATE_PER_SECOND)
        self.refill_at = now
        if now - self.refused_since > FLOOD_WINDOW_SECONDS:
            self.refused, self.refused_since = 0, now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.refused += 1
        if self.refused == 1:
            self._error("", "Too many frames; slow down.")
        elif self.refused == FLOOD_CLOSE_AFTER:
            asyncio.ensure_future(self.close(code=4429))
        return False

    async def _admit(self) -> bool:
        """Take one of the user's socket slots (chat.socket_cap), or refuse the
        handshake: 4429 when they hold WS_MAX_SOCKETS_PER_USER, 1011 without Redis."""
        try:
            self.admitted = await asyncio.to_thread(
                socket_admit, user_id=self.user_id, connection=self.connection
            )
        except RedisError:
            logger.warning("room consumer: socket cap unreadable", exc_info=True)
            await self.close(code=1011)
            return False
        if not self.admitted:
            await self.close(code=4429)
        return self.admitted

    def _origin_allowed(self) -> bool:
        """A browser's socket must come from this site: the host, scheme and port
        this socket was reached on (or a CSRF_TRUSTED_ORIGINS origin). Another host
        in ALLOWED_HOSTS (a sibling subdomain) is another site."""
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin")
        if origin is None:
            # Browsers always send Origin; only token clients (scripts) may omit it.
            return self.scope.get("auth_method") == "token"
        text = origin.decode("latin1")
        if text in settings.CSRF_TRUSTED_ORIGINS:
            return True
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            return False
        host = parts.hostname or ""
        if not host or not validate_host(host, settings.ALLOWED_HOSTS):
            return False
        scheme = "https" if self._secure(headers) else "http"
        if parts.scheme != scheme:
            return False
        origin_at = (host.rstrip("."), port or DEFAULT_PORTS[scheme])
        return origin_at == _host_port(headers, scheme)

    def _secure(self, headers: dict[bytes, bytes]) -> bool:
        if self.scope.get("scheme") == "wss":
            return True
        # Behind a proxy that ends TLS, as Django decides it for HTTP requests.
        proxy = settings.SECURE_PROXY_SSL_HEADER
        if proxy:
            name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower()
            return headers.get(name.encode(), b"").decode("latin1") == proxy[1]
        return False
