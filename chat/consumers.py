"""The room WebSocket: a snapshot on connect, then the room's events, and the frames
a client may send, each handled by the same service as the REST API."""

import asyncio
import json
import logging
import time
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import validate_host

from . import services
from .errors import AppError
from .models import Action, Membership
from .presence import TTL_SECONDS, presence_join, presence_leave
from .realtime import encode, event_frame, events_after, room_group
from .snapshot import snapshot_build

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
# Token bucket per connection: a steady 10 frames/s, bursts of 30.
RATE_PER_SECOND = 10.0
BURST = 30.0
# Past this many refused frames within the window the client is not listening: close.
FLOOD_CLOSE_AFTER = 300
FLOOD_WINDOW_SECONDS = 10.0


class RoomConsumer(AsyncWebsocketConsumer):
    room = None
    last_seq = 0

    async def connect(self) -> None:
        user = self.scope["user"]
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
        self.group = room_group(self.room.pk)
        self.tokens, self.refill_at = BURST, time.monotonic()
        self.refused, self.refused_since = 0, time.monotonic()
        await self.accept()
        # Join before reading the snapshot: nothing that happens in between is lost,
        # and anything the snapshot already holds is dropped below by its seq.
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await database_sync_to_async(snapshot_build)(
            room=self.room, user=user
        )
        self.last_seq = snapshot["seq"]
        await self.send(text_data=encode(snapshot))
        await self._presence(presence_join)
        self.presence_task = asyncio.create_task(self._presence_refresh())

    async def disconnect(self, code: int) -> None:
        if self.room is None:
            return
        self.presence_task.cancel()
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await self._presence(presence_leave)

    # Server -> client ----------------------------------------------------------

    async def dispatch(self, message: dict) -> None:
        # Room events are the hot path (every token to every watcher): they touch no
        # database, so they skip the per-message thread hop Channels makes to close
        # stale database connections.
        # Client frames are throttled here, before anything else happens to them: a
        # flood must not queue up behind the database thread and refill its tokens.
        if message["type"] == "room.event":
            await self.room_event(message)
        elif message["type"] == "websocket.receive":
            if self._take_token():
                await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def room_event(self, message: dict) -> None:
        seq = message["seq"]
        if seq is None:
            await self.send(text_data=message["text"])
            return
        if seq <= self.last_seq:
            return  # already sent (snapshot, gap fill or resync)
        if seq > self.last_seq + 1:
            # Another process's event is still on its way; send the gap from the
            # database so this watcher sees every event, in seq order.
            await self._send_events_after(self.last_seq, until=seq - 1)
        await self.send(text_data=message["text"])
        self.last_seq = seq

    async def _send_events_after(self, after: int, until: int | None = None) -> None:
        events = await database_sync_to_async(events_after)(self.room.pk, after)
        for event in events:
            if until is not None and event.seq > until:
                break
            await self.send(text_data=encode(event_frame(event)))
            self.last_seq = max(self.last_seq, event.seq)

    # Client -> server ----------------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ):
        # surrogatepass: a lone surrogate is the service's to refuse, not a crash here.
        size = len(text_data.encode("utf-8", "surrogatepass")) if text_data else 0
        if text_data is None or size > MAX_FRAME_BYTES:
            await self._error(
                "", f"Frames must be JSON text of at most {MAX_FRAME_BYTES} bytes."
            )
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._error("", "The frame is not valid JSON (or nested too deeply).")
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        handler = self.FRAME_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error(
                str(kind or ""),
                "Unknown frame type; expected chat, decide, cancel or resync.",
            )
            return
        try:
            await handler(self, frame)
        except AppError as exc:
            await self._error(kind, exc.detail)
        except Exception:
            # A bug must cost this frame, not the connection (and its presence).
            logger.exception("room consumer: %s frame failed", kind)
            await self._error(kind, "The server could not handle this frame.")

    async def frame_chat(self, frame: dict) -> None:
        await database_sync_to_async(services.request_start)(
            room=self.room, user=self.scope["user"], text=frame.get("text")
        )

    async def frame_decide(self, frame: dict) -> None:
        action_id, decision = frame.get("action"), frame.get("decision")
        arguments = frame.get("arguments")
        if not isinstance(action_id, str) or not isinstance(decision, str):
            await self._error("decide", "decide needs an action id and a decision.")
            return
        if arguments is not None and not isinstance(arguments, dict):
            await self._error("decide", "arguments must be a JSON object.")
            return
        await database_sync_to_async(self._decide)(
            action_id, decision, frame.get("reason") or "", arguments
        )

    def _decide(
        self, action_id: str, decision: str, reason: str, arguments: dict | None
    ):
        if not Action.objects.filter(
            pk=services.id_or_none(action_id), room=self.room
        ).exists():
            raise services.NotFound("No such action in this room.")
        services.action_decide(
            action_id=action_id,
            user=self.scope["user"],
            decision=decision,
            reason=reason,
            arguments=arguments,
            via=Action.Via.ROOM,
        )

    async def frame_cancel(self, frame: dict) -> None:
        request_id = frame.get("request")
        if not isinstance(request_id, str) or services.id_or_none(request_id) is None:
            await self._error("cancel", "cancel needs a request id.")
            return
        await database_sync_to_async(self._cancel)(request_id)

    def _cancel(self, request_id: str) -> None:
        if not self.room.requests.filter(pk=request_id).exists():
            raise services.NotFound("No such request in this room.")
        services.request_cancel(request_id=request_id, user=self.scope["user"])

    async def frame_resync(self, frame: dict) -> None:
        after = frame.get("after")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            await self._error("resync", "resync needs after: a seq (integer >= 0).")
            return
        if not await database_sync_to_async(self._still_member)():
            await self.close(code=4403)
            return
        await self._send_events_after(after)

    def _still_member(self) -> bool:
        return Membership.objects.filter(
            room=self.room, user=self.scope["user"]
        ).exists()

    FRAME_HANDLERS = {
        "chat": frame_chat,
        "decide": frame_decide,
        "cancel": frame_cancel,
        "resync": frame_resync,
    }

    # Helpers -------------------------------------------------------------------

    async def _error(self, frame_type: str, detail: str) -> None:
        await self.send(
            text_data=encode({"type": "error", "detail": detail, "frame": frame_type})
        )

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
            asyncio.ensure_future(self._error("", "Too many frames; slow down."))
        elif self.refused == FLOOD_CLOSE_AFTER:
            asyncio.ensure_future(self.close(code=4429))
        return False

    def _origin_allowed(self) -> bool:
        origin = dict(self.scope.get("headers", [])).get(b"origin")
        if origin is None:
            # Browsers always send Origin; only token clients (scripts) may omit it.
            return self.scope.get("auth_method") == "token"
        host = urlsplit(origin.decode("latin1")).hostname or ""
        return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)

    async def _presence(self, change) -> None:
        users = await database_sync_to_async(change)(
            self.room.pk, self.channel_name, self.scope["user"].username
        )
        await self.channel_layer.group_send(
            self.group,
            {
                "type": "room.event",
                "seq": None,
                "text": encode({"type": "presence", "users": users}),
            },
        )

    async def _presence_refresh(self) -> None:
        while True:
            await asyncio.sleep(TTL_SECONDS / 3)
            try:
                await database_sync_to_async(presence_join)(
                    self.room.pk, self.channel_name, self.scope["user"].username
                )
            except Exception:
                logger.warning("presence refresh failed", exc_info=True)
