"""Who is connected to a room, across every web process, kept in one Redis sorted set.

Each connection is a member scored by when it expires; connections refresh it while
they live, so a web process that dies takes its watchers out within the TTL.
"""

import time

from . import redis as rds

TTL_SECONDS = 90


def _key(room_id: int) -> str:
    return rds.key("presence", room_id)


def presence_join(room_id: int, connection: str, username: str) -> list[str]:
    with rds.client().pipeline() as pipe:
        pipe.zadd(
            _key(room_id), {f"{connection}|{username}": time.time() + TTL_SECONDS}
        )
        pipe.expire(_key(room_id), TTL_SECONDS * 2)
        pipe.execute()
    return presence_list(room_id)


def presence_leave(room_id: int, connection: str, username: str) -> list[str]:
    rds.client().zrem(_key(room_id), f"{connection}|{username}")
    return presence_list(room_id)


def presence_list(room_id: int) -> list[str]:
    client = rds.client()
    client.zremrangebyscore(_key(room_id), "-inf", time.time())
    members = client.zrange(_key(room_id), 0, -1)
    return sorted({member.rpartition("|")[2] for member in members})
