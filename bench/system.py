"""The real system a benchmark run starts, and what it reads about it from /proc.

Redis (the configured one if it answers, else an embedded server), the local OpenAI
server with timestamped tokens, the local Linear server, a fresh database, and the
Procfile's own commands for web processes and workers, so the benchmark measures
what a deployment runs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
import requests

from stack.procfile import read_procfile
from stack.procs import die_with_parent, free_port, group_members, signal_group
from stack.redis import EmbeddedRedis, ensure_redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LISTENING = re.compile(r"listening on (\S+)")
# Zero delay unless a scenario sets one; `count to N` answers carry timestamps.
STANDIN = ["--port", "0", "--timestamp-tokens", "--token-delay", "0"]


class StartError(RuntimeError):
    """A process of the system did not come up."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after `timeout`."""
        signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and group_members(self.pid):
            time.sleep(0.05)
        signal_group(self.pid, signal.SIGKILL)
        self.popen.wait(5)


@dataclass
class System:
    """Everything one benchmark run started; `stop()` ends it in reverse order."""

    out_dir: Path
    say: Callable[[str], None]
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    redis: EmbeddedRedis | None = None
    drop_database: Callable[[], None] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    openai: Proc | None = None
    linear: Proc | None = None

    @property
    def log_dir(self) -> Path:
        return self.out_dir / "logs"

    def start(self, rooms: list[str]) -> None:
        """Redis, the stand-ins, the database with the benchmark's rooms."""
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.log_dir.mkdir(parents=True)
        asked = os.environ.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL
        url, self.redis = ensure_redis(asked, log=self.say)
        prefix = f"bench-{os.getpid()}-{secrets.token_hex(3)}"
        self.env = _base_env(url, prefix)
        self.env["DATABASE_URL"] = self._database()
        # The stand-ins boot while the database is migrated.
        python = [sys.executable, "-m"]
        self.openai = self.spawn(
            "openai", [*python, "standins.openai_server", *STANDIN]
        )
        self.linear = self.spawn(
            "linear", [*python, "standins.linear_server", "--port", "0"]
        )
        setup = self._run("setup", [sys.executable, "-m", "bench.setup_db", *rooms])
        self.tokens = json.loads(setup.strip().splitlines()[-1])
        for standin in (self.openai, self.linear):
            standin.url = self._wait_line(standin, LISTENING).group(1)
        self.env["OPENAI_BASE_URL"] = self.openai.url
        self.env["LINEAR_API_URL"] = self.linear.url

    def _database(self) -> str:
        asked = os.environ.get("DATABASE_URL", "").strip()
        if asked.startswith(("postgres://", "postgresql://")):
            return self._postgres(asked)
        path = self.out_dir / "bench.sqlite3"
        for stale in self.out_dir.glob("bench.sqlite3*"):
            stale.unlink()
        return f"sqlite:///{path}"

    def _postgres(self, url: str) -> str:
        """A fresh database next to the one `url` names, dropped after the run."""
        import psycopg

        parts = urlsplit(url)
        name = f"{parts.path.lstrip('/') or 'agentsite'}_bench_{os.getpid()}"
        admin = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        self.drop_database = drop
        self.say(f"database: PostgreSQL, fresh database {name}")
        return urlunsplit(parts._replace(path=f"/{name}"))

    # Processes -------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        log = self.log_dir / f"{name}.log"
        with log.open("w") as handle:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _wait_line(
        self, proc: Proc, pattern: re.Pattern, timeout: float = 30
    ) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := pattern.search(proc.output()):
                return match
            if not proc.alive():
                break
            time.sleep(0.05)
        raise StartError(
            f"{proc.name} did not start; its log:\n{proc.output()[-3000:]}"
        )

    def _run(self, name: str, argv: list[str]) -> str:
        done = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        (self.log_dir / f"{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StartError(f"{name} failed:\n{done.stdout}{done.stderr}"[-3000:])
        return done.stdout

    def procfile(self, name: str) -> str:
        return read_procfile(ROOT / "Procfile")[name]

    def web(self, name: str, app: str = "") -> Proc:
        return self.webs([name], app)[0]

    def webs(self, names: list[str], app: str = "") -> list[Proc]:
        """Web processes exactly as the Procfile runs them, booted side by side.

        `app` swaps the ASGI application (for the bare uvicorn baseline).
        """
        command = self.procfile("web")
        if app:
            command = command.replace("agentsite.asgi:application", app)
        procs = []
        for name in names:
            port = free_port()
            env = dict(self.env, PORT=str(port))
            proc = self.spawn(name, ["sh", "-c", f"exec {command}"], env)
            proc.url = f"http://127.0.0.1:{port}"
            procs.append(proc)
        for proc in procs:
            self.wait_web(proc)
        return procs

    def wait_web(self, proc: Proc) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.alive():
            if _answers(f"{proc.url}/healthz"):
                return
            time.sleep(0.1)
        raise StartError(f"{proc.name} did not serve; log:\n{proc.output()[-3000:]}")

    def worker(self, name: str, app: str = "agentsite", wait: bool = True) -> Proc:
        """A Celery worker with the Procfile's flags: one pool process per core."""
        command = self.procfile("worker").replace("-A agentsite", f"-A {app}")
        env = dict(self.env, WORKER_CONCURRENCY=str(os.cpu_count() or 2))
        argv = ["sh", "-c", f"exec {command} -n {name}-{os.getpid()}@%h"]
        proc = self.spawn(name, argv, env)
        if wait:
            self.wait_worker(proc)
        return proc

    def wait_worker(self, proc: Proc) -> None:
        self._wait_line(proc, re.compile(r"\bready\b()"), timeout=60)

    def relay(self, name: str, channel: str) -> Proc:
        argv = [
            sys.executable,
            "-m",
            "bench.limit",
            "relay",
            "--redis",
            self.env["REDIS_URL"],
            "--channel",
            channel,
        ]
        proc = self.spawn(name, argv)
        proc.url = self._wait_line(proc, LISTENING).group(1)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self.drop_database is not None:
            self.drop_database()
        else:
            for path in self.out_dir.glob("bench.sqlite3*"):
                path.unlink()
        if self.redis is not None:
            self.redis.stop()
        elif self.env:
            self._forget_keys()

    def _forget_keys(self) -> None:
        """Delete this run's keys from a Redis that others use too."""
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        keys = list(client.scan_iter(match=f"{self.env['REDIS_PREFIX']}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def dismiss(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)


def _base_env(redis_url: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    for secret in ("OPENAI_API_KEY", "LINEAR_API_KEY"):
        env.pop(secret, None)
    scripts = str(Path(sys.executable).parent)
    env.update(
        PATH=os.pathsep.join([scripts, env.get("PATH", os.defpath)]),
        PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url,
        REDIS_PREFIX=prefix,
        # Production settings (no query log, no browsable API), over plain http.
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(32),
        SECURE_SSL_REDIRECT="0",
        # The benchmark posts far more than a person would.
        API_THROTTLE_USER="1000000/min",
        API_THROTTLE_ANON="1000000/min",
    )
    return env


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
