"""Real processes for end-to-end tests: the local OpenAI and Linear servers, Celery
workers and beat, and uvicorn web processes, all against the test database and the
Redis that `make test` chose."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
# One folder per test run: runs side by side must not write into each other's logs.
LOG_DIR = ROOT / "test-output" / "logs" / str(os.getpid())


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def reached(request, *statuses: str, timeout: float = 30):
    """Wait until an agent request (a chat.models.Request) is in one of `statuses`."""

    def check() -> bool:
        request.refresh_from_db()
        return request.status in statuses

    wait_for(check, timeout=timeout, what=f"request in {statuses}")
    return request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a worker and its pool children)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(5)
        self.kill(signal.SIGKILL)  # leftovers of the group, if any

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _spawn(name: str, args: list[str], env: dict, log_name: str | None = None) -> Proc:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{log_name or name}.log"
    handle = log.open("w")
    popen = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(name, popen, log)


class Standin:
    """A local OpenAI or Linear server process, steered over its control endpoints."""

    def __init__(self, module: str, pattern: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = _spawn(module, [sys.executable, "-m", module, "--port", "0"], env)
        line = wait_for(
            lambda: re.search(pattern, self.proc.output()),
            timeout=20,
            what=f"{module} to listen",
        )
        self.url = line.group(1)
        self.base = re.sub(r"/(v1|graphql)$", "", self.url)

    def control(self, path: str, body: dict | None = None) -> dict:
        if body is None:
            response = requests.get(f"{self.base}/_control/{path}", timeout=10)
        else:
            response = requests.post(
                f"{self.base}/_control/{path}", json=body, timeout=10
            )
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.control("reset", {})


@pytest.fixture(scope="session")
def standins() -> Iterator[dict[str, Standin]]:
    servers = {
        "openai": Standin("standins.openai_server", r"listening on (http://\S+/v1)"),
        "linear": Standin(
            "standins.linear_server", r"listening on (http://\S+/graphql)"
        ),
    }
    yield servers
    for server in servers.values():
        server.proc.stop()


@pytest.fixture
def openai_standin(standins: dict[str, Standin]) -> Standin:
    standins["openai"].reset()
    standins["openai"].control("config", {"token_delay": 0.005})
    return standins["openai"]


@pytest.fixture
def linear_standin(standins: dict[str, Standin]) -> Standin:
    standins["linear"].reset()
    return standins["linear"]


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{db['NAME']}"


@dataclass
class Stack:
    """Processes of one test; everything they log lands in test-output/logs."""

    env: dict
    procs: list[Proc] = field(default_factory=list)

    def worker(
        self, name: str = "worker", concurrency: int = 2, **extra_env: str
    ) -> Proc:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "agentsite",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{name}-{os.getpid()}@%h",
        ]
        proc = _spawn(name, args, {**self.env, **extra_env})
        self.procs.append(proc)
        wait_for(
            lambda: "ready" in proc.output() or not proc.alive(),
            timeout=30,
            what=f"{name} to be ready",
        )
        assert proc.alive(), proc.output()
        return proc

    def beat(self) -> Proc:
        schedule = LOG_DIR / f"beat-{os.getpid()}-{len(self.procs)}.db"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "agentsite",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(schedule),
        ]
        proc = _spawn("beat", args, self.env)
        self.procs.append(proc)
        return proc

    def web(self, name: str = "web", **extra_env: str) -> str:
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            "agentsite.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            "--no-access-log",
        ]
        proc = _spawn(name, args, {**self.env, **extra_env})
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: _answers(url) or not proc.alive(),
            timeout=30,
            what=f"{name} to serve",
        )
        assert proc.alive(), proc.output()
        return url

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def stack(
    transactional_db, standins, openai_standin, linear_standin
) -> Iterator[Stack]:
    """A function-scoped set of processes on the test database; start what you need."""
    from django.conf import settings

    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_PREFIX": settings.REDIS_PREFIX,
        "OPENAI_BASE_URL": standins["openai"].url,
        "LINEAR_API_URL": standins["linear"].url,
        # Short leases and a fast sweep, so recovery from a killed worker is quick.
        "AGENT_LEASE_SECONDS": "3",
        "AGENT_SWEEP_SECONDS": "1",
        "AGENT_SWEEP_GRACE_SECONDS": "2",
    }
    # No keys (the stand-ins are used), and async safety on in the processes even
    # when a browser test had to lift it in this one for Playwright's event loop.
    for name in ("OPENAI_API_KEY", "LINEAR_API_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    stack = Stack(env=env)
    yield stack
    stack.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Let the test database be dropped at the end on PostgreSQL.

    Threads of the tests (channels' database_sync_to_async pool, racing threads)
    keep connections that the main thread cannot close; DROP DATABASE refuses while
    they live.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def effects(linear: Standin, op: str | None = None) -> list[dict]:
    found = linear.control("effects")["effects"]
    return [e for e in found if op is None or e["op"] == op]


def dump(value: object) -> str:
    return json.dumps(value, indent=1, default=str)
