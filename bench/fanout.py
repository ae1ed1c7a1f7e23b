"""Token fan-out to N watchers of one room, side by side with the plain relay.

Ours: the model streams `count to K` at `rate` tokens/s; every token carries the
time the model server wrote it, and each watcher stamps what it receives, so a
token's latency is model emits -> watcher receives, through the worker, the
channel layer, Redis and the web process. The limit: the plain relay fed by a
publisher at the same rate. Both count lost tokens (1..K expected per watcher)
and the server's memory growth per idle watcher.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from websockets.sync.client import connect

from stack.procs import group_members

from .limit import publish
from .machine import Profiler, Window, cpu_seconds, rss_kb
from .stats import summary
from .system import ROOT, Proc, System

# Connections per client process: four processes for a thousand watchers.
PER_CLIENT = 250


@dataclass
class Case:
    watchers: int
    webs: int
    messages: int
    rate: float
    size: int

    @property
    def name(self) -> str:
        return f"N={self.watchers}, {self.webs} web" + ("s" if self.webs > 1 else "")


class Clients:
    """The watcher client processes of one measurement."""

    def __init__(
        self,
        system: System,
        tag: str,
        urls: list[str],
        count: int,
        mode: str,
        token: str = "",
    ) -> None:
        self.procs: list[subprocess.Popen] = []
        self.outs: list[Path] = []
        n = max(1, math.ceil(count / PER_CLIENT))
        shares = [count // n + (i < count % n) for i in range(n)]
        for i, share in enumerate(shares):
            out = system.log_dir / f"{tag}-client{i}.json"
            argv = [sys.executable, "-m", "bench.watcher", "--urls", ",".join(urls)]
            argv += ["--count", str(share), "--offset", str(sum(shares[:i]))]
            # `--token=`: a token may start with "-", an option to argparse.
            argv += ["--mode", mode, f"--token={token}", "--out", str(out)]
            with (system.log_dir / f"{tag}-client{i}.log").open("w") as log:
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        cwd=ROOT,
                        env=system.env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
            self.outs.append(out)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _ask(self, command: str) -> list[str]:
        for proc in self.procs:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
        return [proc.stdout.readline().strip() for proc in self.procs]

    def wait_connected(self) -> tuple[int, int, int]:
        lines = [proc.stdout.readline().split() for proc in self.procs]
        if not all(len(line) == 4 and line[0] == "connected" for line in lines):
            raise RuntimeError(f"watcher clients failed to start: {lines}")
        ok, failed, retries = (sum(int(x[i]) for x in lines) for i in (1, 2, 3))
        return ok, failed, retries

    def count(self) -> int:
        return sum(int(line.split()[1]) for line in self._ask("count"))

    def mark(self) -> None:
        self._ask("mark")

    def wait_quiet(
        self, server_pids: list[int], timeout: float = 180.0, step: float = 0.5
    ) -> float:
        """Wait until no frame arrives and the servers idle; return the wait."""
        start = time.monotonic()
        last, cpu, calm = -1, cpu_seconds(server_pids), 0
        while time.monotonic() - start < timeout:
            time.sleep(step)
            count, now_cpu = self.count(), cpu_seconds(server_pids)
            idle = now_cpu - cpu < 0.1 * step * max(1, len(server_pids))
            calm = calm + 1 if count == last and idle else 0
            if calm >= 2:
                break
            last, cpu = count, now_cpu
        return time.monotonic() - start

    def dump(self) -> list[dict]:
        """The results so far; the clients stay connected and start afresh."""
        self._ask("dump")
        return [json.loads(out.read_text()) for out in self.outs]

    def stop(self) -> list[dict]:
        self._ask("stop")
        for proc in self.procs:
            proc.wait(30)
        return [json.loads(out.read_text()) for out in self.outs]

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def ws_url(proc: Proc, path: str = "/") -> str:
    return proc.url.replace("http://", "ws://").rstrip("/") + path


def warm(url: str, token: str = "") -> None:
    """One connection through every code path first, so imports don't count."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    with connect(
        url, additional_headers=headers, open_timeout=30, compression=None
    ) as ws:
        if token:
            ws.recv(timeout=30)  # the snapshot


def connect_idle(
    system: System,
    tag: str,
    urls: list[str],
    servers: list[Proc],
    count: int,
    mode: str,
    token: str = "",
) -> tuple[Clients, dict]:
    """Connect `count` idle watchers; report connects and memory growth."""
    for url in urls:
        warm(url, token)
    time.sleep(0.5)
    pids = [p.pid for p in servers]
    before = sum(rss_kb(pid) for pid in pids)
    started = time.monotonic()
    clients = Clients(system, tag, urls, count, mode, token)
    connected, failed, retries = clients.wait_connected()
    connect_s = time.monotonic() - started
    settle_s = clients.wait_quiet(pids)
    after = sum(rss_kb(pid) for pid in pids)
    memory = {
        "connected": connected,
        "failed": failed,
        "retried_handshakes": retries,
        "connect_s": round(connect_s, 2),
        "settle_s": round(settle_s, 2),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_watcher": round((after - before) / max(1, connected), 1),
    }
    return clients, memory


def run_limit(system: System, case: Case, attempts: int = 2) -> dict:
    """The plain relay, best of `attempts` streams over the same watchers.

    The best, because the limit is a bound: from N = 500 the relay and its clients
    nearly fill two cores, and one stream's p99 varies tenfold from run to run.
    """
    channel = f"{system.env['REDIS_PREFIX']}:relay:{case.watchers}"
    relays = [
        system.relay(f"relay-{case.watchers}-{i}", channel) for i in range(case.webs)
    ]
    clients, tries = None, []
    try:
        urls = [r.url for r in relays]
        clients, memory = connect_idle(
            system, f"relay-{case.watchers}", urls, relays, case.watchers, "relay"
        )
        for _ in range(attempts):
            tries.append(relay_stream(system, case, channel, relays, clients))
        clients.stop()
        clients = None
    finally:
        if clients is not None:
            clients.kill()
        for relay in relays:
            system.dismiss(relay)
    best = min(tries, key=lambda t: t["latency_ms"]["p99"] or float("inf"))
    p99s = [t["latency_ms"]["p99"] for t in tries]
    return {**best, "memory": memory, "p99_of_attempts_ms": p99s}


def relay_stream(
    system: System, case: Case, channel: str, relays: list[Proc], clients: Clients
) -> dict:
    clients.mark()
    pids = [r.pid for r in relays]
    cpu, client_cpu = cpu_seconds(pids), cpu_seconds(clients.pids)
    with Window() as window:
        rate = publish(
            system.env["REDIS_URL"], channel, case.messages, case.rate, case.size
        )
        clients.wait_quiet(pids, timeout=30, step=0.25)
    cpu, client_cpu = cpu_seconds(pids) - cpu, cpu_seconds(clients.pids) - client_cpu
    out = summary(clients.dump(), case.messages)
    return {
        **out,
        "rate": round(rate, 1),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_frame": per_frame(cpu, out),
        "client_cpu_s": round(client_cpu, 2),
        "machine": window.summary,
    }


def run_ours(
    system: System, case: Case, slug: str, profile: Path | None = None
) -> dict:
    token = system.tokens["watcher"]
    webs = system.webs([f"web-{case.watchers}-{i}" for i in range(case.webs)])
    clients = None
    try:
        for web in webs:
            # A web process's first turn imports the task modules (the OpenAI SDK
            # among them) while its event loop waits: not what a running one does.
            request_id = post_request(system, web.url, slug, "count to 1")
            wait_request(system, web.url, request_id, timeout=60)
        urls = [ws_url(w, f"/ws/rooms/{slug}/") for w in webs]
        clients, memory = connect_idle(
            system, f"app-{case.watchers}", urls, webs, case.watchers, "app", token
        )
        model_config(system, token_delay=1 / case.rate)
        with Profiler(profile, [*webs, system.proc("worker")], slug):
            stream = app_stream(system, case, slug, webs, clients)
        clients.stop()
        clients = None
    finally:
        if clients is not None:
            clients.kill()
        model_config(system, token_delay=0)
        for web in webs:
            system.dismiss(web)
    return {**stream, "memory": memory}


def app_stream(
    system: System, case: Case, slug: str, webs: list[Proc], clients: Clients
) -> dict:
    """One answer of `case.messages` tokens streamed to every watcher."""
    clients.mark()
    web_pids, worker = [w.pid for w in webs], worker_pids(system)
    before = cpu_seconds(web_pids), cpu_seconds(worker), cpu_seconds(clients.pids)
    with Window() as window:
        text = f"count to {case.messages}"
        request_id = post_request(system, webs[0].url, slug, text)
        timeout = case.messages / case.rate + 60
        wait_request(system, webs[0].url, request_id, timeout=timeout)
        clients.wait_quiet(web_pids, timeout=30, step=0.25)
    web_cpu = cpu_seconds(web_pids) - before[0]
    out = summary(clients.dump(), case.messages)
    return {
        **out,
        "server_cpu_s": round(web_cpu, 2),
        "server_cpu_us_per_frame": per_frame(web_cpu, out),
        "worker_cpu_s": round(cpu_seconds(worker) - before[1], 2),
        "client_cpu_s": round(cpu_seconds(clients.pids) - before[2], 2),
        "machine": window.summary,
    }


def run_bare_memory(system: System, count: int) -> dict:
    """uvicorn's own memory per idle WebSocket, with the Procfile's flags."""
    bare = system.web("web-bare", app="bench.limit:bare_app")
    clients = None
    try:
        clients, memory = connect_idle(
            system, "bare", [ws_url(bare)], [bare], count, "relay"
        )
        clients.stop()
        clients = None
    finally:
        if clients is not None:
            clients.kill()
        system.dismiss(bare)
    return memory


def per_frame(cpu_s: float, summary: dict) -> float | None:
    """Server CPU per frame delivered to one watcher: the cost of fan-out itself."""
    frames = summary["frames_per_watcher"] * summary["watchers"]
    return round(cpu_s * 1e6 / frames, 1) if frames else None


def worker_pids(system: System) -> list[int]:
    return [
        pid for p in system.procs if p.name == "worker" for pid in group_members(p.pid)
    ]


def model_config(system: System, **config: object) -> None:
    base = system.openai.url.removesuffix("/v1")
    requests.post(f"{base}/_control/config", json=config, timeout=10).raise_for_status()


def auth(system: System, who: str = "approver") -> dict[str, str]:
    return {"Authorization": f"Token {system.tokens[who]}"}


def post_request(system: System, web_url: str, slug: str, text: str) -> str:
    response = requests.post(
        f"{web_url}/api/rooms/{slug}/requests",
        json={"text": text},
        headers=auth(system),
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["id"]


def wait_request(system: System, web_url: str, request_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = requests.get(
                f"{web_url}/api/requests/{request_id}", headers=auth(system), timeout=10
            )
        except requests.Timeout:
            continue  # a web process this busy answers later
        status = response.json().get("status")
        if status in ("completed", "failed", "cancelled"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"request {request_id} did not end within {timeout:.0f} s")
