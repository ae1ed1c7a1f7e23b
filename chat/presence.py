"""Who is connected to a room, across every web process, kept in one Redis sorted set.

Each connection is a member scored by when it expires; each web process refreshes its
connections while they live (chat.hub), so a process that dies takes its watchers out
within the TTL.
"""

import time
from typing import cast

from .redis_client import redis_client, redis_key

TTL_SECONDS = 90


def _key(room_id: int) -> str:
    return redis_key("presence", room_id)


def _member(connection: str, username: str) -> str:
    return f"{connection}|{username}"


def presence_apply(
    joined: dict[int, dict[str, str]], left: dict[int, dict[str, str]]
) -> dict[int, list[str]]:
    """Record connections that joined (or are still there) and left, per room, in one
    round trip; answer who is now in each room that changed."""
    rooms = sorted(set(joined) | set(left))
    if not rooms:
        return {}
    deadline, listed = time.time() + TTL_SECONDS, {}
    with redis_client().pipeline(transaction=False) as pipe:
        for room_id in rooms:
            key = _key(room_id)
            if joined.get(room_id):
                entries = joined[room_id].items()
                pipe.zadd(key, {_member(c, u): deadline for c, u in entries})
                pipe.expire(key, TTL_SECONDS * 2)
            if left.get(room_id):
                pipe.zrem(key, *(_member(c, u) for c, u in left[room_id].items()))
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.zrange(key, 0, -1)
            listed[room_id] = len(pipe) - 1
        replies = pipe.execute()
    return {room_id: _usernames(replies[at]) for room_id, at in listed.items()}


def presence_list(room_id: int) -> list[str]:
    client = redis_client()
    client.zremrangebyscore(_key(room_id), "-inf", time.time())
    # The client decodes replies (decode_responses=True): a list of str.
    return _usernames(cast(list[str], client.zrange(_key(room_id), 0, -1)))


def _usernames(members: list[str]) -> list[str]:
    return sorted({member.rpartition("|")[2] for member in members})
