"""K turns at once, each in its own room with a watcher, against K bare streams.

- The limit: one plain client process (asyncio, no Django, no Celery) opens K
  streams at once to the same OpenAI stand-in with the body the app sent (from
  `/_control/requests`); time to first chunk (the one carrying token 1) p50/p99.
- Ours: K rooms `c-1..c-K`, a watcher on each; K POSTs at the same moment; POST ->
  the first `delta` at that room's watcher, p50/p99, and the model's own first
  token (its emission stamp) beside it. Every request must end `completed` with
  exactly one assistant message (read from the database afterwards). Meanwhile
  the worker's RSS and the database's connections are sampled every 0.5 s, and the
  CPU of worker, web, stand-in and clients is read from /proc.

Both clients are this module run as a process: `python -m bench.concurrent
limit|turns ...` writes its JSON to `--out`. Watchers are the bare RFC 6455
connections of `bench.watcher`, stamped as bytes arrive and parsed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from stack.procs import group_members

from .fanout import model_config, ws_url
from .machine import cpu_seconds, rss_kb
from .stats import spread
from .system import ROOT, Proc, System
from .watcher import TOKEN, Connection, handshake

ENDED = (b"completed", b"failed", b"cancelled")
CONNECT_PARALLEL = 8
SAMPLE_S = 0.5
DEFAULT_POOL = 20


def rooms(k: int) -> list[str]:
    return [f"c-{i}" for i in range(1, k + 1)]


# The client processes ------------------------------------------------------------


async def http(url: str, body: bytes, headers: dict[str, str], first: bool) -> dict:
    """One POST over a fresh connection; with `first`, stamp the chunk with token 1.

    Returns the send time, the time token 1 arrived (or the response was read),
    its emission stamp, and the response body when not streaming.
    """
    parts = urlsplit(url)
    sent = time.time_ns()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    data, got, emitted = bytearray(), None, None
    while chunk := await reader.read(65536):
        data += chunk
        if first and got is None:
            for k, stamp in TOKEN.findall(bytes(data)):
                if k == b"1":
                    got, emitted = time.time_ns(), int(stamp)
                    break
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    out = {"sent": sent, "received": got or time.time_ns(), "status": status}
    if emitted is not None:
        out["emitted"] = emitted
    if not first:
        out["body"] = data.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")
    return out


async def client_limit(args: argparse.Namespace) -> dict:
    body = Path(args.body).read_bytes()
    headers = {"Authorization": "Bearer bench"}
    go = asyncio.Event()

    async def one() -> dict:
        await go.wait()
        return await http(args.url, body, headers, first=True)

    tasks = [asyncio.create_task(one()) for _ in range(args.k)]
    await asyncio.sleep(0.2)
    at_go = time.process_time()
    go.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    ok = [d for d in done if isinstance(d, dict) and "emitted" in d]
    errors: dict[str, int] = {}
    for d in done:
        if not (isinstance(d, dict) and "emitted" in d):
            what = repr(d)[:120] if isinstance(d, Exception) else f"HTTP {d['status']}"
            errors[what] = errors.get(what, 0) + 1
    return {
        "errors": errors,
        "k": args.k,
        "cpu_at_go_s": at_go,
        "failed": args.k - len(ok),
        "ttfc_ms": [(d["received"] - d["sent"]) / 1e6 for d in ok],
        "ttft_ms": [(d["emitted"] - d["sent"]) / 1e6 for d in ok],
    }


async def client_turns(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    slugs = rooms(args.k)
    gate = asyncio.Semaphore(CONNECT_PARALLEL)

    # Room i is served by web i mod n, its watcher and its poster alike.
    https, wss = args.http.split(","), args.ws.split(",")

    def served(slug: str, bases: list[str]) -> str:
        return bases[(int(slug.rpartition("-")[2]) - 1) % len(bases)]

    async def watch(slug: str) -> Connection:
        url = f"{served(slug, wss)}/ws/rooms/{slug}/"
        parts = urlsplit(url)
        async with gate:
            _, conn = await loop.create_connection(
                lambda: Connection(handshake(url, args.watcher)),
                parts.hostname,
                parts.port,
            )
            async with asyncio.timeout(60):
                await conn.opened
        return conn

    feeds = await asyncio.gather(*(watch(s) for s in slugs))
    await asyncio.sleep(1.0)  # snapshots and presence, then forget them
    for feed in feeds:
        feed.frames.clear()
    print("posting", flush=True)
    go = asyncio.Event()
    # Each room's own member posts (K people), unless --one-user.
    tokens = json.loads(Path(args.tokens).read_text()) if args.tokens else {}
    body = json.dumps({"text": args.text}).encode()

    async def post(slug: str) -> dict:
        token = tokens.get(f"room:{slug}", args.token)
        headers = {"Authorization": f"Token {token}"}
        await go.wait()
        return await http(
            f"{served(slug, https)}/api/rooms/{slug}/requests", body, headers, False
        )

    tasks = [asyncio.create_task(post(s)) for s in slugs]

    # A user over the cap posts as many more at the same moment (fairness).
    async def burst(n: int) -> int:
        headers = {"Authorization": f"Token {args.burst_token}"}
        await go.wait()
        url = f"{https[0]}/api/rooms/f-{n}/requests"
        return (await http(url, body, headers, False))["status"]

    bursts = [asyncio.create_task(burst(n)) for n in range(1, args.burst + 1)]
    await asyncio.sleep(0.2)
    go.set()
    posts = await asyncio.gather(*tasks, return_exceptions=True)
    burst_status = await asyncio.gather(*bursts, return_exceptions=True)
    ids = [json.loads(p["body"])["id"] if _accepted(p) else "" for p in posts]

    def ended(feed: Connection) -> bool:
        return any(
            data.startswith(b'{"type":"request"') and any(e in data for e in ENDED)
            for _, data in feed.frames
        )

    def streaming(feed: Connection, rid: str) -> bool:
        mark = f'"request":"{rid}"'.encode()
        return any(
            data.startswith(b'{"type":"delta"') and mark in data
            for _, data in feed.frames
        )

    deadline = time.monotonic() + args.timeout
    cancelled: dict = {}
    if args.cancel:
        # The first turn seen streaming and not ended, by its author, a moment on.
        def live() -> int | None:
            return next(
                (
                    i
                    for i, (f, rid) in enumerate(zip(feeds, ids, strict=True))
                    if rid and streaming(f, rid) and not ended(f)
                ),
                None,
            )

        target = live()
        while time.monotonic() < deadline and target is None:
            await asyncio.sleep(0.05)
            target = live()
        if target is not None:
            await asyncio.sleep(0.3)
            token = tokens.get(f"room:{slugs[target]}", args.token)
            url = f"{served(slugs[target], https)}/api/requests/{ids[target]}/cancel"
            answer = await http(url, b"", {"Authorization": f"Token {token}"}, False)
            cancelled = {
                "room": target,
                "sent": answer["sent"],
                "status": answer["status"],
            }
    if args.announce:
        # Every turn streaming: the runner may now kill the workers.
        while time.monotonic() < deadline and not all(
            streaming(f, rid) for f, rid in zip(feeds, ids, strict=True) if rid
        ):
            await asyncio.sleep(0.05)
        print("streaming", flush=True)
    while time.monotonic() < deadline and not all(map(ended, feeds)):
        await asyncio.sleep(0.2)
    rows = []
    for slug, feed, p in zip(slugs, feeds, posts, strict=True):
        rows.append(parse_turn(slug, feed.frames, p))
    statuses: dict[str, int] = {}
    for status in burst_status:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"k": args.k, "turns": rows, "cancel": cancelled, "burst": statuses}


def _accepted(post: object) -> bool:
    return isinstance(post, dict) and post["status"] == 202


def parse_turn(slug: str, frames: list[tuple[int, bytes]], post: object) -> dict:
    row: dict = {"room": slug}
    if not isinstance(post, dict) or post["status"] not in (200, 201, 202):
        row["post_error"] = repr(post)[:300]
        return row
    sent = post["sent"]
    row["post_ms"] = (post["received"] - sent) / 1e6
    rid = json.loads(post["body"])["id"]
    row["id"] = rid
    for received, data in frames:
        frame = json.loads(data)
        if frame["type"] == "delta" and frame.get("request") == rid:
            row["last_delta_at"] = received
            if "first_delta_ms" not in row:
                row["first_delta_ms"] = (received - sent) / 1e6
            for k, stamp in TOKEN.findall(frame.get("text", "").encode()):
                if k == b"1" and "model_token_ms" not in row:
                    row["model_token_ms"] = (int(stamp) - sent) / 1e6
        elif frame["type"] == "request" and frame["request"]["id"] == rid:
            row["status"] = frame["request"]["status"]
            row["status_at"] = received
    return row


def client_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["limit", "turns"])
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--url", help="limit: the stand-in's chat/completions")
    parser.add_argument("--body", help="limit: a file with the request body")
    parser.add_argument("--http", help="turns: the web processes' base URLs (a,b)")
    parser.add_argument("--ws", help="turns: the web processes' ws:// bases (a,b)")
    parser.add_argument("--token", help="turns: the poster's API token")
    parser.add_argument("--watcher", help="turns: the watcher's API token")
    parser.add_argument(
        "--tokens", help="turns: a JSON file of each room's poster (room:<slug>)"
    )
    parser.add_argument("--text", default="count to 100")
    parser.add_argument(
        "--cancel", action="store_true", help="turns: cancel a turn mid-stream"
    )
    parser.add_argument(
        "--announce",
        action="store_true",
        help="turns: print `streaming` once every turn has streamed",
    )
    parser.add_argument("--burst", type=int, default=0, help="turns: burst posts")
    parser.add_argument("--burst-token", help="turns: the burst poster's API token")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    import uvloop

    run = client_limit if args.mode == "limit" else client_turns
    result = uvloop.run(run(args))
    # Its own CPU: the runner cannot read /proc of a process that has exited.
    result["cpu_s"] = time.process_time()
    Path(args.out).write_text(json.dumps(result))
    print("done", flush=True)


# The runner ----------------------------------------------------------------------


class Sampler(threading.Thread):
    """Every 0.5 s: the worker's RSS and the bench database's connections."""

    def __init__(self, workers: list[Proc], database_url: str) -> None:
        super().__init__(daemon=True)
        self.workers, self.url = workers, database_url
        self.pg_port = urlsplit(database_url).port or 5432
        self.rss: list[int] = []
        self.pg: list[int] = []
        self.pg_worker: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = None
        if self.url.startswith(("postgres://", "postgresql://")):
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)
        while not self.halt.is_set():
            # Read anew each time: the kill case starts the workers again.
            pids = [pid for w in self.workers for pid in group_members(w.pid)]
            self.rss.append(sum(_rss_or_none(pid) or 0 for pid in pids))
            if conn is not None:
                ports = conn.execute(
                    "SELECT client_port FROM pg_stat_activity WHERE datname = "
                    "current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
                self.pg.append(len(ports))
                mine = local_ports(pids, self.pg_port)
                self.pg_worker.append(sum(p in mine for (p,) in ports))
            self.halt.wait(SAMPLE_S)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def _rss_or_none(pid: int) -> int | None:
    try:
        return rss_kb(pid)
    except OSError:
        return None  # it ended between the listing and the reading


def local_ports(pids: list[int], remote_port: int) -> set[int]:
    """The local TCP ports of the processes' sockets to `remote_port` (/proc/<pid>/fd,
    /proc/net). Only those: one local port may serve connections to different
    servers, so a worker's socket to the model server can share its number with
    a web process's database connection."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote = int(fields[2].rpartition(":")[2], 16)
            if fields[9] in inodes and remote == remote_port:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def outcomes(database_url: str, ids: list[str]) -> dict:
    """This run's requests: how many did not end `completed`, and how many have no
    assistant message (lost) or more than one (duplicated), from the database."""
    query = (
        "SELECT r.id, r.status, (SELECT count(*) FROM chat_message m "
        "WHERE m.request_id = r.id AND m.role = 'assistant') FROM chat_request r"
    )
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            found = conn.execute(query).fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            found = conn.execute(query).fetchall()
    by_id = {uuid.UUID(str(rid)).hex: (status, n) for rid, status, n in found}
    lost = duplicated = not_completed = 0
    for rid in ids:
        status, messages = by_id.get(uuid.UUID(rid).hex, ("missing", 0))
        not_completed += status != "completed"
        lost += messages == 0
        duplicated += max(0, messages - 1)
    return {"lost": lost, "duplicated": duplicated, "not_completed": not_completed}


def _client(system: System, tag: str, argv: list[str]) -> subprocess.Popen:
    log = (system.log_dir / f"{tag}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "bench.concurrent", *argv],
        cwd=ROOT,
        env=system.env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )


def _cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: cpu_seconds(pids) for name, pids in groups.items()}


@dataclass
class Extras:
    """What a concurrent-turns run does besides K turns: cancel one turn mid-stream
    (the first seen streaming), post a burst of one more user's turns beside them,
    or call `kill` once every turn streams (it kills the workers and starts them
    again)."""

    cancel: bool = False
    burst: int = 0
    kill: Callable[[], None] | None = None
    tag: str = ""


def run_ours(
    system: System,
    webs: list[Proc],
    workers: list[Proc],
    k: int,
    text: str,
    delay: float,
    one_user: bool = False,
    extras: Extras | None = None,
) -> dict:
    extras = extras or Extras()
    model_config(system, token_delay=delay)
    headers = {"Authorization": f"Token {system.tokens['approver']}"}
    for _ in workers:  # each web and (likely) each worker serves a turn first
        for web in webs:
            api = f"{web.url}/api/rooms/c-warm/requests"
            requests.post(api, json={"text": "count to 3"}, headers=headers, timeout=60)
    time.sleep(1.5)  # the warm-up turns end
    worker_pids = [pid for w in workers for pid in group_members(w.pid)]
    tag = f"concurrent-{k}{extras.tag}"
    out = system.log_dir / f"{tag}-ours.json"
    argv = ["turns", "--k", str(k), "--out", str(out)]
    argv += ["--http", ",".join(web.url for web in webs)]
    argv += ["--ws", ",".join(ws_url(web).rstrip("/") for web in webs)]
    # `--name=value`: a token may start with "-", which argparse would take for an
    # option of its own.
    argv += [f"--token={system.tokens['approver']}"]
    argv += [f"--watcher={system.tokens['watcher']}", f"--text={text}"]
    if not one_user:
        tokens = system.log_dir / "concurrent-tokens.json"
        tokens.write_text(json.dumps(system.tokens))
        argv += ["--tokens", str(tokens)]
    if extras.cancel:
        argv.append("--cancel")
    if extras.burst:
        argv += [
            "--burst",
            str(extras.burst),
            f"--burst-token={system.tokens['burst']}",
        ]
    if extras.kill:
        argv += ["--announce", "--timeout", "240"]
    rss_before = sum(rss_kb(pid) for pid in worker_pids)
    sampler = Sampler(workers, system.env["DATABASE_URL"])
    sampler.start()
    client = _client(system, f"{tag}-ours", argv)
    line = client.stdout.readline().strip()
    if line != "posting":
        client.kill()
        sampler.stop()
        raise RuntimeError(f"concurrent client failed: {line!r}")
    groups = {
        "worker": worker_pids,
        "web": [pid for web in webs for pid in group_members(web.pid)],
        "standin": group_members(system.openai.pid),
    }
    cpu, started = _cpu(groups), time.monotonic()
    client_before = cpu_seconds([client.pid])
    killed_at = None
    if extras.kill:
        client.stdout.readline()  # "streaming"
        killed_at = time.time_ns()
        extras.kill()
    client.stdout.readline()
    elapsed = time.monotonic() - started
    used = {n: round(v - cpu[n], 2) for n, v in _cpu(groups).items()}
    client.wait(60)
    sampler.stop()
    result = json.loads(out.read_text())
    used["clients"] = round(result["cpu_s"] - client_before, 2)
    turns = result["turns"]
    which = result["cancel"].get("room")
    cancelled = turns[which] if extras.cancel and which is not None else None
    counted = [t for t in turns if t is not cancelled]
    done = outcomes(system.env["DATABASE_URL"], [t["id"] for t in counted if "id" in t])
    first = [t["first_delta_ms"] for t in turns if "first_delta_ms" in t]
    peak = max([rss_before, *sampler.rss])
    row = {
        "k": k,
        "posters": 1 if one_user else k,
        "webs": len(webs),
        "workers": len(workers),
        "text": text,
        "token_delay": delay,
        "post_to_first_delta_ms": spread(first),
        "post_to_model_token_ms": spread(
            [t["model_token_ms"] for t in turns if "model_token_ms" in t]
        ),
        "post_call_ms": spread([t["post_ms"] for t in turns if "post_ms" in t]),
        "post_errors": sum("post_error" in t for t in turns),
        "no_delta": k - len(first),
        "watcher_saw_completed": sum(t.get("status") == "completed" for t in counted),
        **done,
        "rss_before_kb": rss_before,
        "rss_peak_kb": peak,
        "kb_per_turn": round((peak - rss_before) / max(1, k), 1),
        "pg_connections_max": max(sampler.pg, default=None),
        "pg_worker_connections_max": max(sampler.pg_worker, default=None),
        "pg_pool_size": int(os.environ.get("DB_POOL_SIZE", DEFAULT_POOL)),
        "cpu_s": used,
        "cpu_cores": {n: round(v / elapsed, 4) for n, v in used.items()},
        "seconds": round(elapsed, 1),
    }
    if extras.cancel:
        row["cancel"] = cancel_outcome(result["cancel"], cancelled or {})
    if extras.burst:
        row["burst"] = result["burst"]
    if killed_at is not None:
        ends = [t["status_at"] for t in counted if "status_at" in t]
        row["recovered_s"] = round((max(ends) - killed_at) / 1e9, 1) if ends else None
    return row


def cancel_outcome(cancel: dict, turn: dict) -> dict:
    """How fast the cancelled turn stopped: from the cancel call's send to the
    watcher's `cancelled` frame, and to the last delta the watcher got after it."""
    sent = cancel.get("sent")
    out = {"http_status": cancel.get("status"), "final_status": turn.get("status")}
    if sent is None:
        return out
    if "status_at" in turn:
        out["to_cancelled_frame_ms"] = round((turn["status_at"] - sent) / 1e6, 1)
    last = turn.get("last_delta_at", 0)
    out["last_delta_after_ms"] = round(max(0, last - sent) / 1e6, 1)
    return out


def run_limit(system: System, k: int) -> dict:
    base = system.openai.url
    logged = requests.get(f"{base.removesuffix('/v1')}/_control/requests", timeout=10)
    body = system.log_dir / "concurrent-body.json"
    body.write_text(json.dumps(logged.json()["requests"][-1]["body"]))
    out = system.log_dir / f"concurrent-{k}-limit.json"
    argv = ["limit", "--k", str(k), "--out", str(out)]
    argv += ["--url", f"{base}/chat/completions", "--body", str(body)]
    client = _client(system, f"concurrent-{k}-limit", argv)
    groups = {"standin": group_members(system.openai.pid)}
    cpu, started = _cpu(groups), time.monotonic()
    client.stdout.readline()
    elapsed = time.monotonic() - started
    used = {n: round(v - cpu[n], 2) for n, v in _cpu(groups).items()}
    client.wait(60)
    result = json.loads(out.read_text())
    used["clients"] = round(result["cpu_s"] - result["cpu_at_go_s"], 2)
    return {
        "k": k,
        "failed": result["failed"],
        "errors": result["errors"],
        "ttfc_ms": spread(result["ttfc_ms"]),
        "ttft_ms": spread(result["ttft_ms"]),
        "cpu_s": used,
        "cpu_cores": {n: round(v / elapsed, 4) for n, v in used.items()},
        "seconds": round(elapsed, 1),
    }


def run_chunks(system: System, text: str, delay: float = 0.005) -> dict:
    """One stream at a time: the worker's CPU per chunk, ours against a bare socket
    (`bench.chunks`); `delay` apart, so each chunk arrives on its own, as a hosted
    model's do."""
    model_config(system, token_delay=delay)
    out = system.log_dir / "chunks.json"
    log = system.log_dir / "chunks.log"
    with log.open("w") as errors:
        subprocess.run(
            [sys.executable, "-m", "bench.chunks", "--out", str(out), f"--text={text}"],
            cwd=ROOT,
            env=system.env,
            stdout=errors,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=True,
        )
    return {**json.loads(out.read_text()), "token_delay": delay}


if __name__ == "__main__":
    client_main()
