"""`python -m stack run`: the whole system on one machine, in one terminal.

Order of start: Redis, the stand-ins (when no API keys are set), migrations and
the demo data, then every process of the Procfile. Order of stop is the reverse,
Redis last, because the app processes need it to shut down cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType

from agentsite.env import load_dotenv

from .output import Output
from .procfile import ProcfileError, read_procfile
from .procs import port_free
from .redis import EmbeddedRedis, RedisUnavailable, ensure_redis
from .supervisor import (
    PROCFILE,
    ROOT,
    STOP_TIMEOUT,
    Proc,
    StartError,
    answers,
    child_env,
    how,
    stop_all,
)

# The same default as agentsite/settings.py; the runner must not import settings.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PORT = 8000
STANDIN_TIMEOUT = 20.0
# The repository of the GitHub stand-in's seeded issues.
DEMO_REPO = "demo/agentsite"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# The demo users of `manage.py demo_setup`, as the banner names them.
LOGINS = (
    "log in      password demo for each: demo (staff, approver; the admin at /admin/),",
    "            alice and carol (approvers), bob (member)",
)


class Interrupted(Exception):
    """A stop was asked for while the system was still starting."""


def _same(url: str) -> str:
    return url


def _notes_server(url: str) -> str:
    # Ours, so its annotations are trusted: its reads run at once, as in the demo.
    return json.dumps([{"name": "notes", "url": url, "trust_annotations": True}])


@dataclass(frozen=True)
class Standin:
    """A local stand-in for a paid API, used while its key is unset."""

    name: str
    label: str
    key_var: str
    url_var: str
    port: int
    # What `url_var` is set to, from the URL the stand-in listens on.
    value: Callable[[str], str] = _same
    # Set as well when the stand-in is used, unless already set.
    also: tuple[tuple[str, str], ...] = ()
    # What the banner adds after its address.
    detail: str = ""


STANDINS = (
    Standin("openai", "OpenAI", "OPENAI_API_KEY", "OPENAI_BASE_URL", 8001),
    Standin("linear", "Linear", "LINEAR_API_KEY", "LINEAR_API_URL", 8002),
    Standin(
        "github",
        "GitHub",
        "GITHUB_TOKEN",
        "GITHUB_API_URL",
        8003,
        also=(("GITHUB_TOKEN", "demo-github-token"), ("GITHUB_REPOSITORY", DEMO_REPO)),
        detail=f" (the repository {DEMO_REPO})",
    ),
    # One local MCP server (notes), offered as the tools notes__*.
    Standin(
        "mcp",
        "MCP",
        "AGENT_MCP_SERVERS",
        "AGENT_MCP_SERVERS",
        8004,
        _notes_server,
        detail=" (a notes server: its tools are notes__*)",
    ),
)


def worker_processes(env: Mapping[str, str]) -> int:
    """How many `worker` processes to start: WORKER_PROCESSES (default 1), each with
    the Procfile's pool of WORKER_CONCURRENCY threads; one per core streams most."""
    raw = env.get("WORKER_PROCESSES", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise StartError(f"WORKER_PROCESSES must be a number from 1 to 64, not {raw!r}")
    return int(raw)


class Runner:
    """Starts the system, watches it, and stops it in order."""

    def __init__(self, env: dict[str, str], out: Output) -> None:
        self.env, self.out = env, out
        self.stop = threading.Event()
        self.force = threading.Event()
        self.signal_name = ""
        self.port = DEFAULT_PORT
        self.redis: EmbeddedRedis | None = None
        self.redis_note = ""
        self.demo: dict[str, str] = {}
        self.tasks: list[Proc] = []
        self.standins: list[Proc] = []
        self.apps: list[Proc] = []

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
        except (StartError, RedisUnavailable, ProcfileError) as error:
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
        processes = read_procfile(PROCFILE)
        workers = worker_processes(self.env)
        self.port = self._free_web_port()
        # The links in mail, Slack and webhooks lead to the port served here.
        self.env["SITE_URL"] = site_url(self.env, self.port)
        self._start_redis()
        self._checkpoint()
        self._start_standins()
        python = sys.executable
        self._run_task("migrate", [python, "manage.py", "migrate", "--noinput"])
        setup = [python, "manage.py", "demo_setup"]
        if "Linear" in self.demo:
            # The Linear stand-in runs here: the demo trigger is registered with it
            # (webhookCreate), so an issue created there fires the trigger.
            setup.append("--linear-standin-webhook")
        self._run_task("setup", setup)
        # What a deployment does after migrate (docs/PROTOCOL.md): the web process
        # serves the hashed files from STATIC_ROOT when DEBUG is off.
        self._run_task(
            "collectstatic",
            [python, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        )
        for kind in processes:
            # Every process type of the Procfile; only web serves, on our port.
            port = self.port if kind == "web" else None
            count = workers if kind == "worker" else 1
            for n in range(1, count + 1):
                name, args = kind, []
                if count > 1:
                    # Celery node names must differ between a host's workers.
                    name, args = f"{kind}-{n}", ["-n", f"{kind}-{n}@%h"]
                proc = Proc.procfile(
                    kind, self.env, self.out, name=name, port=port, args=args
                )
                self.apps.append(self._started(proc))
        self._banner()

    def _free_web_port(self) -> int:
        raw = self.env.get("PORT", "").strip() or str(DEFAULT_PORT)
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StartError(f"PORT must be a port number, not {raw!r}")
        port = int(raw)
        if not port_free(port):
            raise StartError(
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
            proc = Proc.standin(standin.name, self.env, self.out, port=port)
            self.standins.append(self._started(proc))
        for standin, proc in zip(wanted, self.standins, strict=True):
            url = proc.wait_listening(STANDIN_TIMEOUT, poll=self._checkpoint)
            self.env[standin.url_var] = standin.value(url)
            self.demo[standin.label] = url
            for name, value in standin.also:
                self.env.setdefault(name, value)

    def _run_task(self, name: str, argv: list[str]) -> None:
        """Run a one-off command to its end; its failure stops the start."""
        proc = self._started(Proc(name, argv, self.env, self.out))
        self.tasks.append(proc)
        while proc.alive():
            self.stop.wait(0.05)
            self._checkpoint()
        proc.join_output()
        self.tasks.remove(proc)
        if proc.returncode != 0:
            raise StartError(
                f"`{' '.join(argv[1:])}` failed with exit code "
                f"{proc.returncode}; its output is above"
            )

    def _started(self, proc: Proc) -> Proc:
        self.out.say(f"started {proc.name} pid {proc.pid}")
        return proc

    def _banner(self) -> None:
        lines = banner(
            port=self.port,
            env=self.env,
            used=[(s, self.demo[s.label]) for s in STANDINS if s.label in self.demo],
            redis_note=self.redis_note,
        )
        for text in lines:
            self.out.say(text)

    # Running and stopping ------------------------------------------------------

    def supervise(self) -> int:
        """Wait for a stop signal (0) or a process that ends on its own (1)."""
        ready = False
        while not self.stop.wait(0.2):
            if dead := self._first_dead():
                self.out.say(f"{dead} exited unexpectedly; stopping everything")
                return 1
            if not ready and answers(self._health_url, timeout=0.5):
                ready = True
                self.out.say(f"ready: http://127.0.0.1:{self.port}/")
        return 0

    @property
    def _health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def _first_dead(self) -> str | None:
        for proc in self.standins + self.apps:
            if (code := proc.returncode) is not None:
                return f"{proc.name} (pid {proc.pid}, {how(code)})"
        if self.redis is not None and not self.redis.proc.alive():
            return f"redis (pid {self.redis.pid})"
        return None

    def shutdown(self) -> None:
        """Stop the app processes, then the stand-ins, then Redis."""
        if self.signal_name:
            self.out.say(f"got {self.signal_name}, stopping")
        for procs in (self.tasks + self.apps, self.standins):
            codes = stop_all(procs, STOP_TIMEOUT, self.force)
            for proc, code in zip(procs, codes, strict=True):
                self.out.say(f"stopped {proc.name} (pid {proc.pid}, {how(code)})")
        if self.redis is not None:
            self.redis.stop()
            self.out.say(f"stopped redis (pid {self.redis.pid})")


def banner(
    port: int,
    env: Mapping[str, str],
    used: list[tuple[Standin, str]],
    redis_note: str,
) -> list[str]:
    """What `make run` prints once everything started: where to go, who to log in
    as, where mail goes, and each stand-in it started with its address."""
    if env.get("EMAIL_HOST", "").strip():
        mail = f"sent to {env['EMAIL_HOST']} (EMAIL_HOST)"
    else:
        mail = "printed below by the worker, each with its decision link"
    if used:
        demo = ["demo mode   on: local stand-ins for the services without a key"]
        demo += [f"            {s.label:<8} {url}{s.detail}" for s, url in used]
    else:
        demo = ["demo mode   off: the real services (their keys are set)"]
    rule = "-" * 64
    return [
        rule,
        f"agentsite   http://127.0.0.1:{port}/",
        f"links       {env['SITE_URL']} (SITE_URL: the inbox, mail and webhooks)",
        *LOGINS,
        f"mail        {mail}",
        *demo,
        f"redis       {redis_note}",
        "stop        Ctrl-C",
        rule,
    ]


def site_url(env: Mapping[str, str], port: int) -> str:
    """The origin of the links the app sends (`SITE_URL`): the one it is given, or
    this machine at the port `make run` serves."""
    return env.get("SITE_URL", "").strip() or f"http://127.0.0.1:{port}"


def run_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The processes' environment: development settings unless `.env` or the shell
    says otherwise (settings default `DEBUG` to off, for production)."""
    env = child_env(environ)
    env.setdefault("DEBUG", "1")
    return env


def main() -> int:
    """Entry point of `python -m stack run`."""
    load_dotenv(ROOT / ".env")
    code = Runner(run_env(os.environ), Output()).run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads our output any more; don't let exit complain about it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code
