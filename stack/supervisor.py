"""The one supervisor of the processes we start: `make run`, the tests, the bench.

A `Proc` is a process group of our own, dying with us: a process type of the
Procfile (its command line as the Procfile gives it, expanded from the env it is
started with), a stand-in, or any argv. Its output goes to a log file or, prefixed,
to the terminal. It is waited for until it answers, and stopped, killed or
restarted as a whole group, because celery's pool processes share their parent's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import requests

from .output import Output
from .procfile import ProcfileError, procfile_argv
from .procs import die_with_parent, group_alive, signal_group, wait_group

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
STOP_TIMEOUT = 10.0
READY_TIMEOUT = 30.0
# What a stand-in, the bench's relay, prints once it accepts connections.
LISTENING = re.compile(r"listening on (\S+)")
# What a Celery worker prints once it consumes: `celery@host ready.`
WORKER_READY = re.compile(r"\bready\b")
# Of a process whose output goes to the terminal, the lines kept to wait on.
TAIL_LINES = 200


class StartError(RuntimeError):
    """A process did not come up: it could not start, exited, or was not ready."""


class Proc:
    """One process group we started, with what it needs to be started again.

    `log` is where its output goes: a file (truncated at the first start, appended
    to at a restart), or an `Output` that prefixes each line with `name`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path | Output,
        *,
        port: int | None = None,
    ) -> None:
        self.name, self.argv, self.log = name, list(argv), log
        self.env = child_env(env)
        self.url = f"http://127.0.0.1:{port}" if port is not None else ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        # Where `output` begins in the log file: past what it printed before a `mark`.
        self.since = 0
        self.popen: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.start()

    @classmethod
    def procfile(
        cls,
        kind: str,
        env: Mapping[str, str],
        log: Path | Output,
        *,
        name: str = "",
        port: int | None = None,
        args: Sequence[str] = (),
        swap: Mapping[str, str] | None = None,
        procfile: Path = PROCFILE,
    ) -> Proc:
        """The Procfile's `kind` process, its command expanded from `env`.

        `port` becomes `$PORT`; `args` are appended; `swap` replaces whole words
        (the bench's own Celery or ASGI app), each of which must be there.
        """
        if port is not None:
            env = {**env, "PORT": str(port)}
        argv = procfile_argv(kind, env, procfile)
        for old, new in (swap or {}).items():
            if old not in argv:
                raise ProcfileError(f"the {kind} command has no word {old!r}: {argv}")
            argv = [new if word == old else word for word in argv]
        return cls(name or kind, [*argv, *args], env, log, port=port)

    @classmethod
    def standin(
        cls,
        api: str,
        env: Mapping[str, str],
        log: Path | Output,
        *,
        port: int = 0,
        args: Sequence[str] = (),
    ) -> Proc:
        """The local server of `api` (`openai`, `linear`); port 0 lets it choose."""
        argv = [sys.executable, "-m", f"standins.{api}_server", "--host", "127.0.0.1"]
        return cls(api, [*argv, "--port", str(port), *args], env, log)

    # Life ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the command, in a session of its own; again after a stop."""
        if self.popen is not None and self.popen.poll() is None:
            raise RuntimeError(f"{self.name} is running already")
        to_terminal = isinstance(self.log, Output)
        stdout: int | IO[bytes] = subprocess.PIPE if to_terminal else self._open_log()
        try:
            # Its own session: a Ctrl-C at the terminal reaches only us, who then
            # stop everything in order.
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        except OSError as error:
            raise StartError(f"cannot start {self.name}: {error}") from error
        finally:
            if not isinstance(stdout, int):
                stdout.close()
        if isinstance(self.log, Output):
            assert self.popen.stdout is not None
            self.reader = self.log.follow(
                self.name, self.popen.stdout, self.tail.append
            )

    def _open_log(self) -> IO[bytes]:
        assert isinstance(self.log, Path)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        return self.log.open("ab" if self.popen is not None else "wb")

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The leader's exit status once it ended (negative: the signal), else None."""
        assert self.popen is not None
        return self.popen.poll()

    def alive(self) -> bool:
        return self.returncode is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the whole group (a worker and its pool processes)."""
        # Once the leader is reaped and nobody is left, the id may be reused.
        if self.returncode is None or group_alive(self.pid):
            signal_group(self.pid, sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the group, SIGKILL what is left after `timeout`; the exit status."""
        return stop_all([self], timeout)[0]

    def restart(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the group and start the same command with the same env."""
        self.stop(timeout)
        self.start()

    def join_output(self, timeout: float = 2.0) -> None:
        """Let the thread copying its output to the terminal copy the last lines."""
        if self.reader is not None:
            self.reader.join(timeout)

    # Output and readiness --------------------------------------------------------

    def output(self) -> str:
        """What it printed (since the last `mark`): its log file, or its last lines
        printed to the terminal."""
        if isinstance(self.log, Output):
            return "\n".join(self.tail)
        if not self.log.exists():
            return ""
        with self.log.open("rb") as log:
            log.seek(self.since)
            return log.read().decode(errors="replace")

    def mark(self) -> None:
        """From now on `output` (and what waits on it) sees only what it prints
        next: a process kept running for another user must not satisfy a wait with
        a line it printed for the one before."""
        if isinstance(self.log, Output):
            self.tail.clear()
        else:
            self.since = self.log.stat().st_size if self.log.exists() else 0

    def _evidence(self) -> str:
        if isinstance(self.log, Output):
            return "its output is above"
        return f"the end of its log {self.log}:\n{self.output()[-3000:]}"

    def wait_until(
        self,
        ready: Callable[[], T],
        what: str,
        timeout: float = READY_TIMEOUT,
        poll: Callable[[], None] | None = None,
    ) -> T:
        """The first true value of `ready`, tried until the process ends or
        `timeout` passes (then StartError); `poll` runs between tries."""
        deadline = time.monotonic() + timeout
        while not (value := ready()):
            if (code := self.returncode) is not None:
                # It may have printed what we wait for just before it ended: read
                # the rest of its output before calling it a failure.
                self.join_output()
                if value := ready():
                    return value
                raise StartError(
                    f"{self.name} ended ({how(code)}) before it would {what}; "
                    + self._evidence()
                )
            if time.monotonic() > deadline:
                raise StartError(
                    f"{self.name} did not {what} within {timeout:.0f} s; "
                    + self._evidence()
                )
            if poll is not None:
                poll()
            time.sleep(0.05)
        return value

    def wait_line(
        self, pattern: re.Pattern, what: str, timeout: float = READY_TIMEOUT
    ) -> re.Match:
        """The first match of `pattern` in what it printed."""
        return self.wait_until(lambda: pattern.search(self.output()), what, timeout)

    def wait_listening(
        self, timeout: float = READY_TIMEOUT, poll: Callable[[], None] | None = None
    ) -> str:
        """The URL of its `listening on URL` line, kept as `url`."""
        found = self.wait_until(
            lambda: LISTENING.search(self.output()),
            "say it was listening",
            timeout,
            poll,
        )
        self.url = found.group(1)
        return self.url

    def wait_serving(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until a web process answers GET /healthz with 200."""
        self.wait_until(lambda: answers(f"{self.url}/healthz"), "serve", timeout)


def stop_all(
    procs: Iterable[Proc],
    timeout: float = STOP_TIMEOUT,
    force: threading.Event | None = None,
) -> list[int]:
    """SIGTERM every group at once, then wait for each with one deadline.

    What is left at the deadline is SIGKILLed; at once when `force` is set (a
    second Ctrl-C). Returns the leaders' exit statuses, in order.
    """
    procs = list(procs)
    for proc in procs:
        proc.kill(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        assert proc.popen is not None
        codes.append(wait_group(proc.popen, deadline, force))
        proc.join_output()
    return codes


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether GET `url` answers 200: for /healthz, the web process is up and can
    reach the database and Redis."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the venv's scripts (uvicorn, celery) first on PATH, and Python
    unbuffered: into a pipe or a file it would hold its logs back for seconds."""
    scripts = str(Path(sys.executable).parent)
    path = env.get("PATH", os.defpath)
    if path.split(os.pathsep)[0] != scripts:
        path = os.pathsep.join([scripts, path])
    return {**env, "PATH": path, "PYTHONUNBUFFERED": "1"}


def how(code: int) -> str:
    """An exit status as people read it: `exit code 1` or `signal SIGTERM`."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"
