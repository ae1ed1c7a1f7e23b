"""The process's synchronous Redis client and the key names the project uses."""

from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    # redis-py pools notice a fork and reconnect, so one client per process is safe
    # under Celery's prefork pool.
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
        decode_responses=True,
    )


def redis_key(*parts: object) -> str:
    return ":".join([settings.REDIS_NAMESPACE, *map(str, parts)])
