"""The one supervisor: Procfile command lines, output, readiness, stop, kill, restart,
and the processes the tests start being exactly the Procfile's."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.output import Output
from stack.procfile import ProcfileError, command_line, read_procfile
from stack.procs import group_members
from stack.supervisor import PROCFILE, Proc, StartError, stop_all
from tests.plugins.stack import Stack, wait_for

# A process type whose child prints what it was started with, then waits.
SHOW = (
    "show: python -c 'import os, sys, time; "
    'print(os.environ["PYTHONPATH"], sys.argv[1:], flush=True); time.sleep(60)\' '
    "--port $PORT --mode ${MODE:-slow}\n"
)
# A leader with a child of its own in its group, like a worker and its pool.
FAMILY = ["sh", "-c", "sleep 60 & echo started; wait"]


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def runs(proc: Proc) -> bool:
    """Whether the live process is `proc.argv`, its program found on PATH."""
    live = cmdline(proc.pid)
    program, args = proc.argv[0], proc.argv[1:]
    return live[len(live) - len(args) :] == args and (
        Path(live[len(live) - len(args) - 1]).name == Path(program).name
    )


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """The processes a test started, stopped at its end whatever happened."""
    started: list[Proc] = []
    yield started
    stop_all(started, timeout=2)


def test_variables_expand_from_the_env_and_each_word_stays_one_argument():
    command = "run --port $PORT --n ${N:-2} --mode ${MODE:-} '${NAME:-a b}' x${PORT}y"
    env = {"PORT": "8123", "N": ""}
    assert command_line(command, env) == [
        "run", "--port", "8123", "--n", "2", "--mode", "", "a b", "x8123y",
    ]  # fmt: skip
    assert command_line(command, {**env, "N": "4", "NAME": "c d"})[4:] == [
        "4", "--mode", "", "c d", "x8123y",
    ]  # fmt: skip


def test_a_variable_without_a_default_must_be_set():
    with pytest.raises(ProcfileError, match=r"needs \$PORT, which is not set"):
        command_line("uvicorn app --port $PORT", {})


def test_a_procfile_process_runs_its_expanded_line_with_our_env(tmp_path, procs):
    procfile = tmp_path / "Procfile"
    procfile.write_text(SHOW)
    env = {**os.environ, "PYTHONPATH": "/the/path"}
    log = tmp_path / "show.log"
    proc = Proc.procfile("show", env, log, port=4321, args=["-x"], procfile=procfile)
    procs.append(proc)
    assert proc.argv[:2] == ["python", "-c"]
    assert proc.argv[3:] == ["--port", "4321", "--mode", "slow", "-x"]
    proc.wait_line(re.compile(r"\]"), "print its arguments", timeout=20)
    assert runs(proc)
    assert "/the/path ['--port', '4321', '--mode', 'slow', '-x']" in proc.output()
    assert (proc.name, proc.url) == ("show", "http://127.0.0.1:4321")


def test_a_swapped_word_must_be_in_the_line(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(SHOW)
    with pytest.raises(ProcfileError, match="has no word 'uvicorn'"):
        Proc.procfile(
            "show", os.environ, tmp_path / "x.log", port=1, swap={"uvicorn": "x"},
            procfile=procfile,
        )  # fmt: skip
    with pytest.raises(ProcfileError, match="has no 'nope' process"):
        Proc.procfile("nope", os.environ, tmp_path / "x.log", procfile=procfile)


def test_stop_ends_the_whole_group_and_restart_appends_to_the_log(tmp_path, procs):
    proc = Proc("family", FAMILY, os.environ, tmp_path / "family.log")
    procs.append(proc)
    proc.wait_line(re.compile("started"), "start", timeout=10)
    wait_for(lambda: len(group_members(proc.pid)) == 2, what="the child")

    assert proc.stop(timeout=5) == -signal.SIGTERM
    assert group_members(proc.pid) == []
    proc.restart()
    wait_for(lambda: proc.output().count("started") == 2, what="the second start")
    assert proc.alive()
    proc.stop(timeout=5)
    assert proc.stop(timeout=5) == -signal.SIGTERM  # a second stop is harmless


def test_after_a_mark_only_what_it_prints_next_satisfies_a_wait(tmp_path, procs):
    argv = ["sh", "-c", "echo ready; sleep 1; echo served; sleep 30"]
    proc = Proc("kept", argv, os.environ, tmp_path / "kept.log")
    procs.append(proc)
    proc.wait_line(re.compile("ready"), "say it was ready", timeout=10)
    proc.mark()  # kept for another user, who waits for lines of their own

    with pytest.raises(StartError, match="did not say it was ready"):
        proc.wait_line(re.compile("ready"), "say it was ready", timeout=0.2)
    proc.wait_line(re.compile("served"), "serve", timeout=10)
    assert "ready" not in proc.output()


def test_kill_sigkills_the_group_at_once(tmp_path, procs):
    proc = Proc("family", FAMILY, os.environ, tmp_path / "family.log")
    procs.append(proc)
    wait_for(lambda: len(group_members(proc.pid)) == 2, what="the child")
    proc.kill()
    assert proc.popen.wait(5) == -signal.SIGKILL
    wait_for(lambda: group_members(proc.pid) == [], timeout=5, what="the group")


def test_a_process_that_ends_early_fails_the_wait_with_its_log(tmp_path):
    proc = Proc("boom", ["sh", "-c", "echo boom; exit 3"], {}, tmp_path / "b.log")
    with pytest.raises(StartError) as error:
        proc.wait_listening(timeout=10)
    assert "boom ended (exit code 3) before it would say it was listening" in str(
        error.value
    )
    assert str(error.value).endswith("boom\n")


def test_output_to_the_terminal_is_prefixed_and_kept_to_wait_on(procs):
    stream = io.StringIO()
    argv = ["sh", "-c", "echo hello; echo 'relay listening on ws://127.0.0.1:9/'"]
    proc = Proc("relay", argv, os.environ, Output(stream))
    procs.append(proc)
    assert proc.wait_listening(timeout=10) == "ws://127.0.0.1:9/"
    assert proc.url == "ws://127.0.0.1:9/"
    proc.stop()
    assert stream.getvalue().startswith("relay    | hello\n")
    assert proc.output().startswith("hello\n")


def test_a_process_dies_with_the_one_that_started_it(tmp_path):
    parent = subprocess.Popen(
        [
            sys.executable, "-c",
            "import os, sys, time; from pathlib import Path; "
            "from stack.supervisor import Proc; "
            "p = Proc('sleep', ['sleep', '60'], os.environ, Path(sys.argv[1])); "
            "print(p.pid, flush=True); time.sleep(60)",
            str(tmp_path / "sleep.log"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert group_members(child) == [child]
    parent.kill()
    parent.wait()
    wait_for(lambda: group_members(child) == [], timeout=5, what="the child to die")


@pytest.mark.e2e
def test_the_test_processes_run_the_procfile_command_lines(stack: Stack):
    """Invariant: web, worker and beat of the tests are the Procfile's, expanded."""
    url = stack.web()
    stack.worker(concurrency=3)
    stack.beat()
    web, worker, beat = stack.procs
    lines = read_procfile(PROCFILE)
    node = ["-n", f"worker-{os.getpid()}@%h"]

    assert web.argv == command_line(lines["web"], web.env)
    assert worker.argv == command_line(lines["worker"], worker.env) + node
    assert beat.argv == command_line(lines["beat"], beat.env)
    assert url == f"http://127.0.0.1:{web.env['PORT']}"
    # What the tests vary goes in through the variables the Procfile reads.
    assert worker.env["WORKER_CONCURRENCY"] == "3"
    assert "${WORKER_CONCURRENCY" in lines["worker"]
    assert "${BEAT_SCHEDULE_FILE" in lines["beat"]
    assert all(runs(proc) for proc in stack.procs)


def test_the_web_process_binds_the_host_from_HOST_or_127_0_0_1():
    web = read_procfile(PROCFILE)["web"]

    def host(env: dict[str, str]) -> str:
        argv = command_line(web, {"PORT": "8000", **env})
        return argv[argv.index("--host") + 1]

    assert host({}) == "127.0.0.1"
    assert host({"HOST": "0.0.0.0"}) == "0.0.0.0"
