"""Django's Redis cache with one set of connections per process.

Django keeps a cache object per thread and runs each ASGI request's sync code on a
new thread, so the stock backend opened a new Redis connection for every request's
throttle check (`make bench`: a sixth of the POST's time). redis-py's pools are
thread-safe; this backend shares one client among the threads of a process.
"""

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[tuple[tuple[str, ...], str], RedisCacheClient] = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    # Set by RedisCache.__init__; the stubs leave these private attributes out.
    _servers: list[str]
    _options: dict[str, Any]
    _class: type[RedisCacheClient]

    @property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        client = _clients.get(key)
        if client is None:
            with _lock:
                client = _clients.setdefault(
                    key, self._class(self._servers, **self._options)
                )
        return client
