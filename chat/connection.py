"""The room socket's connection policy: who may open one, and how fast it may send.

The consumer asks here before it accepts a socket (signed in, from this site, within
the user's WS_MAX_SOCKETS_PER_USER) and before it reads each frame (a token bucket
per connection), so that it reads as a frame protocol. Who the user is was settled
by chat.auth's middleware (the session, or `Authorization: Token` for scripts); this
module reads its verdict from the scope.
"""

import asyncio
import enum
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host
from redis.exceptions import RedisError

from .socket_cap import socket_admit, socket_release

logger = logging.getLogger(__name__)

# Close codes (PROTOCOL.md): the handshake's refusals, then the socket's endings.
UNAUTHENTICATED = 4401
FORBIDDEN = 4403  # a foreign Origin, or the user left the room
NOT_FOUND = 4404
FELL_BEHIND = 4408
TOO_MANY = 4429  # the user's sockets, or a flood of frames
SERVER_ERROR = 1011

MAX_FRAME_BYTES = 64 * 1024
# Token bucket per connection: a steady 10 frames/s, bursts of 30.
RATE_PER_SECOND = 10.0
BURST = 30.0
# Past this many refused frames within the window the client is not listening: close.
FLOOD_CLOSE_AFTER = 300
FLOOD_WINDOW_SECONDS = 10.0

DEFAULT_PORTS = {"http": 80, "https": 443}


def handshake_refusal(scope: Mapping[str, Any]) -> int | None:
    """The code that refuses this handshake before its room is looked up: 4401 for
    an anonymous user, 4403 for a foreign Origin; None to go on."""
    if not scope["user"].is_authenticated:
        return UNAUTHENTICATED
    if not origin_allowed(scope):
        return FORBIDDEN
    return None


def origin_allowed(scope: Mapping[str, Any]) -> bool:
    """A browser's socket must come from this site: the host, scheme and port this
    socket was reached on (or a CSRF_TRUSTED_ORIGINS origin). Another host in
    ALLOWED_HOSTS (a sibling subdomain) is another site."""
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin")
    if origin is None:
        # Browsers always send Origin; only token clients (scripts) may omit it.
        return bool(scope.get("auth_method") == "token")
    text = origin.decode("latin1")
    if text in settings.CSRF_TRUSTED_ORIGINS:
        return True
    scheme = "https" if _secure(scope, headers) else "http"
    origin_at = _origin_at(text, scheme)
    return origin_at is not None and origin_at == _host_port(headers, scheme)


def _origin_at(origin: str, scheme: str) -> tuple[str, int] | None:
    """The host and port an Origin names, if it is an allowed host on `scheme`."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if not host or not validate_host(host, settings.ALLOWED_HOSTS):
        return None
    if parts.scheme != scheme:
        return None
    return host.rstrip("."), port or DEFAULT_PORTS[scheme]


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


def _secure(scope: Mapping[str, Any], headers: dict[bytes, bytes]) -> bool:
    if scope.get("scheme") == "wss":
        return True
    # Behind a proxy that ends TLS, as Django decides it for HTTP requests.
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower()
        return headers.get(name.encode(), b"").decode("latin1") == proxy[1]
    return False


class SocketSlot:
    """One of the user's WS_MAX_SOCKETS_PER_USER slots (chat.socket_cap), held from
    the handshake until the socket closes."""

    def __init__(self, *, user_id: int, connection: str) -> None:
        self.user_id, self.connection = user_id, connection
        self.held = False

    async def take(self) -> int | None:
        """Take the slot, or say the code that refuses the handshake: 4429 when the
        user holds them all, 1011 when Redis does not answer."""
        try:
            self.held = await asyncio.to_thread(
                socket_admit, user_id=self.user_id, connection=self.connection
            )
        except RedisError:
            logger.warning("room consumer: socket cap unreadable", exc_info=True)
            return SERVER_ERROR
        return None if self.held else TOO_MANY

    async def release(self) -> None:
        """Give the slot back, once; a slot never taken gives nothing back."""
        if self.held:
            self.held = False
            await asyncio.to_thread(
                socket_release, user_id=self.user_id, connection=self.connection
            )


class Verdict(enum.Enum):
    """What to do with a client frame, by the throttle."""

    READ = "read"
    WARN = "warn"  # the first refused in a while: drop it and tell the client
    DROP = "drop"
    CLOSE = "close"  # a flood: drop it and close the socket (4429)


class FrameThrottle:
    """A token bucket per connection: RATE_PER_SECOND frames, bursts of BURST.

    Tokens refill only while the consumer waits for the client, not while it
    handles a frame (`handled`): a frame that waited in the socket's buffer behind
    a slow one arrived while the bucket was not refilling. Charged by the server's
    clock alone, a bucket lets more of a flood in the slower the server drains it
    (a server handling fewer than RATE_PER_SECOND frames a second would never
    refuse one).

    A client refused FLOOD_CLOSE_AFTER times within FLOOD_WINDOW_SECONDS is not
    listening to the warning, and is let go.
    """

    def __init__(self) -> None:
        now = time.monotonic()
        self.tokens, self.refill_at = BURST, now
        self.refused, self.refused_since = 0, now

    def take(self) -> Verdict:
        """Spend a token on a frame that just arrived, if there is one."""
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.refill_at) * RATE_PER_SECOND)
        self.refill_at = now
        if now - self.refused_since > FLOOD_WINDOW_SECONDS:
            self.refused, self.refused_since = 0, now
        if self.tokens >= 1:
            self.tokens -= 1
            return Verdict.READ
        self.refused += 1
        if self.refused == 1:
            return Verdict.WARN
        if self.refused == FLOOD_CLOSE_AFTER:
            return Verdict.CLOSE
        return Verdict.DROP

    def handled(self) -> None:
        """The frame read last is done with: the time it took refills nothing."""
        self.refill_at = time.monotonic()
