"""How many room sockets one user holds open, over every web process (contract:
"Limits", `WS_MAX_SOCKETS_PER_USER`).

One Redis sorted set per user, a member per open socket scored by when it expires,
as presence does: the web process holding a socket renews it with its presence
heartbeat (chat.hub), and removes it when the socket closes. A process killed
without closing its sockets leaves entries that nobody renews, so they stop counting
`WS_SOCKET_TTL_SECONDS` later: no counter to leak.
"""

import logging
import time
from collections.abc import Iterable

from django.conf import settings
from redis.exceptions import RedisError

from .redis_client import redis_client, redis_key

logger = logging.getLogger(__name__)

# Forget the dead entries, count the live ones, add this one if there is room: in one
# script, so two sockets opening at once on two processes cannot both take the last
# slot.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
return 1
"""


def socket_ttl() -> int:
    return settings.WS_SOCKET_TTL_SECONDS


# What the slots count: room sockets (WS_MAX_SOCKETS_PER_USER), or open AG-UI streams
# (AGUI_MAX_STREAMS_PER_USER), each kind a set of its own per user.
SOCKETS = "sockets"
AGUI_STREAMS = "agui-streams"


def _key(user_id: int, kind: str = SOCKETS) -> str:
    return redis_key(kind, user_id)


def _all_key(kind: str = SOCKETS) -> str:
    """Every open slot of `kind` over all users (the WebSocket gauge of /metrics)."""
    return redis_key(kind, "all")


def _limit(kind: str) -> int:
    if kind == AGUI_STREAMS:
        return int(settings.AGUI_MAX_STREAMS_PER_USER)
    return int(settings.WS_MAX_SOCKETS_PER_USER)


def socket_admit(*, user_id: int, connection: str, kind: str = SOCKETS) -> bool:
    """Take one of the user's slots of `kind` for `connection`; False when all are
    held.

    Raises RedisError when Redis does not answer (the caller refuses the socket).
    """
    now = time.time()
    admitted = redis_client().eval(
        _ADMIT,
        2,
        _key(user_id, kind),
        _all_key(kind),
        now,
        now + socket_ttl(),
        _limit(kind),
        connection,
        socket_ttl() * 2,
    )
    return bool(admitted)


def socket_release(*, user_id: int, connection: str, kind: str = SOCKETS) -> None:
    """Give the slot back as the socket closes (if Redis is away, it expires)."""
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            pipe.zrem(_key(user_id, kind), connection)
            pipe.zrem(_all_key(kind), connection)
            pipe.execute()
    except RedisError:
        logger.warning("socket cap: could not release a slot", exc_info=True)


def sockets_renew(connections: Iterable[tuple[int, str]], kind: str = SOCKETS) -> None:
    """Renew the slots of sockets still open here (user id, connection), in one
    round trip. Only existing entries are renewed (XX): a socket released meanwhile
    is not brought back."""
    deadline = time.time() + socket_ttl()
    with redis_client().pipeline(transaction=False) as pipe:
        for user_id, connection in connections:
            pipe.zadd(_key(user_id, kind), {connection: deadline}, xx=True)
            pipe.expire(_key(user_id, kind), socket_ttl() * 2)
            pipe.zadd(_all_key(kind), {connection: deadline}, xx=True)
        pipe.execute()


def sockets_open() -> int:
    """Room sockets open now over every web process (those of a process killed
    without closing them stop counting when their renewal lapses)."""
    now = time.time()
    with redis_client().pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(_all_key(), "-inf", now)
        pipe.zcard(_all_key())
        return int(pipe.execute()[1])
