"""The real system a benchmark run starts, and what it reads about it from /proc.

Redis (the configured one if it answers, else an embedded server), the local OpenAI
server with timestamped tokens, the local Linear server, a fresh database, and the
Procfile's own commands for web processes and workers, so the benchmark measures
what a deployment runs; all started by the supervisor `make run` uses.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from stack.procs import free_port
from stack.redis import EmbeddedRedis, ensure_redis
from stack.supervisor import ROOT, WORKER_READY, Proc, StartError, child_env, stop_all

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Zero delay unless a scenario sets one; `count to N` answers carry timestamps.
TIMESTAMPED = ["--timestamp-tokens", "--token-delay", "0"]
START_TIMEOUT = 60.0


@dataclass
class System:
    """Everything one benchmark run started; `stop()` ends it: the processes all
    at once, then the database, then Redis."""

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
        self.env = bench_env(url, prefix)
        self.env["DATABASE_URL"] = self._database()
        # The stand-ins boot while the database is migrated.
        self.openai = self.add(
            Proc.standin("openai", self.env, self.log("openai"), args=TIMESTAMPED)
        )
        self.linear = self.add(Proc.standin("linear", self.env, self.log("linear")))
        setup = self._run("setup", [sys.executable, "-m", "bench.setup_db", *rooms])
        self._run(
            "collectstatic",
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        )
        self.tokens = json.loads(setup.strip().splitlines()[-1])
        for standin in (self.openai, self.linear):
            standin.wait_listening()
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

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def add(self, proc: Proc) -> Proc:
        """Keep `proc` to stop with the rest."""
        self.procs.append(proc)
        return proc

    def _run(self, name: str, argv: list[str]) -> str:
        done = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        self.log(name).write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StartError(f"{name} failed:\n{done.stdout}{done.stderr}"[-3000:])
        return done.stdout

    def web(self, name: str, app: str = "") -> Proc:
        return self.webs([name], app)[0]

    def webs(
        self, names: list[str], app: str = "", env: dict[str, str] | None = None
    ) -> list[Proc]:
        """Web processes exactly as the Procfile runs them, booted side by side.

        `app` swaps the ASGI application (for the bare uvicorn baseline); `env`
        overrides some of the run's settings.
        """
        swap = {"agentsite.asgi:application": app} if app else None
        procs = []
        for name in names:
            log, port = self.log(name), free_port()
            proc = Proc.procfile(
                "web", {**self.env, **(env or {})}, log, name=name, port=port, swap=swap
            )
            procs.append(self.add(proc))
        for proc in procs:
            proc.wait_serving(START_TIMEOUT)
        return procs

    def worker(self, name: str, app: str = "agentsite", wait: bool = True) -> Proc:
        """A Celery worker exactly as the Procfile runs it (its pool, its threads)."""
        env = dict(self.env)
        node, swap = ["-n", f"{name}-{os.getpid()}@%h"], {"agentsite": app}
        proc = Proc.procfile(
            "worker", env, self.log(name), name=name, args=node, swap=swap
        )
        self.add(proc)
        if wait:
            self.wait_worker(proc)
        return proc

    def wait_worker(self, proc: Proc) -> None:
        proc.wait_line(WORKER_READY, "say it was ready", START_TIMEOUT)

    def crash(self, workers: list[Proc]) -> None:
        """SIGKILL the workers (their turns in flight), then start them again."""
        for proc in workers:
            proc.kill()
        for proc in workers:
            assert proc.popen is not None
            proc.popen.wait(30)
            ready = len(WORKER_READY.findall(proc.output()))
            proc.start()
            proc.wait_until(
                lambda p=proc, n=ready: len(WORKER_READY.findall(p.output())) > n,
                "say it was ready again",
                START_TIMEOUT,
            )

    def beat(self) -> Proc:
        """Celery beat as the Procfile runs it: the sweep that requeues lost work."""
        env = {**self.env, "BEAT_SCHEDULE_FILE": str(self.log_dir / "beat-schedule")}
        return self.add(Proc.procfile("beat", env, self.log("beat")))

    def relay(self, name: str, channel: str) -> Proc:
        argv = [sys.executable, "-m", "bench.limit", "relay"]
        argv += ["--redis", self.env["REDIS_URL"], "--channel", channel]
        proc = self.add(Proc(name, argv, self.env, self.log(name)))
        proc.wait_listening()
        return proc

    def stop(self) -> None:
        stop_all(reversed(self.procs))
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


def bench_env(redis_url: str, prefix: str) -> dict[str, str]:
    # The supervisor's child env: the watcher clients are started with it too.
    env = child_env(os.environ)
    for secret in ("OPENAI_API_KEY", "LINEAR_API_KEY"):
        env.pop(secret, None)
    env.update(
        REDIS_URL=redis_url,
        REDIS_PREFIX=prefix,
        # Production settings (no query log, no browsable API), over plain http.
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(32),
        SECURE_SSL_REDIRECT="0",
        # One uvicorn process per web (the concurrent turns start two of them).
        WEB_CONCURRENCY="1",
        # The benchmark posts far more than a person would.
        API_THROTTLE_USER="1000000/min",
        API_THROTTLE_ANON="1000000/min",
        # One bench user queues hundreds of turns (throughput, concurrent turns); the
        # per-user cap is measured on its own, with its own users.
        AGENT_MAX_ACTIVE_PER_USER="100000",
        # One bench user watches with a thousand sockets (fan-out), and spends far
        # more model tokens, and parks more actions, than a person's day.
        WS_MAX_SOCKETS_PER_USER="1000000",
        AGENT_DAILY_TOKENS_PER_USER="0",
        AGENT_MAX_PENDING_PER_USER="1000000",
    )
    return env
