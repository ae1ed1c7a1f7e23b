"""`python -m stack run` as a person uses it: start, serve, stop, start again.

The runner tests start the real runner with nothing configured (no Redis answers, no API
keys), so it starts an embedded Redis and both stand-ins, like a fresh machine.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from stack.procfile import ProcfileError, read_procfile
from stack.procs import free_port, group_members

pytestmark = [
    pytest.mark.e2e,  # real processes, like the other end-to-end tests
    # One at a time on `-n 2 --dist loadgroup`: `stack run` takes the stand-ins'
    # usual ports when they look free, and two runners racing for them collide
    # (tests/browser/test_tour.py runs one too, in the same group).
    pytest.mark.xdist_group("stack run"),
]

ROOT = Path(__file__).resolve().parents[2]
# Migrations, the demo data, collectstatic and every process from nothing: 37 s on a
# quiet machine, several times that on a busy one (measured: over 60 s at load 20).
START_TIMEOUT = 240.0
STARTED = re.compile(r"^stack\s+\| started (\S+) pid (\d+)$")
STOPPED = re.compile(r"^stack\s+\| stopped (\S+) ")
LISTENING = re.compile(r"^(openai|linear)\s+\| .*listening on (http://\S+)$")


class RunnerProcess:
    """`python -m stack run` in a subprocess, its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = int(env["PORT"])
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stack", "run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def started(self) -> dict[str, int]:
        """Every process the runner said it started, by name."""
        found = (STARTED.match(line) for line in list(self.lines))
        return {m.group(1): int(m.group(2)) for m in found if m}

    def stopped(self) -> list[str]:
        """The names of the processes the runner said it stopped, in order."""
        found = (STOPPED.match(line) for line in list(self.lines))
        return [m.group(1) for m in found if m]

    def wait_healthy(self) -> None:
        """Wait until GET /healthz answers 200, failing early if the runner ends."""
        url = f"http://127.0.0.1:{self.port}/healthz"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"runner ended:\n{self.output}"
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail(f"{url} did not answer 200 in {START_TIMEOUT} s:\n{self.output}")

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C, as a person at the terminal would, and the runner's exit code."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout)
        self.reader.join(timeout=5)
        return code


def survivors(pids: dict[str, int], timeout: float) -> dict[str, list[int]]:
    """The processes still alive, by group, once `timeout` ran out or none are."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {name: group_members(pid) for name, pid in pids.items()}
        alive = {name: members for name, members in alive.items() if members}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str]:
    """A fresh machine: nothing answers on the Redis URL, no keys, a new database."""
    env = dict(os.environ)
    env.update(
        REDIS_URL="redis://127.0.0.1:1",
        PORT=str(free_port()),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        BEAT_SCHEDULE_FILE=str(tmp_path / "beat-schedule"),
        WORKER_CONCURRENCY="1",
        # Empty, not absent: a developer's .env must not bring real keys in.
        OPENAI_API_KEY="",
        LINEAR_API_KEY="",
    )
    return env


@pytest.fixture
def runners() -> Iterator[list[RunnerProcess]]:
    """The runners a test started; any left running at its end are killed."""
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        if runner.process.poll() is None:
            runner.process.kill()
            runner.process.wait()


def test_first_run_serves_mails_and_stops_on_ctrl_c_then_a_second_run_reuses_it(
    runner_env, runners
):
    """A newcomer's first two runs, each start of the whole system once (they are
    the slow part): the first creates everything, serves, prints each approver's
    mail with a link to its own port, and Ctrl-C stops every process, Redis last;
    the second, on the same database and port, has nothing to create, and when one
    of its processes dies the runner stops all the rest and exits 1."""
    # No SITE_URL and no EMAIL_HOST: the console backend, links from PORT.
    runner_env.update(SITE_URL="", EMAIL_HOST="")
    first = RunnerProcess(runner_env)
    runners.append(first)
    first.wait_healthy()
    standins = {m[1]: m[2] for m in map(LISTENING.match, first.lines) if m}
    assert set(standins) == {"openai", "linear"}, first.output
    base = {name: re.sub(r"/(v1|graphql)$", "", url) for name, url in standins.items()}
    assert requests.get(f"{base['openai']}/_control/requests", timeout=5).ok
    assert requests.get(f"{base['linear']}/_control/health", timeout=5).ok
    pids = first.started()
    assert {"redis", "openai", "linear", "web", "worker", "beat"} <= set(pids)
    _each_approver_is_mailed_a_link_to_this_port(first)

    assert first.interrupt() == 0, first.output
    assert survivors(pids, timeout=2) == {}
    stopped = first.stopped()
    # Everything still running was stopped, and Redis only after all the rest.
    assert set(stopped) == set(pids) - {"migrate", "setup", "collectstatic"}, (
        first.output
    )
    assert stopped[-1] == "redis", first.output

    # Same database, same port, straight after: nothing to migrate or create.
    second = RunnerProcess(runner_env)
    runners.append(second)
    second.wait_healthy()
    assert "Applying" not in second.output
    assert "User demo exists" in second.output
    assert "Room 'Demo room' (/demo) exists." in second.output

    pids = second.started()
    os.killpg(pids["worker"], signal.SIGKILL)
    assert second.process.wait(30) == 1, second.output
    assert re.search(
        r"worker \(pid \d+, signal SIGKILL\) exited unexpectedly", second.output
    )
    assert survivors(pids, timeout=2) == {}
    assert second.stopped()[-1] == "redis"


def _each_approver_is_mailed_a_link_to_this_port(runner: RunnerProcess) -> None:
    base = f"http://127.0.0.1:{runner.port}"
    login = {"username": "bob", "password": "demo"}
    token = requests.post(f"{base}/api/auth/token", json=login, timeout=10)
    asked = requests.post(
        f"{base}/api/rooms/demo/requests",
        json={"text": "delete ENG-11"},
        headers={"Authorization": f"Token {token.json()['token']}"},
        timeout=10,
    )
    assert asked.status_code == 202, asked.text

    # Each eligible voter (not bob, who asked) gets one, printed by the worker.
    link = re.compile(rf"^worker\s+\| Approve or deny: ({base}/decide/\S+/)$", re.M)
    wanted = {f"worker   | To: {name}@example.com" for name in ("alice", "carol")}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = set(runner.lines)
        if wanted <= lines and len(link.findall(runner.output)) >= 3:
            break
        time.sleep(0.2)
    assert wanted <= set(runner.lines), runner.output
    assert "worker   | To: bob@example.com" not in runner.lines
    [url] = set(link.findall(runner.output))
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"].startswith("/accounts/login/?next=/decide/")


def test_sigkill_of_the_runner_leaves_no_process_behind(runner_env, runners):
    runner = RunnerProcess(runner_env)
    runners.append(runner)
    runner.wait_healthy()
    pids = runner.started()
    assert {"redis", "web", "worker", "beat"} <= set(pids)

    runner.process.kill()
    runner.process.wait()
    assert survivors(pids, timeout=15) == {}, runner.output


def test_port_in_use_fails_fast_with_a_clear_message(runner_env, runners):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        runner_env["PORT"] = str(taken.getsockname()[1])
        runner = RunnerProcess(runner_env)
        runners.append(runner)
        assert runner.process.wait(15) == 1
    runner.reader.join(timeout=5)
    assert f"port {runner_env['PORT']} on 127.0.0.1 is already in use" in runner.output
    assert runner.started() == {}  # nothing was started before the check


def test_two_worker_processes_and_two_web_processes_on_request(runner_env, runners):
    runner_env.update(WORKER_PROCESSES="2", WEB_CONCURRENCY="2")
    runner = RunnerProcess(runner_env)
    runners.append(runner)
    runner.wait_healthy()
    pids = runner.started()
    assert {"worker-1", "worker-2", "web", "beat"} <= set(pids), runner.output
    assert "worker" not in pids
    # Each worker is its own Celery node, and uvicorn runs two serving children.
    names = ("worker-1", "worker-2")
    serving = re.compile(r"^web\s+\| INFO:\s+Started server process", re.M)

    def up() -> bool:
        ready = all(re.search(rf"{n}@\S+ ready", runner.output) for n in names)
        return ready and len(serving.findall(runner.output)) == 2

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and not up():
        time.sleep(0.2)
    assert up(), runner.output
    assert len(group_members(pids["web"])) >= 3, runner.output  # parent + 2
    assert runner.interrupt() == 0, runner.output
    assert survivors(pids, timeout=2) == {}


def test_a_bad_worker_count_fails_fast_with_a_clear_message(runner_env, runners):
    runner_env["WORKER_PROCESSES"] = "two"
    runner = RunnerProcess(runner_env)
    runners.append(runner)
    assert runner.process.wait(15) == 1
    runner.reader.join(timeout=5)
    assert "WORKER_PROCESSES must be a number from 1 to 64, not 'two'" in runner.output
    assert runner.started() == {}


def test_procfile_is_the_list_of_processes(tmp_path: Path):
    processes = read_procfile(ROOT / "Procfile")
    assert {"web", "worker", "beat"} <= set(processes)
    assert "$PORT" in processes["web"]
    bad = tmp_path / "Procfile"
    bad.write_text("web: uvicorn app\nworker celery\n")
    with pytest.raises(ProcfileError, match=r"Procfile:2: expected `name: command`"):
        read_procfile(bad)
