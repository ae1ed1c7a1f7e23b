"""Choosing a Redis: the configured one when it answers, else an embedded one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis

from stack.redis import ensure_redis, redis_answers

DEAD_URL = "redis://127.0.0.1:1"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_dead_url_starts_an_embedded_server_that_stop_removes(tmp_path: Path):
    url, server = ensure_redis(DEAD_URL, dir=tmp_path / "redis")
    assert server is not None
    try:
        assert url == server.url != DEAD_URL
        assert redis_answers(url)
        client = redis.Redis.from_url(url)
        client.set("stack-test", "1")
        assert client.get("stack-test") == b"1"
        client.close()
    finally:
        server.stop()
    assert not _exists(server.pid)
    assert not redis_answers(url)


def test_embedded_server_in_a_temporary_dir_removes_it():
    url, server = ensure_redis(DEAD_URL)
    assert server is not None and server.dir.is_dir()
    server.stop()
    server.stop()  # a second stop is harmless
    assert not server.dir.exists()
    assert not _exists(server.pid)


def test_live_url_is_used_as_is(redis_url: str, capsys):
    url, server = ensure_redis(redis_url)
    assert (url, server) == (redis_url, None)
    assert "using" in capsys.readouterr().out


def test_redis_answers_is_false_for_a_dead_url_within_its_timeout():
    started = time.monotonic()
    assert redis_answers(DEAD_URL, timeout=0.5) is False
    assert time.monotonic() - started < 2
