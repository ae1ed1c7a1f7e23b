"""`python -m stack run`: the whole system on one machine, in one terminal.

Order of start: Redis, the stand-ins (when no API keys are set), migrations and
the demo data, then every process of the Procfile. Order of stop is the reverse,
Redis last, because the app processes need it to shut down cleanly.
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
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from agentsite.env import load_dotenv

from .output import Output
from .procfile import ProcfileError, read_procfile
from .procs import die_with_parent, port_free, signal_group, wait_group
from .redis import EmbeddedRedis, RedisUnavailable, ensure_redis

ROOT = Path(__file__).resolve().parent.parent
# The same default as agentsite/settings.py; the runner must not import settings.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PORT = 8000
STOP_TIMEOUT = 10.0
STANDIN_TIMEOUT = 20.0
READY_LINE = re.compile(r"listening on (\S+)")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StartupError(Exception):
    """Something the system needs could not be started."""


class Interrupted(Exception):
    """A stop was asked for while the system was still starting."""


@dataclass(frozen=True)
class Standin:
    """A local stand-in for a paid API, used while its key is unset."""

    name: str
    label: str
    module: str
    key_var: str
    url_var: str
    port: int


STANDINS = (
    Standin(
        "openai", "OpenAI", "standins.openai_server", "OPENAI_API_KEY",
        "OPENAI_BASE_URL", 8001,
    ),
    Standin(
        "linear", "Linear", "standins.linear_server", "LINEAR_API_KEY",
        "LINEAR_API_URL", 8002,
    ),
)  # fmt: skip


@dataclass
class Child:
    """A process we started, and the thread copying its output."""

    name: str
    process: subprocess.Popen
    output: threading.Thread | None = None
    url: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def on_line(self, text: str) -> None:
        """Catch a stand-in's `... listening on URL` line."""
        if not self.ready.is_set() and (match := READY_LINE.search(text)):
            self.url = match.group(1)
            self.ready.set()


class Runner:
    """Starts the system, watches it, and stops it in order."""

    def __init__(self, env: dict[str, str], out: Output, root: Path = ROOT) -> None:
        self.env, self.out, self.root = env, out, root
        self.stop = threading.Event()
        self.force = threading.Event()
        self.signal_name = ""
        self.port = DEFAULT_PORT
        self.redis: EmbeddedRedis | None = None
        self.redis_note = ""
        self.demo: dict[str, str] = {}
        self.tasks: list[Child] = []
        self.standins: list[Child] = []
        self.apps: list[Child] = []

    def run(self) -> int:
        """Start, supervise, stop; 0 after a requested stop, 1 after a failure."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        code = 1
        try:
            self.start()
            code = self.supervise()
        except Interrupted:
            code = 0
        except (StartupError, RedisUnavailable, ProcfileError) as error:
            self.out.say(f"error: {error}")
        finally:
            self.shutdown()
        self.out.say(f"all stopped, exit code {code}")
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags here: printing could deadlock on the output lock, which the
        # interrupted main thread may hold.
        if self.stop.is_set():
            self.force.set()
        self.signal_name = self.signal_name or signal.Signals(signum).name
        self.stop.set()

    def _checkpoint(self) -> None:
        if self.stop.is_set():
            raise Interrupted

    # Starting ------------------------------------------------------------------

    def start(self) -> None:
        """Start everything in order; on an error raise: `run` stops what started."""
        processes = read_procfile(self.root / "Procfile")
        self.port = self._free_web_port()
        self._start_redis()
        self._checkpoint()
        self._start_standins()
        python = sys.executable
        self._run_task("migrate", [python, "manage.py", "migrate", "--noinput"])
        self._run_task("setup", [python, "manage.py", "demo_setup"])
        for name, command in processes.items():
            self._start_app(name, command)
        self._banner()

    def _free_web_port(self) -> int:
        raw = self.env.get("PORT", "").strip() or str(DEFAULT_PORT)
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StartupError(f"PORT must be a port number, not {raw!r}")
        port = int(raw)
        if not port_free(port):
            raise StartupError(
                f"port {port} on 127.0.0.1 is already in use (another `make run`?). "
                "Stop what uses it, or choose another port: PORT=8080 make run"
            )
        return port

    def _start_redis(self) -> None:
        asked = self.env.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL
        url, self.redis = ensure_redis(asked, log=self.out.say)
        self.env["REDIS_URL"] = url
        if self.redis is None:
            self.redis_note = f"{url} (it answered)"
            return
        self.out.say(f"started redis pid {self.redis.pid}")
        self.redis_note = f"embedded at {url} (nothing answered at {asked})"

    def _start_standins(self) -> None:
        """Start the stand-in of each API whose key is unset, and point the app at it.

        Both start before either is waited for: they boot in parallel.
        """
        wanted = [s for s in STANDINS if not self.env.get(s.key_var, "").strip()]
        for standin in wanted:
            # The usual port when it is free, so the URLs stay familiar.
            port = standin.port if port_free(standin.port) else 0
            argv = [sys.executable, "-m", standin.module, "--host", "127.0.0.1"]
            child = self._spawn(standin.name, [*argv, "--port", str(port)])
            self.standins.append(child)
        for standin, child in zip(wanted, self.standins, strict=True):
            self._wait_listening(child)
            self.env[standin.url_var] = self.demo[standin.label] = str(child.url)

    def _wait_listening(self, child: Child) -> None:
        deadline = time.monotonic() + STANDIN_TIMEOUT
        while not child.ready.wait(0.05):
            self._checkpoint()
            if (code := child.process.poll()) is not None:
                raise StartupError(
                    f"the {child.name} stand-in exited with code {code} before it "
                    "listened; its output is above"
                )
            if time.monotonic() > deadline:
                raise StartupError(
                    f"the {child.name} stand-in did not say it was listening within "
                    f"{STANDIN_TIMEOUT:.0f} s"
                )

    def _run_task(self, name: str, argv: list[str]) -> None:
        """Run a one-off command to its end; its failure stops the start."""
        child = self._spawn(name, argv)
        self.tasks.append(child)
        while child.process.poll() is None:
            self.stop.wait(0.05)
            self._checkpoint()
        if child.output is not None:
            child.output.join(timeout=2)
        self.tasks.remove(child)
        if child.process.returncode != 0:
            raise StartupError(
                f"`{' '.join(argv[1:])}` failed with exit code "
                f"{child.process.returncode}; its output is above"
            )

    def _start_app(self, name: str, command: str) -> None:
        env = dict(self.env, PORT=str(self.port)) if name == "web" else self.env
        # exec: the process we signal is the app itself, not a shell around it.
        self.apps.append(self._spawn(name, ["sh", "-c", f"exec {command}"], env))

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> Child:
        """Start `argv` in its own process group, dying with us, output prefixed.

        Its own group, so that a Ctrl-C at the terminal reaches only the runner,
        which then stops everything in order.
        """
        process = subprocess.Popen(
            argv,
            cwd=self.root,
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        child = Child(name, process)
        self.out.say(f"started {name} pid {process.pid}")
        assert process.stdout is not None
        child.output = self.out.follow(name, process.stdout, child.on_line)
        return child

    def _banner(self) -> None:
        if self.demo:
            urls = ", ".join(f"{k} stand-in at {v}" for k, v in self.demo.items())
            demo = f"on: {urls}"
        else:
            demo = "off: the real OpenAI and Linear APIs (keys are set)"
        rule = "-" * 64
        for text in (
            rule,
            f"agentsite   http://127.0.0.1:{self.port}/",
            "log in      demo / demo (admin at /admin/); alice and bob: password demo",
            f"redis       {self.redis_note}",
            f"demo mode   {demo}",
            "stop        Ctrl-C",
            rule,
        ):
            self.out.say(text)

    # Running and stopping ------------------------------------------------------

    def supervise(self) -> int:
        """Wait for a stop signal (0) or a process that ends on its own (1)."""
        ready = False
        while not self.stop.wait(0.2):
            if dead := self._first_dead():
                self.out.say(f"{dead} exited unexpectedly; stopping everything")
                return 1
            if not ready and _answers(self.port):
                ready = True
                self.out.say(f"ready: http://127.0.0.1:{self.port}/")
        return 0

    def _first_dead(self) -> str | None:
        for child in self.standins + self.apps:
            if (code := child.process.poll()) is not None:
                return f"{child.name} (pid {child.process.pid}, {_how(code)})"
        if self.redis is not None and self.redis.process.poll() is not None:
            return f"redis (pid {self.redis.pid})"
        return None

    def shutdown(self) -> None:
        """Stop the app processes, then the stand-ins, then Redis."""
        if self.signal_name:
            self.out.say(f"got {self.signal_name}, stopping")
        self._stop_children(self.tasks + self.apps)
        self._stop_children(self.standins)
        if self.redis is not None:
            self.redis.stop()
            self.out.say(f"stopped redis (pid {self.redis.pid})")

    def _stop_children(self, children: list[Child]) -> None:
        """SIGTERM every group at once, then wait for each with one deadline."""
        for child in children:
            signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:
            code = wait_group(child.process, deadline, self.force)
            if child.output is not None:
                child.output.join(timeout=2)
            pid = child.process.pid
            self.out.say(f"stopped {child.name} (pid {pid}, {_how(code)})")


def _how(code: int) -> str:
    """An exit status as people read it: `exit code 1` or `signal SIGTERM`."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _answers(port: int) -> bool:
    """Whether something accepts connections on the loopback `port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def child_env() -> dict[str, str]:
    """Our environment, with the venv's scripts (uvicorn, celery) on PATH."""
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([scripts, env.get("PATH", os.defpath)])
    # Python children would otherwise buffer their logs in a pipe for seconds.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def main() -> int:
    """Entry point of `python -m stack run`."""
    load_dotenv(ROOT / ".env")
    code = Runner(child_env(), Output()).run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads our output any more; don't let exit complain about it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code
