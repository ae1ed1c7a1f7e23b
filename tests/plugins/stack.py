"""Real processes for end-to-end tests: the local OpenAI, Linear, GitHub and MCP
servers, and the Procfile's web, worker and beat processes, all against the test
database and the Redis that `make test` chose, started by the supervisor `make run`
uses."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from stack.procs import free_port
from stack.supervisor import WORKER_READY, Proc, answers, stop_all

# Plain `pytest` too gets development settings (settings default DEBUG to off); set
# before pytest-django imports them. The processes below inherit it.
os.environ.setdefault("DEBUG", "1")
# Every test client logs in from 127.0.0.1: tests of wrong passwords must not lock out
# the rest of the run. The lockout's own tests set a small limit.
os.environ.setdefault("LOGIN_FAILURE_LIMIT", "100000")
# The GitHub pack is on in every test, as in `make run`, against the local stand-in
# (the `github_standin` fixture points this process at it).
os.environ.setdefault("GITHUB_TOKEN", "test-github-token")
os.environ.setdefault("GITHUB_REPOSITORY", "demo/agentsite")
# A prefix of the run's own, as `python -m stack test` sets it: the keys and queues a
# plain `pytest` creates (and empties) are then not those of a `make run` on the same
# database and Redis.
os.environ.setdefault("REDIS_PREFIX", f"agentsite-test-{os.getpid()}")
# Each pytest-xdist worker (`-n 2`) has a test database of its own (pytest-django
# names it), and here Redis names of its own: no worker flushes another's keys.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["REDIS_PREFIX"] += f"-{worker}"

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

    try:
        wait_for(check, timeout=timeout, what=f"request in {statuses}")
    except AssertionError as timed_out:
        # Say where it stood: a turn that ended otherwise, or never started.
        said = [(m.role, m.content[:200]) for m in request.messages.order_by("created")]
        actions = list(request.actions.values_list("tool", "status", "error"))
        raise AssertionError(
            f"{timed_out}; it is {request.status} (error {request.error!r}, step "
            f"{request.step}, attempts {request.attempts}); messages {said}; "
            f"actions {actions}"
        ) from None
    return request


class Standin:
    """A local OpenAI or Linear server process, steered over its control endpoints."""

    def __init__(self, api: str) -> None:
        self.proc = Proc.standin(api, os.environ, LOG_DIR / f"{api}.log")
        self.url = self.proc.wait_listening(timeout=20)
        self.base = re.sub(r"/(v1|graphql|mcp)$", "", self.url)

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
    servers = {api: Standin(api) for api in ("openai", "linear", "github", "mcp")}
    yield servers
    stop_all(server.proc for server in servers.values())


@pytest.fixture
def openai_standin(standins: dict[str, Standin]) -> Standin:
    standins["openai"].reset()
    standins["openai"].control("config", {"token_delay": 0.005})
    return standins["openai"]


@pytest.fixture
def linear_standin(standins: dict[str, Standin]) -> Standin:
    standins["linear"].reset()
    return standins["linear"]


@pytest.fixture
def github_standin(standins: dict[str, Standin], settings) -> Standin:
    standins["github"].reset()
    # Previews of edited calls are read in this process too.
    settings.GITHUB_API_URL = standins["github"].url
    return standins["github"]


@pytest.fixture
def mcp_standin(standins: dict[str, Standin]) -> Standin:
    standins["mcp"].reset()
    return standins["mcp"]


def mcp_servers(*servers: dict) -> str:
    """`AGENT_MCP_SERVERS` for a worker: `stack.worker(AGENT_MCP_SERVERS=...)`."""
    return json.dumps(list(servers))


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{db['NAME']}"


class Kept:
    """Processes kept running from one test to the next of the same module.

    A test that asks for a web process or a worker (same name, same env) gets a kept
    one when there is one, marked so that its earlier output satisfies no wait: a
    start costs seconds, a reuse a request or a few control messages. Between tests
    a kept worker consumes nothing (Celery's `cancel_consumer`), so a test that did
    not ask for it never has its tasks run by it; it is kept only once it holds no
    task of the test before (none running, reserved or scheduled), else stopped. A
    kept web process holds no socket (the test's clients closed theirs) and caches
    content type ids, which `_content_types_as_created` keeps true across the flush
    between tests. The processes of a test that failed or killed any of them are all
    stopped: the next test gets fresh ones. Never kept: beat (its sweep would act in
    the next test, which may not want one), workers with MCP servers (`_keepable`).
    """

    def __init__(self) -> None:
        self.procs: dict[tuple, Proc] = {}

    def take(self, key: tuple) -> Proc | None:
        """The kept process of `key`, if it is alive; one of the same kind and name
        but another env is stopped (its node name and log are those of the new)."""
        for other in [k for k in self.procs if k[:2] == key[:2] and k != key]:
            self.procs.pop(other).stop()
        proc = self.procs.pop(key, None)
        if proc is not None and not proc.alive():
            proc.stop()
            return None
        return proc

    def keep(self, key: tuple, proc: Proc) -> None:
        self.procs[key] = proc

    def stop(self) -> None:
        stop_all(self.procs.values())
        self.procs.clear()


def _control(node: str):
    """Celery's remote control, and its inspection of one worker node (which
    alone answers, so a call returns as soon as it did)."""
    from agentsite.celery import app

    return app.control, app.control.inspect(destination=[node], timeout=3, limit=1)


def _consuming(node: str) -> set[str] | None:
    """The queues `node` consumes from, or None when it does not answer."""
    _, inspect = _control(node)
    replies = inspect.active_queues() or {}
    if node not in replies:
        return None
    return {queue["name"] for queue in replies[node]}


def _holds_tasks(node: str) -> bool:
    """Whether `node` runs, holds or has scheduled a task (or does not answer)."""
    _, inspect = _control(node)
    for held in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        if not held or node not in held or held[node]:
            return True
    return False


def _park(proc: Proc) -> bool:
    """Stop the worker consuming; whether it did and holds no task of the test."""
    control, _ = _control(node := _node(proc))
    queues = _consuming(node)
    if not queues:
        return False
    proc.queues = queues  # type: ignore[attr-defined]
    for queue in sorted(queues):
        control.cancel_consumer(queue, destination=[node], reply=True, limit=1)
    try:
        wait_for(lambda: _consuming(node) == set(), timeout=5, what="it to stop")
        wait_for(lambda: not _holds_tasks(node), timeout=5, what="its last tasks")
    except AssertionError:
        return False
    return True


def _resume(proc: Proc) -> bool:
    """Let a parked worker consume again; whether it does, from its queues."""
    control, _ = _control(node := _node(proc))
    queues = getattr(proc, "queues", set())
    for queue in sorted(queues):
        control.add_consumer(queue, destination=[node], reply=True, limit=1)
    try:
        wait_for(lambda: _consuming(node) == queues, timeout=5, what="it to consume")
    except AssertionError:
        return False
    return True


def _controllable(env: dict) -> bool:
    """Whether a worker started with `env` hears this process's control messages:
    one on a Redis or namespace of its own (a test's second deployment) does not."""
    from django.conf import settings

    return (env.get("REDIS_URL"), env.get("REDIS_NAMESPACE")) == (
        settings.REDIS_URL,
        settings.REDIS_NAMESPACE,
    )


def _keepable(env: dict) -> bool:
    """Whether a worker started with `env` holds nothing of one test that the next
    one's flushed database contradicts: one with MCP servers lists their tools into
    the database once, at its start."""
    return not env.get("AGENT_MCP_SERVERS")


# What uvicorn prints once it listens, or when its port was taken.
UVICORN_BOUND = re.compile(
    r"(Uvicorn running on )|error while attempting to bind|address already in use"
)


def _node(proc: Proc) -> str:
    """A worker's node name, as Celery expands its `-n` (`%h`: the host name)."""
    return proc.argv[proc.argv.index("-n") + 1].replace("%h", socket.gethostname())


@dataclass
class Stack:
    """Processes of one test; everything they log lands in test-output/logs.

    Each is a process type of the Procfile, its command line the Procfile's: what a
    test varies goes in through the variables the Procfile reads (and a worker's
    node name, appended). Workers may come from the module's `Kept` ones, and go
    back there after the test.
    """

    env: dict
    kept: Kept | None = None
    procs: list[Proc] = field(default_factory=list)
    keys: dict[int, tuple] = field(default_factory=dict)

    def _start(
        self,
        kind: str,
        name: str,
        env: dict,
        port: int | None = None,
        args: Sequence[str] = (),
    ) -> Proc:
        log = LOG_DIR / f"{name}.log"
        proc = Proc.procfile(kind, env, log, name=name, port=port, args=args)
        self.procs.append(proc)
        return proc

    def _reuse(self, key: tuple) -> Proc | None:
        proc = self.kept.take(key) if self.kept is not None else None
        if proc is not None:
            proc.mark()
            self.procs.append(proc)
        return proc

    def worker(
        self, name: str = "worker", concurrency: int = 2, **extra_env: str
    ) -> Proc:
        env = {**self.env, **extra_env, "WORKER_CONCURRENCY": str(concurrency)}
        # A node name of its own: two workers of one test are two nodes.
        node = f"{name}-{os.getpid()}@%h"
        key = ("worker", name, tuple(sorted(env.items())))
        proc = self._reuse(key)
        if proc is not None and not _resume(proc):
            self.procs.remove(proc)
            proc.stop()
            proc = None
        if proc is None:
            proc = self._start("worker", name, env, args=["-n", node])
            proc.wait_line(WORKER_READY, "say it was ready", timeout=30)
        assert proc.alive(), proc.output()
        if _controllable(env) and _keepable(env):
            self.keys[id(proc)] = key
        return proc

    def beat(self) -> Proc:
        schedule = LOG_DIR / f"beat-{os.getpid()}-{len(self.procs)}.db"
        env = {**self.env, "BEAT_SCHEDULE_FILE": str(schedule)}
        return self._start("beat", "beat", env)

    def web(self, name: str = "web", **extra_env: str) -> str:
        env = {**self.env, **extra_env}
        key = ("web", name, tuple(sorted(env.items())))
        proc = self._reuse(key)
        if proc is not None and not answers(f"{proc.url}/healthz"):
            self.procs.remove(proc)
            proc.stop()
            proc = None
        if proc is None:
            proc = self._start_web(name, env)
        self.keys[id(proc)] = key
        return proc.url

    def _start_web(self, name: str, env: dict) -> Proc:
        # The kernel names a free port, but nothing holds it until uvicorn binds it:
        # a process of a parallel run (`-n 2`) may take it first. This one then says
        # so and ends (and the other may be what answers there): another port.
        for _ in range(3):
            proc = self._start("web", name, env, port=free_port())
            bound = proc.wait_line(UVICORN_BOUND, "bind its port", timeout=30)
            if bound.group(1) is not None:
                break
            self.procs.remove(proc)
            proc.stop()
        proc.wait_serving(timeout=30)
        assert proc.alive(), proc.output()
        return proc

    def stop(self, keep: bool = False) -> None:
        """Stop the processes, or with `keep` hand what may be kept to `kept`."""
        kept = self.kept
        if not keep or kept is None or not all(p.alive() for p in self.procs):
            stop_all(self.procs)
            return
        stopping = []
        for proc in self.procs:
            key = self.keys.get(id(proc))
            if key is None or (key[0] == "worker" and not _park(proc)):
                stopping.append(proc)
            else:
                kept.keep(key, proc)
        stop_all(stopping)


@pytest.fixture(scope="module")
def kept_processes() -> Iterator[Kept]:
    kept = Kept()
    yield kept
    kept.stop()


ContentTypeRows = tuple[list[tuple], list[tuple]]


def _content_type_rows() -> ContentTypeRows:
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    types = ContentType.objects.order_by("id")
    return (
        list(types.values_list("id", "app_label", "model")),
        list(
            Permission.objects.order_by("id").values_list(
                "id", "content_type_id", "codename", "name"
            )
        ),
    )


@pytest.fixture(scope="session")
def _content_types_at_start(django_db_setup, django_db_blocker) -> ContentTypeRows:
    with django_db_blocker.unblock():
        return _content_type_rows()


def _put_back(rows: ContentTypeRows) -> None:
    """Content types and permissions under the ids they had when the test database
    was made, if they are not (the flush after a transactional test makes them
    afresh, under new ids)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django.core.management.color import no_style
    from django.db import connection, transaction

    if _content_type_rows() == rows:
        return
    types, permissions = rows
    with transaction.atomic():
        # Nothing else is left to refer to them: the flush emptied every table.
        Permission.objects.all().delete()
        ContentType.objects.all().delete()
        ContentType.objects.bulk_create(
            ContentType(id=id, app_label=app, model=model) for id, app, model in types
        )
        Permission.objects.bulk_create(
            Permission(id=id, content_type_id=type_id, codename=code, name=name)
            for id, type_id, code, name in permissions
        )
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(
                no_style(), [ContentType, Permission]
            ):
                cursor.execute(sql)
    ContentType.objects.clear_cache()


@pytest.fixture
def _content_types_as_created(
    _content_types_at_start: ContentTypeRows, django_db_blocker
) -> Iterator[None]:
    """Keep content type ids as they were made, before the test and after its
    flush (this fixture is set up before `transactional_db`, so torn down after it):
    a kept web process caches them (the admin's log entry of a decision names one)."""
    with django_db_blocker.unblock():
        _put_back(_content_types_at_start)
    yield
    with django_db_blocker.unblock():
        _put_back(_content_types_at_start)


@pytest.fixture
def stack(
    request,
    kept_processes,
    _content_types_as_created,
    transactional_db,
    standins,
    openai_standin,
    linear_standin,
) -> Iterator[Stack]:
    """A function-scoped set of processes on the test database; start what you need.

    Web processes and workers come from the module's kept ones where they can (`Kept`);
    `@pytest.mark.fresh_stack` on a test or module asks for new ones.
    """
    from django.conf import settings

    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        # This process's namespace: the processes' DATABASE_URL (the test database)
        # is not the one this process derived its namespace from.
        "REDIS_NAMESPACE": settings.REDIS_NAMESPACE,
        "OPENAI_BASE_URL": standins["openai"].url,
        "LINEAR_API_URL": standins["linear"].url,
        "GITHUB_API_URL": standins["github"].url,
        # Short leases and a fast sweep, so recovery from a killed worker is quick.
        "AGENT_LEASE_SECONDS": "3",
        "AGENT_SWEEP_SECONDS": "1",
        "AGENT_SWEEP_GRACE_SECONDS": "2",
        # And short bounds on how long a write may still land after it left, so a
        # retry waits seconds, not half a minute, before it reads back (and still
        # longer than the stand-ins' delay faults here, 8 s at most).
        "GITHUB_CONNECT_TIMEOUT": "2",
        "GITHUB_HOLD_SECONDS": "5",
        "LINEAR_TIMEOUT": "10",
        "LINEAR_HOLD_SECONDS": "9",
    }
    # No keys (the stand-ins are used), and async safety on in the processes even
    # when a browser test had to lift it in this one for Playwright's event loop.
    # Nor the name of the test that started them, which a kept process outlives.
    for name in (
        "OPENAI_API_KEY",
        "LINEAR_API_KEY",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
        "PYTEST_CURRENT_TEST",
    ):
        env.pop(name, None)
    _empty_the_broker(settings.REDIS_URL, settings.REDIS_NAMESPACE)
    fresh = request.node.get_closest_marker("fresh_stack") is not None
    stack = Stack(env=env, kept=None if fresh else kept_processes)
    request.node.stack = stack  # for the report of a failure (below)
    yield stack
    failed = any(
        getattr(request.node, f"stack_{when}_failed", False)
        for when in ("setup", "call")
    )
    stack.stop(keep=not failed)


def _empty_the_broker(url: str, namespace: str) -> None:
    """Drop the messages earlier tests left queued (duplicates they sent on purpose,
    retries): a new test's worker would otherwise drain them first, about one a
    second, before it reaches the test's own."""
    import redis

    client = redis.Redis.from_url(url)
    for pattern in (f"{namespace}:{namespace}.*", f"{namespace}:unacked*"):
        for key in client.scan_iter(match=pattern, count=500):
            client.delete(key)
    client.close()


# Fixtures whose processes a module's tests share (kept workers, one Chromium).
_MODULE_SHARED = ("stack", "browser")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """On several processes (`-n 2 --dist loadgroup`, as `make test` runs), the
    tests of a module that share its processes run in one of them: spread over two,
    each would start the module's workers and Chromium again. The other tests are
    spread one by one. Before xdist reads the groups (tryfirst)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if any(name in item.fixturenames for name in _MODULE_SHARED) and not any(
            item.iter_markers("xdist_group")
        ):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that started processes reports the end of each one's output:
    their logs are overwritten by the next test's processes of the same name."""
    report = yield
    if report.failed:
        setattr(item, f"stack_{call.when}_failed", True)
    stack = getattr(item, "stack", None)
    if report.failed and call.when == "call" and stack is not None:
        for proc in stack.procs:
            tail = "\n".join(proc.output().splitlines()[-80:])
            report.sections.append((f"output of {proc.name}", tail))
    return report


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


def die_in_child(stack: Stack, script: str, *args: str) -> None:
    """Run `script` (Python) in a child process of the stack's settings and check
    that it died by SIGKILL: the fault tests' crash at a chosen write, which the
    script arranges through Django's public execute_wrapper."""
    died = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={**stack.env, "DJANGO_SETTINGS_MODULE": "agentsite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert died.returncode == -9, died.stdout + died.stderr


def effects(linear: Standin, op: str | None = None) -> list[dict]:
    found = linear.control("effects")["effects"]
    return [e for e in found if op is None or e["op"] == op]


def dump(value: object) -> str:
    return json.dumps(value, indent=1, default=str)
