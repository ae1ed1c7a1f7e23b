"""One chaos run: the real system, a seeded random workload, SIGKILLs every few
seconds, Redis and PostgreSQL crashed now and then; at the end, every invariant of
`check` from the database, the stand-ins' records of effects and the watchers.

Everything random comes from the seed: the workload's choices (each actor its own
`Random(seed, actor)`) and the schedule of kills and restarts (printed, and saved with
the gathered data). The timing of a kill relative to the work in flight still varies
from run to run: a seed replays the same schedule, not the same interleaving.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from bench.system import bench_env
from stack.supervisor import WORKER_READY, Proc, answers, stop_all

from .check import Gathered, Report, check
from .cluster import PrivatePostgres, PrivateRedis
from .gather import from_database

USERS = ("alice", "bob", "carol", "dave", "erin")
APPROVERS = ("alice", "bob", "carol")
ROOMS = ("quorum", "foureyes", "plain")
# The room whose schedule posts a request every minute, from the sweep.
SCHEDULED = "plain"
# The tools whose rule in a room lets an approval grant (one approval, no four eyes,
# no delay, a target): add_comment in "plain".
GRANTABLE = {("plain", "add_comment")}
KILLABLE = ("web1", "web2", "worker1", "worker2", "beat", "openai")


@dataclass
class Plan:
    """What a seed decides: the kills and restarts, at seconds into the run."""

    seed: int
    seconds: float
    kill_every: float
    restart_every: float
    events: list[tuple[float, str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, seed: int, seconds: float, kill_every: float, restart_every: float):
        plan = cls(seed, seconds, kill_every, restart_every)
        rng = random.Random(f"{seed}-schedule")
        at = 3.0
        while at < seconds:
            plan.events.append((round(at, 2), "kill", rng.choice(KILLABLE)))
            at += rng.uniform(0.5, 1.5) * kill_every
        at = restart_every * rng.uniform(0.6, 1.0)
        which = rng.choice(["redis", "postgres"])
        while at < seconds:
            plan.events.append((round(at, 2), "crash", which))
            which = "postgres" if which == "redis" else "redis"
            at += rng.uniform(0.7, 1.3) * restart_every
        plan.events.sort()
        return plan


@dataclass
class Tally:
    operations: Counter = field(default_factory=lambda: Counter())
    refused: Counter = field(default_factory=lambda: Counter())
    kills: Counter = field(default_factory=lambda: Counter())
    crashes: Counter = field(default_factory=lambda: Counter())
    unreachable: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, outcome: int | str) -> None:
        with self.lock:
            self.operations[kind] += 1
            if not (isinstance(outcome, int) and outcome < 300):
                self.refused[f"{kind}:{outcome}"] += 1


class System:
    """The processes of one run, on the run's own PostgreSQL and Redis."""

    def __init__(self, dir: Path, say) -> None:
        self.dir, self.say = dir, say
        self.logs = dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pg = PrivatePostgres(self.logs / "postgres.log")
        self.redis = PrivateRedis(dir / "redis")
        self.env = bench_env(self.redis.url, f"chaos-{secrets.token_hex(3)}")
        self.env.update(
            DATABASE_URL=self.pg.url,
            GITHUB_TOKEN="chaos-github-token",
            GITHUB_REPOSITORY="demo/agentsite",
            WEBHOOK_ALLOW_PRIVATE="1",
            # Short leases and a fast sweep: recovery from a kill within seconds.
            AGENT_LEASE_SECONDS="3",
            AGENT_SWEEP_SECONDS="1",
            AGENT_SWEEP_GRACE_SECONDS="2",
            DELIVERY_RETRY_BASE="1",
            DELIVERY_MAX_ATTEMPTS="30",
            WORKER_CONCURRENCY="16",
            AGENT_MAX_ATTEMPTS="30",
            # The run's sender stays under it: a 429 would hide nothing, but
            # spend deliveries.
            TRIGGER_MAX_PER_MINUTE="600",
        )
        self.procs: dict[str, Proc] = {}
        self.lock = threading.Lock()

    def start_standins(self) -> None:
        for api in ("openai", "linear", "github"):
            args = ["--token-delay", "0.02"] if api == "openai" else []
            proc = Proc.standin(api, self.env, self.logs / f"{api}.log", args=args)
            url = proc.wait_listening(timeout=30)
            # Restarted on the port it chose first.
            port = url.split(":")[2].split("/")[0]
            proc.argv[proc.argv.index("--port") + 1] = port
            self.procs[api] = proc
            key = {"openai": "OPENAI_BASE_URL", "linear": "LINEAR_API_URL"}
            self.env[key.get(api, "GITHUB_API_URL")] = url

    def start_app(self) -> None:
        from stack.procs import free_port

        for name in ("web1", "web2"):
            self.procs[name] = Proc.procfile(
                "web", self.env, self.logs / f"{name}.log", name=name, port=free_port()
            )
        for name in ("worker1", "worker2"):
            node = ["-n", f"{name}-{os.getpid()}@%h"]
            self.procs[name] = Proc.procfile(
                "worker", self.env, self.logs / f"{name}.log", name=name, args=node
            )
        beat_env = {**self.env, "BEAT_SCHEDULE_FILE": str(self.logs / "beat-sched")}
        self.procs["beat"] = Proc.procfile("beat", beat_env, self.logs / "beat.log")
        for name in ("web1", "web2"):
            self.procs[name].wait_serving(90)
        for name in ("worker1", "worker2"):
            self.procs[name].wait_line(WORKER_READY, "say it was ready", 90)

    @property
    def webs(self) -> list[str]:
        return [self.procs["web1"].url, self.procs["web2"].url]

    def kill(self, name: str) -> bool:
        """SIGKILL `name` (its whole group); False when it is down already."""
        with self.lock:
            proc = self.procs[name]
            if not proc.alive():
                return False
            proc.kill()
            assert proc.popen is not None
            proc.popen.wait(15)
            return True

    def revive(self, name: str) -> None:
        with self.lock:
            proc = self.procs[name]
            if not proc.alive():
                proc.start()

    def stop(self) -> None:
        stop_all(reversed(list(self.procs.values())))
        self.redis.stop()
        self.pg.stop()


@dataclass
class Setup:
    tokens: dict[str, str]
    # Room slug -> (trigger id, its secret).
    triggers: dict[str, tuple[str, str]]


def setup(env: dict[str, str], receiver: str) -> Setup:
    """Migrate; the people, rooms, rules, a webhook and a GitHub trigger per room,
    a schedule (every minute) in one; every user's token."""
    for key in (
        "DATABASE_URL",
        "REDIS_URL",
        "REDIS_PREFIX",
        "DEBUG",
        "SECRET_KEY",
        "GITHUB_TOKEN",
        "GITHUB_REPOSITORY",
        "GITHUB_API_URL",
        "LINEAR_API_URL",
        "OPENAI_BASE_URL",
        "WEBHOOK_ALLOW_PRIVATE",
    ):
        os.environ[key] = env[key]
    os.environ["DJANGO_SETTINGS_MODULE"] = "agentsite.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from chat.models import Membership
    from chat.services import (
        member_add,
        policy_create,
        room_create,
        schedule_create,
        token_issue,
        trigger_create,
    )
    from chat.services.webhooks import webhook_create

    call_command("migrate", interactive=False, verbosity=0)
    users = {
        # No email addresses: the outbox's mail is tested elsewhere; the run's
        # deliveries are the rooms' webhooks, which its receiver sees.
        name: get_user_model().objects.create_user(name)
        for name in (*USERS, "watcher")
    }
    tokens = {name: token_issue(user=user)[1] for name, user in users.items()}
    triggers: dict[str, tuple[str, str]] = {}
    for slug in ROOMS:
        room = room_create(user=users["alice"], name=slug, slug=slug)
        for name in USERS[1:]:
            role = (
                Membership.Role.APPROVER
                if name in APPROVERS
                else Membership.Role.MEMBER
            )
            member_add(room=room, actor=users["alice"], username=name, role=role)
        member_add(
            room=room,
            actor=users["alice"],
            username="watcher",
            role=Membership.Role.MEMBER,
        )
        for rule in RULES[slug]:
            policy_create(room=room, actor=users["alice"], data=rule)
        webhook_create(room_slug=slug, user=users["alice"], url=receiver)
        secret = secrets.token_hex(32)
        trigger = trigger_create(
            room_slug=slug,
            user=users["alice"],
            data={"source": "github", "prompt": "{{ issue.title }}", "secret": secret},
        )
        triggers[slug] = (trigger.pk, secret)
    schedule_create(
        room_slug=SCHEDULED,
        user=users["alice"],
        data={"cron": "* * * * *", "prompt": "count to 3 ({{ $slot }})"},
    )
    return Setup(tokens, triggers)


# A quorum of two on updates and a delay (retractable) on creates; four eyes and a
# delay on comments; the defaults, with comments expiring soon.
RULES: dict[str, list[dict[str, Any]]] = {
    "quorum": [
        {"tool": "update_issue", "mode": "ask", "approvals_required": 2},
        {"tool": "github_update_issue", "mode": "ask", "approvals_required": 2},
        {"tool": "create_issue", "mode": "ask", "delay": 4},
    ],
    "foureyes": [
        {"tool": "*", "mode": "ask", "requester_may_approve": False},
        {
            "tool": "add_comment",
            "mode": "ask",
            "requester_may_approve": False,
            "delay": 3,
        },
        {
            "tool": "github_add_comment",
            "mode": "ask",
            "approvals_required": 2,
            "requester_may_approve": False,
        },
    ],
    "plain": [
        {"tool": "add_comment", "mode": "ask", "timeout": 25},
        {"tool": "github_create_issue", "mode": "ask", "timeout": 25},
    ],
}


class Receiver(ThreadingHTTPServer):
    """Takes the rooms' webhook deliveries: `X-Agentsite-Delivery` and the body."""

    def __init__(self) -> None:
        self.hits: list[dict[str, str]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: Receiver = self.server  # type: ignore[assignment]
        with server.lock:
            server.hits.append(
                {
                    "id": self.headers.get("X-Agentsite-Delivery", ""),
                    "body": body.decode(errors="replace"),
                }
            )
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Watcher(threading.Thread):
    """A WebSocket client of one room on one web process; a new session (a new
    watcher, for the checker) each time its socket is cut."""

    def __init__(self, run: Run, room: str, web: int) -> None:
        super().__init__(daemon=True)
        self.run_, self.room, self.web = run, room, web
        self.sessions: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.ws: Any = None

    def run(self) -> None:
        n = 0
        while not self.run_.ending.is_set():
            n += 1
            url = self.run_.system.webs[self.web].replace("http", "ws", 1)
            session = {
                "name": f"{self.room}-w{self.web}-{n}",
                "room": self.room,
                "snapshot_seq": 0,
                "seqs": [],
                "streamed": {},
                "final": {},
                "stayed": False,
                "epoch": self.run_.epoch,
            }
            try:
                with connect(
                    f"{url}/ws/rooms/{self.room}/",
                    additional_headers={
                        "Authorization": f"Token {self.run_.tokens['watcher']}"
                    },
                    open_timeout=5,
                    max_size=2**24,
                ) as ws:
                    self.ws, self.current = ws, session
                    self.sessions.append(session)
                    for raw in ws:
                        self._frame(session, json.loads(raw))
            except (OSError, WebSocketException, TimeoutError):
                pass
            self.current = None
            time.sleep(0.3)

    def _frame(self, session: dict[str, Any], frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "snapshot":
            session["snapshot_seq"] = frame["seq"]
            return
        if kind == "delta":
            got = session["streamed"].setdefault(
                frame["message"], {"text": "", "from_start": frame["offset"] == 0}
            )
            if frame["offset"] > len(got["text"]):
                got["from_start"] = False
            got["text"] = got["text"][: frame["offset"]] + frame["text"]
            return
        if "seq" in frame and frame.get("seq") is not None:
            session["seqs"].append(frame["seq"])
        if kind == "message" and frame["message"].get("role") == "assistant":
            message = frame["message"]
            session["final"][message["id"]] = message.get("content") or ""

    def finish(self) -> None:
        """The end of the run: a session still open that began after the last
        crash of Redis (whose pub/sub loses what it held) stayed to the end."""
        session = self.current
        if session is not None and session["epoch"] == self.run_.epoch:
            session["stayed"] = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close()


class Run:
    def __init__(self, plan: Plan, users: int, out: Path | None, say=print) -> None:
        self.plan, self.users, self.say = plan, users, say
        self.dir = out or Path(tempfile.mkdtemp(prefix="agentsite-chaos-"))
        self.tally = Tally()
        self.ending = threading.Event()
        self.stopping = threading.Event()
        # Set when the run stops its system: threads that started processes last.
        self.over = threading.Event()
        self.epoch = 0
        self.tag = 0
        self.tag_lock = threading.Lock()
        self.tokens: dict[str, str] = {}
        self.triggers: dict[str, tuple[str, str]] = {}
        self.hooks: list[dict[str, Any]] = []
        self.hooks_lock = threading.Lock()
        self.schedule_log: list[str] = []
        self.revivals: queue.Queue[tuple[float, str]] = queue.Queue()

    # The run ----------------------------------------------------------------

    def execute(self) -> tuple[Report, Gathered]:
        self.system = System(self.dir, self.say)
        receiver = Receiver()
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        try:
            self.system.start_standins()
            made = setup(self.system.env, receiver.url)
            self.tokens, self.triggers = made.tokens, made.triggers
            self.system.start_app()
            self.say(
                f"chaos: system up in {self.dir}; seed {self.plan.seed}, "
                f"{self.plan.seconds:.0f} s of chaos"
            )
            watchers = [Watcher(self, room, web) for room in ROOMS for web in (0, 1)]
            for watcher in watchers:
                watcher.start()
            actors = [
                threading.Thread(target=self._actor, args=(i,), daemon=True)
                for i in range(self.users)
            ]
            for actor in actors:
                actor.start()
            self._chaos()
            self.stopping.set()
            for actor in actors:
                actor.join(30)
            self._stop_the_schedule()
            self._settle()
            for watcher in watchers:
                watcher.finish()
            self.ending.set()
            gathered = self._gather(watchers, receiver)
        finally:
            self.ending.set()
            self.over.set()
            receiver.shutdown()
            self.system.stop()
        (self.dir / "gathered.json").write_text(gathered.to_json())
        return check(gathered), gathered

    def _chaos(self) -> None:
        """Follow the plan: kills from this thread, crashes of Redis and PostgreSQL
        from their own, so a slow restart of either never holds the kills back."""
        threading.Thread(target=self._reviver, daemon=True).start()
        start = time.monotonic()
        events = self.plan.events
        kills = [(at, target) for at, what, target in events if what == "kill"]
        crashes = [(at, target) for at, what, target in events if what != "kill"]
        crashed = threading.Event()
        threading.Thread(
            target=self._crashes, args=(start, crashes, crashed), daemon=True
        ).start()
        for at, target in kills:
            if not self._wait_until(start, at):
                break
            stamp = f"{time.monotonic() - start:7.2f}s kill"
            try:
                killed = self._kill_one(target, at)
                self.schedule_log.append(f"{stamp} {killed or target + ' (none up)'}")
            except Exception as exc:  # restarted by the reviver all the same
                self.say(f"chaos: {stamp} {target} went wrong: {exc}")
            self._faults()
        crashed.wait()
        rest = start + self.plan.seconds - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        time.sleep(2.5)  # the last restarts' timers
        for name in self.system.procs:
            self.system.revive(name)

    def _wait_until(self, start: float, at: float) -> bool:
        """Sleep until `at` seconds into the chaos; False once the minutes are over
        (behind the schedule on a loaded machine: the run lasts its minutes)."""
        if time.monotonic() - start > self.plan.seconds:
            self.schedule_log.append(f"  (stopped behind schedule, at {at}s)")
            return False
        time.sleep(max(0.0, start + at - time.monotonic()))
        return True

    def _kill_one(self, target: str, at: float) -> str | None:
        """SIGKILL the planned process or, when it is down already (or it is a web
        process whose twin is not serving), the next of the others in a seeded
        order that is up: every planned kill kills something. The process comes
        back in the background after a seeded pause, so the schedule keeps its
        pace. Returns what was killed."""
        rng = random.Random(f"{self.plan.seed}-{at}")
        others = [name for name in KILLABLE if name != target]
        rng.shuffle(others)
        for name in (target, *others):
            if name.startswith("web") and not self._twin_serves(name):
                continue
            if self.system.kill(name):
                self.tally.kills[name] += 1
                self.revivals.put((time.monotonic() + rng.uniform(0.2, 2), name))
                return name
        return None

    def _twin_serves(self, web: str) -> bool:
        """Whether the other web process serves: the run tests recovery, not an
        outage of the whole site."""
        twin = self.system.procs["web2" if web == "web1" else "web1"]
        return twin.alive() and answers(f"{twin.url}/healthz")

    def _crashes(
        self, start: float, crashes: list[tuple[float, str]], done: threading.Event
    ) -> None:
        """Crash and restart Redis and PostgreSQL on the plan's schedule, then live
        on until the run ends: the Redis this thread restarted dies with it (the
        supervisor's children get SIGKILL when the thread that started them ends)."""
        for at, target in crashes:
            if not self._wait_until(start, at):
                break
            stamp = f"{time.monotonic() - start:7.2f}s crash {target}"
            self.schedule_log.append(stamp)
            try:
                server = self.system.redis if target == "redis" else self.system.pg
                server.crash()
                self.tally.crashes[target] += 1
                time.sleep(1)
                server.start()
                if target == "redis":
                    self.epoch += 1
            except Exception as exc:
                self.say(f"chaos: {stamp} went wrong: {exc}")
        done.set()
        self.over.wait()

    def _reviver(self) -> None:
        """Restart killed processes when due, from this one long-lived thread: a
        child started by a thread that then ends would die with it (the
        supervisor's children get SIGKILL when their parent thread exits)."""
        while True:
            due, name = self.revivals.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                self.system.revive(name)
            except Exception as exc:
                self.say(f"chaos: could not restart {name}: {exc}")

    def _faults(self) -> None:
        """Now and then a stand-in that holds its answer or loses it after applying."""
        rng = random.Random(f"{self.plan.seed}-{len(self.schedule_log)}")
        if rng.random() > 0.3:
            return
        op, api = rng.choice(
            [
                ("issueUpdate", "linear"),
                ("issueCreate", "linear"),
                ("commentCreate", "linear"),
                ("update_issue", "github"),
                ("add_comment", "github"),
                ("create_issue", "github"),
            ]
        )
        fault = (
            {"op": op, "status": 504, "after_apply": True}
            if rng.random() < 0.5
            else {"op": op, "delay": rng.uniform(1, 4)}
        )
        base = self.system.env[
            "LINEAR_API_URL" if api == "linear" else "GITHUB_API_URL"
        ]
        base = base.removesuffix("/graphql")
        try:
            requests.post(
                f"{base}/_control/faults", json={"faults": [fault]}, timeout=5
            )
        except requests.RequestException:
            pass

    # The workload -----------------------------------------------------------

    def _next_tag(self) -> str:
        with self.tag_lock:
            self.tag += 1
            return f"cx{self.plan.seed}-{self.tag}"

    def _call(
        self, user: str, method: str, path: str, body: Any = None, kind: str = ""
    ) -> tuple[int | str, Any]:
        # As a client behind a load balancer: the other web process when one
        # does not answer (killed); a call that timed out is not repeated.
        outcome: int | str = ""
        data: Any = None
        for web in random.sample(self.system.webs, 2):
            try:
                answer = requests.request(
                    method,
                    f"{web}{path}",
                    json=body,
                    timeout=10,
                    headers={"Authorization": f"Token {self.tokens[user]}"},
                )
            except requests.ConnectionError as exc:
                outcome = type(exc).__name__
                if _refused(exc):
                    outcome = "refused"
                    continue  # never reached it: the other one may take it
                break  # cut mid-answer: it may have been done; not sent twice
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                break
            outcome = answer.status_code
            try:
                data = answer.json()
            except ValueError:
                data = None
            break
        if outcome == "refused":
            # Neither web process answers (both restarting): back off, as a client.
            with self.tally.lock:
                self.tally.unreachable += 1
            time.sleep(1)
        elif kind:
            self.tally.count(kind, outcome)
        return outcome, data

    def _actor(self, index: int) -> None:
        rng = random.Random(f"{self.plan.seed}-actor-{index}")
        user = USERS[index % len(USERS)]
        while not self.stopping.is_set():
            op = rng.choices(
                [
                    "stream",
                    "tools",
                    "vote",
                    "decide_all",
                    "hook",
                    "retract",
                    "cancel",
                    "member",
                ],
                weights=[2, 4, 6, 1.5, 1.5, 1, 1, 0.3],
            )[0]
            getattr(self, f"_op_{op}")(rng, user)
            time.sleep(rng.uniform(0.1, 0.8))

    def _op_stream(self, rng: random.Random, user: str) -> None:
        room = rng.choice(ROOMS)
        text = f"count to {rng.randint(10, 60)}"
        self._call(
            user, "POST", f"/api/rooms/{room}/requests", {"text": text}, "ask_stream"
        )

    def _command(self, rng: random.Random) -> str:
        tag = self._next_tag()
        k = rng.randint(1, 12)
        return rng.choice(
            [
                f'create an issue titled "{tag}"',
                f"set ENG-{k} title to {tag}",
                f"comment on ENG-{k}: {tag}",
                f'call github_create_issue {{"title": "{tag}"}}',
                f'call github_update_issue {{"number": {k}, "title": "{tag}"}}',
                f'call github_add_comment {{"number": {k}, "body": "{tag}"}}',
            ]
        )

    def _op_tools(self, rng: random.Random, user: str) -> None:
        room = rng.choice(ROOMS)
        parts = [self._command(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
        self._call(
            user,
            "POST",
            f"/api/rooms/{room}/requests",
            {"text": " ;; ".join(parts)},
            "ask_tools",
        )

    def _op_vote(self, rng: random.Random, user: str) -> None:
        if user not in APPROVERS:
            user = rng.choice(APPROVERS)
        status, found = self._call(user, "GET", "/api/actions?awaiting=me")
        if status != 200 or not found:
            return
        action = rng.choice(found)
        grantable = [a for a in found if (a["room"], a["tool"]) in GRANTABLE]
        if grantable and rng.random() < 0.4:
            action = rng.choice(grantable)  # grants are rare otherwise
        roll = rng.random()
        if roll < 0.12:
            self._call(
                user,
                "POST",
                f"/api/actions/{action['id']}/deny",
                {"reason": "chaos says no"},
                "deny",
            )
            return
        body: dict[str, Any] = {}
        if (action["room"], action["tool"]) in GRANTABLE and roll > 0.6:
            # A short grant: the same comment on the same issue runs at once for
            # a few seconds, and asks again after.
            seconds = rng.randint(8, 25)
            body["grant"] = {"seconds": seconds}
            status, _ = self._call(
                user, "POST", f"/api/actions/{action['id']}/approve", body, "grant"
            )
            if status == 200:
                # The same comment on the same issue: at once (the grant runs it)
                # and after the grant's end (asked again).
                issue = action["arguments"].get("id")
                self._ask_comment(user, issue)
                later = threading.Timer(
                    seconds + rng.uniform(1, 4), self._ask_comment, args=(user, issue)
                )
                later.daemon = True
                later.start()
            return
        if roll < 0.22:
            edited = json.loads(
                json.dumps(action["arguments"]).replace(
                    f"{self._tag_in(action)}", f"{self._tag_in(action)}e"
                )
            )
            if edited != action["arguments"]:
                body["arguments"] = edited
        self._call(
            user,
            "POST",
            f"/api/actions/{action['id']}/approve",
            body,
            "edit" if body else "approve",
        )

    def _ask_comment(self, user: str, issue: str) -> None:
        text = f"comment on {issue}: {self._next_tag()}"
        room = next(room for room, tool in GRANTABLE if tool == "add_comment")
        self._call(
            user, "POST", f"/api/rooms/{room}/requests", {"text": text}, "ask_granted"
        )

    def _op_decide_all(self, rng: random.Random, user: str) -> None:
        """One decision on every pending action of a request (several, if any)."""
        if user not in APPROVERS:
            user = rng.choice(APPROVERS)
        status, found = self._call(user, "GET", "/api/actions?awaiting=me")
        if status != 200 or not found:
            return
        pending = Counter(a["request"] for a in found)
        request = max(pending, key=lambda r: (pending[r], rng.random()))
        deny = rng.random() < 0.15
        self._call(
            user,
            "POST",
            f"/api/requests/{request}/decide",
            {"decision": "deny" if deny else "approve", "reason": "chaos, all"},
            "decide_all_deny" if deny else "decide_all",
        )

    def _op_hook(self, rng: random.Random, user: str) -> None:
        """A signed GitHub delivery to a room's trigger: its id sometimes sent
        twice at once, sometimes again a few seconds later (a redelivery)."""
        room = rng.choice(ROOMS)
        trigger, secret = self.triggers[room]
        title = (
            self._command(rng)
            if rng.random() < 0.5
            else f"count to {rng.randint(5, 20)}"
        )
        body = json.dumps({"action": "opened", "issue": {"title": title}}).encode()
        delivery = f"{self._next_tag()}-d"
        roll = rng.random()
        if roll < 0.3:
            twin = threading.Thread(
                target=self._hook_send, args=(trigger, secret, delivery, body)
            )
            twin.start()
            self._hook_send(trigger, secret, delivery, body)
            twin.join()
            return
        self._hook_send(trigger, secret, delivery, body)
        if roll < 0.6:
            later = threading.Timer(
                rng.uniform(1, 6),
                self._hook_send,
                args=(trigger, secret, delivery, body),
            )
            later.daemon = True
            later.start()

    def _hook_send(self, trigger: str, secret: str, delivery: str, body: bytes) -> None:
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": f"sha256={signature}",
        }
        outcome: int | str = ""
        answer: Any = None
        for web in random.sample(self.system.webs, 2):
            try:
                got = requests.post(
                    f"{web}/hooks/{trigger}", data=body, headers=headers, timeout=10
                )
            except requests.ConnectionError as exc:
                outcome = "refused" if _refused(exc) else type(exc).__name__
                if outcome == "refused":
                    continue
                break
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                break
            outcome = got.status_code
            with contextlib.suppress(ValueError):
                answer = got.json()
            break
        self.tally.count("hook", outcome)
        with self.hooks_lock:
            self.hooks.append(
                {
                    "trigger": trigger,
                    "delivery": delivery,
                    "status": outcome,
                    "body": answer,
                }
            )

    @staticmethod
    def _tag_in(action: dict[str, Any]) -> str:
        from .check import tags_of

        tags = sorted(t for t in tags_of(action["arguments"]) if not t.endswith("e"))
        return tags[0] if tags else "\0no-tag"

    def _op_retract(self, rng: random.Random, user: str) -> None:
        if user not in APPROVERS:
            user = rng.choice(APPROVERS)
        status, found = self._call(user, "GET", "/api/actions?status=approved")
        waiting = [a for a in found or [] if a.get("runs_at")] if status == 200 else []
        if waiting:
            action = rng.choice(waiting)
            self._call(
                user,
                "POST",
                f"/api/actions/{action['id']}/retract",
                {"reason": "wait"},
                "retract",
            )

    def _op_cancel(self, rng: random.Random, user: str) -> None:
        status, found = self._call(user, "GET", "/api/actions?status=pending")
        if status == 200 and found:
            action = rng.choice(found)
            self._call(
                user,
                "POST",
                f"/api/requests/{action['request']}/cancel",
                None,
                "cancel",
            )

    def _op_member(self, rng: random.Random, user: str) -> None:
        """An approver takes a member or approver out of a room and puts them back."""
        room, who = rng.choice(ROOMS), rng.choice(USERS[1:])
        role = "approver" if who in APPROVERS else "member"
        self._call(
            "alice", "DELETE", f"/api/rooms/{room}/members/{who}", None, "member_remove"
        )
        time.sleep(rng.uniform(0.5, 3))
        self._call(
            "alice",
            "POST",
            f"/api/rooms/{room}/members",
            {"username": who, "role": role},
            "member_add",
        )

    # The end ------------------------------------------------------------------

    def _stop_the_schedule(self) -> None:
        """Disable the schedule with the rest of the workload, as the admin's action
        does: a slot posted after the watchers left would be a turn nobody saw end."""
        from django.db import close_old_connections

        from chat.models import Schedule

        for _ in range(30):
            close_old_connections()
            try:
                Schedule.objects.update(enabled=False)
                return
            except Exception:  # PostgreSQL restarting: try again
                time.sleep(1)

    def _settle(self, timeout: float = 600) -> None:
        """Wait until nothing runs: every request ended or waiting for people,
        every approved action run, every delivery sent (or `timeout`, or two
        minutes without progress)."""
        from django.db import close_old_connections, connection

        from chat.models import Action, Delivery, Request

        self.say("chaos: the chaos is over; waiting for the system to settle")
        deadline = time.monotonic() + timeout
        quiet_since = None
        best: int | None = None
        progress = time.monotonic()
        while time.monotonic() < deadline:
            close_old_connections()
            try:
                busy = (
                    Request.objects.filter(status__in=["queued", "running"]).count()
                    + Action.objects.filter(
                        status__in=["approved", "executing"]
                    ).count()
                    + Delivery.objects.filter(status="pending").count()
                )
            except Exception:
                connection.close()
                busy = -1
            if busy > 0 and (best is None or busy < best):
                best, progress = busy, time.monotonic()
            if time.monotonic() - progress > 120:
                break
            if busy == 0:
                quiet_since = quiet_since or time.monotonic()
                # Long enough for the sweep to find a stranded one.
                if time.monotonic() - quiet_since > 8:
                    return
            else:
                quiet_since = None
            time.sleep(1)
        self.say("chaos: still busy at the end of the settling time")

    def _gather(self, watchers: list[Watcher], receiver: Receiver) -> Gathered:
        from django.db import close_old_connections

        close_old_connections()
        data = from_database()
        data.received = list(receiver.hits)
        with self.hooks_lock:
            data.hooks = list(self.hooks)
        env = self.system.env
        linear = env["LINEAR_API_URL"].removesuffix("/graphql")
        for e in requests.get(f"{linear}/_control/effects", timeout=10).json()[
            "effects"
        ]:
            data.effects.append(
                {
                    "pack": "linear",
                    "op": e["op"],
                    "target": e["identifier"],
                    "text": e["input"],
                }
            )
        github = env["GITHUB_API_URL"]
        for e in requests.get(f"{github}/_control/effects", timeout=10).json()[
            "effects"
        ]:
            data.effects.append(
                {
                    "pack": "github",
                    "op": e["op"],
                    "target": e["number"],
                    "text": e["fields"],
                }
            )
        for watcher in watchers:
            data.watchers.extend(watcher.sessions)
        return data


def _refused(exc: requests.ConnectionError) -> bool:
    """Whether the connection was refused (the process is down), as opposed to cut
    after the request went out."""
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text


def main(
    minutes: float,
    seed: int,
    users: int,
    kill_every: float,
    restart_every: float,
    out: Path | None,
) -> int:
    # The run's own connections, cut by each crash of PostgreSQL, are replaced.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    plan = Plan.of(seed, minutes * 60, kill_every, restart_every)
    run = Run(plan, users, out)
    started = time.monotonic()
    report, gathered = run.execute()
    tally = run.tally
    print(
        f"\nchaos: seed {seed}, {minutes:g} min of chaos, "
        f"{time.monotonic() - started:.0f} s in all; data in {run.dir}"
    )
    print(
        f"  operations: {sum(tally.operations.values())} "
        f"({dict(sorted(tally.operations.items()))})"
    )
    print(f"  calls that found no web process up: {tally.unreachable}")
    print(
        f"  refused or failed calls: {sum(tally.refused.values())} "
        f"({dict(tally.refused.most_common(12))})"
    )
    print(f"  kills: {sum(tally.kills.values())} ({dict(sorted(tally.kills.items()))})")
    print(
        f"  restarts: redis {tally.crashes['redis']}, "
        f"postgres {tally.crashes['postgres']}"
    )
    print(
        f"  requests {len(gathered.requests)}, actions {len(gathered.actions)}, "
        f"effects {len(gathered.effects)}, watcher sessions "
        f"{len(gathered.watchers)} ({sum(w['stayed'] for w in gathered.watchers)} "
        f"stayed), deliveries {len(gathered.deliveries)}"
    )
    triggered = Counter(
        (r.get("trigger") or {}).get("kind", "person") for r in gathered.requests
    )
    print(
        f"  trigger deliveries sent {len(gathered.hooks)} "
        f"({dict(Counter(str(h['status']) for h in gathered.hooks))}); requests "
        f"posted by triggers {triggered['webhook']}, by the schedule "
        f"{triggered['schedule']}; audit records "
        f"{sum(len(r) for r in gathered.audit.values())}, grants "
        f"{len(gathered.grants)}"
    )
    print(
        f"  invariants checked: {sum(report.checked.values())} "
        f"({dict(sorted(report.checked.items()))})"
    )
    print(f"  violations: {len(report.violations)}")
    if report.violations:
        print(
            f"\nFAILED: seed {seed}; replay: python -m bench.chaos --minutes "
            f"{minutes:g} --seed {seed}"
        )
        print("kill schedule (seconds into the chaos):")
        for line in run.schedule_log:
            print(f"  {line}")
        name, detail = report.violations[0]
        print(f"first broken invariant: {name}: {detail}")
        for name, detail in report.violations[1:10]:
            print(f"  also: {name}: {detail}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(2, 1, 6, 4, 40, None))
