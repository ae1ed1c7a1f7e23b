"""The run's own PostgreSQL cluster and Redis server, which it crashes and restarts.

Never the machine's shared servers: a cluster made with initdb in a temporary
directory, on a port of its own (as the `postgres` user when we are root, since
PostgreSQL refuses to run as root), and a redis-server on a port of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from stack.procs import free_port
from stack.redis import redis_answers, server_argv
from stack.supervisor import Proc, StartError

PG_BIN = Path(os.environ.get("CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "chaos"


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    """A cluster in a fresh temporary directory of its own (the `postgres` user must
    reach it, which a run's output directory may not allow), removed at `stop`;
    its log is copied to `log_to`."""

    def __init__(self, log_to: Path) -> None:
        dir = Path(tempfile.mkdtemp(prefix="agentsite-chaos-pg-"))
        self.dir, self.log_to = dir, log_to
        self.data = dir / "pgdata"
        self.port = free_port()
        self.log = dir / "postgres.log"
        dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(dir, "postgres", "postgres")
        self._run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres"]
            + ["-A", "trust", "--no-sync", "-E", "UTF8"]
        )
        self.start()
        self._run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port)]
            + ["-U", "postgres", DATABASE]
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            _as_postgres(argv), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise StartError(f"{argv[0]} failed: {done.stdout}{done.stderr}"[-2000:])

    def start(self) -> None:
        # fsync off: a crash here is the server's, never the machine's, so what
        # reached the kernel survives it. synchronous_commit stays on: a commit
        # answered to a client (a 202 to a trigger's sender) must survive the
        # crash, as in production; off, the last ones vanish with the WAL buffers.
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options]
            + ["-l", str(self.log), "-w", "-t", "60", "start"]
        )

    def crash(self) -> None:
        """Stop at once, as a crash would (no shutdown checkpoint: recovery at the
        next start); every connection is cut."""
        self._run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate"]
            + ["-w", "stop"]
        )

    def stop(self) -> None:
        with contextlib.suppress(StartError):
            self._run(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w"]
                + ["stop"]
            )
        self.log_to.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(self.log, self.log_to)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self, dir: Path) -> None:
        dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = Proc(
            "redis", server_argv(self.port, dir), os.environ, dir / "redis.log"
        )
        self.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not redis_answers(self.url, timeout=0.2):
            if time.monotonic() > deadline:
                raise StartError(f"redis on {self.port} does not answer")
            time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL: everything in it (queued tasks, locks, flags) is gone."""
        self.proc.kill()
        assert self.proc.popen is not None
        self.proc.popen.wait(10)

    def start(self) -> None:
        self.proc.start()
        self.wait()

    def stop(self) -> None:
        self.proc.stop()
