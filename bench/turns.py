"""Whole turns through the real system, and the Celery reference they are held to.

- Turn overhead: POST a message -> the first token's `delta` at a watcher, minus the
  model's own time to first token (the app's request replayed to the model server).
- Decision to effect: the approve call returns -> the Linear server applies the
  mutation (its effects log stamps each with `at`, in milliseconds).
- Throughput: turns completed per second, short answers, a zero-delay model.
- The reference, in the same run: Celery no-op tasks per second, the latency of a
  3-task chain and of a single task hop, on the app's Celery configuration.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import datetime

import redis
import requests
from websockets.asyncio.client import connect

from .fanout import model_config, ws_url
from .stats import spread
from .system import Proc, System

TOKEN = re.compile(r"(\d+)@(\d+)")
ENDED = ("completed", "failed", "cancelled")
# Concurrent POSTs in the throughput run: a few clients, as a busy room would have.
POSTERS = 4


class Feed:
    """One watcher of a room inside the runner: every frame with its receive time."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.frames: list[tuple[int, dict]] = []
        self.ended: dict[str, tuple[int, str]] = {}
        self.changed = asyncio.Event()

    async def __aenter__(self) -> Feed:
        self.ws = await connect(
            self.url,
            compression=None,
            max_size=None,
            additional_headers={"Authorization": f"Token {self.token}"},
        )
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        async for message in self.ws:
            received, frame = time.time_ns(), json.loads(message)
            self.frames.append((received, frame))
            if frame["type"] == "request" and frame["request"]["status"] in ENDED:
                self.ended[frame["request"]["id"]] = (
                    received,
                    frame["request"]["status"],
                )
            self.changed.set()

    async def wait(
        self, match: Callable[[dict], bool], timeout: float = 60
    ) -> tuple[int, dict]:
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for received, frame in self.frames[seen:]:
                    if match(frame):
                        return received, frame
                seen = len(self.frames)
                self.changed.clear()
                await self.changed.wait()

    async def until_ended(self, ids: set[str], timeout: float = 120) -> None:
        async with asyncio.timeout(timeout):
            while not ids <= self.ended.keys():
                self.changed.clear()
                await self.changed.wait()


class Api:
    """The REST API as the approver, timing each call around the HTTP exchange."""

    def __init__(self, system: System, web: Proc) -> None:
        self.base = f"{web.url}/api"
        self.headers = {"Authorization": f"Token {system.tokens['approver']}"}
        self.session = requests.Session()

    def post(self, path: str, body: dict) -> tuple[int, int, dict]:
        sent = time.time_ns()
        response = self.session.post(
            f"{self.base}{path}", json=body, headers=self.headers, timeout=30
        )
        returned = time.time_ns()
        response.raise_for_status()
        return sent, returned, response.json()

    async def apost(self, path: str, body: dict) -> tuple[int, int, dict]:
        return await asyncio.to_thread(self.post, path, body)


def first_token(frame: dict) -> int | None:
    """The emission time of token 1 if this delta carries it."""
    for k, sent in TOKEN.findall(frame.get("text", "")):
        if k == "1":
            return int(sent)
    return None


async def _turn_overhead(
    system: System, web: Proc, slug: str, samples: int, warmup: int
) -> list[dict]:
    api, rows = Api(system, web), []
    feed_url = ws_url(web, f"/ws/rooms/{slug}/")
    async with Feed(feed_url, system.tokens["watcher"]) as feed:
        for i in range(warmup + samples):
            sent, returned, body = await api.apost(
                f"/rooms/{slug}/requests", {"text": "count to 3"}
            )
            rid = body["id"]
            received, frame = await feed.wait(
                lambda f, rid=rid: (
                    f["type"] == "delta"
                    and f["request"] == rid
                    and first_token(f) is not None
                )
            )
            emitted = first_token(frame)
            await feed.until_ended({rid})
            if i >= warmup:
                rows.append(
                    {
                        "total": (received - sent) / 1e6,
                        "to_model_token": (emitted - sent) / 1e6,
                        "delivery": (received - emitted) / 1e6,
                        "post": (returned - sent) / 1e6,
                    }
                )
    return rows


def model_ttft(system: System, samples: int) -> list[float]:
    """The model server's time to first token for the app's own last request."""
    base = system.openai.url
    logged = requests.get(f"{base.removesuffix('/v1')}/_control/requests", timeout=10)
    body = logged.json()["requests"][-1]["body"]
    session, out = requests.Session(), []
    for _ in range(samples):
        sent = time.time_ns()
        with session.post(
            f"{base}/chat/completions",
            json=body,
            stream=True,
            headers={"Authorization": "Bearer bench"},
            timeout=30,
        ) as r:
            for line in r.iter_lines():
                if match := TOKEN.search(line.decode()):
                    out.append((int(match.group(2)) - sent) / 1e6)
                    break
            for _ in r.iter_lines():
                pass
    return out


def turn_overhead(system: System, web: Proc, slug: str, samples: int) -> dict:
    model_config(system, token_delay=0)
    rows = asyncio.run(_turn_overhead(system, web, slug, samples, warmup=3))
    ttft = model_ttft(system, samples)
    model = spread(ttft)["p50"] or 0.0
    return {
        "overhead_ms": spread([r["total"] - model for r in rows]),
        "post_to_first_delta_ms": spread([r["total"] for r in rows]),
        "post_to_model_token_ms": spread([r["to_model_token"] for r in rows]),
        "token_to_watcher_ms": spread([r["delivery"] for r in rows]),
        "post_call_ms": spread([r["post"] for r in rows]),
        "model_ttft_ms": spread(ttft),
    }


def _at_ns(stamp: str) -> int:
    """Linear's `at` (whole milliseconds) as ns, the middle of its millisecond."""
    return int(datetime.fromisoformat(stamp).timestamp() * 1000) * 1_000_000 + 500_000


async def _decisions(
    system: System, web: Proc, slug: str, samples: int, warmup: int
) -> list[dict]:
    api, out = Api(system, web), []
    effects_url = f"{system.linear.url.removesuffix('/graphql')}/_control/effects"
    async with Feed(
        ws_url(web, f"/ws/rooms/{slug}/"), system.tokens["watcher"]
    ) as feed:
        for i in range(warmup + samples):
            _, _, body = await api.apost(
                f"/rooms/{slug}/requests", {"text": f"create an issue titled Bench {i}"}
            )
            rid = body["id"]
            _, frame = await feed.wait(
                lambda f, rid=rid: (
                    f["type"] == "action"
                    and f["action"]["request"] == rid
                    and f["action"]["status"] == "pending"
                )
            )
            action = frame["action"]["id"]
            sent, returned, _ = await api.apost(f"/actions/{action}/approve", {})
            # The action's `succeeded` event comes after the effect: read the log then.
            await feed.wait(
                lambda f, a=action: (
                    f["type"] == "action"
                    and f["action"]["id"] == a
                    and f["action"]["status"] in ("succeeded", "failed")
                )
            )
            effects = requests.get(effects_url, timeout=10).json()["effects"]
            await feed.until_ended({rid})
            if i >= warmup:
                at = _at_ns(effects[-1]["at"])
                out.append(
                    {
                        "effect": (at - returned) / 1e6,
                        "call": (returned - sent) / 1e6,
                        "sent": (at - sent) / 1e6,
                    }
                )
    return out


def decision_to_effect(system: System, web: Proc, slug: str, samples: int) -> dict:
    model_config(system, token_delay=0)
    rows = asyncio.run(_decisions(system, web, slug, samples, warmup=2))
    return {
        # Negative when the worker reached Linear before the approve call returned.
        "latency_ms": spread([r["effect"] for r in rows]),
        "approve_call_ms": spread([r["call"] for r in rows]),
        "approve_sent_to_effect_ms": spread([r["sent"] for r in rows]),
    }


async def _throughput(system: System, web: Proc, slug: str, turns: int) -> dict:
    api, gate, ids = Api(system, web), asyncio.Semaphore(POSTERS), set()

    async def submit(i: int) -> None:
        async with gate:
            _, _, body = await api.apost(
                f"/rooms/{slug}/requests", {"text": f"count to {3 + i % 3}"}
            )
            ids.add(body["id"])

    async with Feed(
        ws_url(web, f"/ws/rooms/{slug}/"), system.tokens["watcher"]
    ) as feed:
        start = time.time_ns()
        await asyncio.gather(*(submit(i) for i in range(turns)))
        submitted = time.time_ns()
        await feed.until_ended(ids, timeout=300)
    done = max(feed.ended[i][0] for i in ids)
    failed = sum(1 for i in ids if feed.ended[i][1] != "completed")
    return {
        "turns": turns,
        "failed": failed,
        "turns_per_s": round(turns / ((done - start) / 1e9), 1),
        "submitted_per_s": round(turns / ((submitted - start) / 1e9), 1),
    }


def throughput(system: System, web: Proc, slug: str, turns: int) -> dict:
    model_config(system, token_delay=0)
    return asyncio.run(_throughput(system, web, slug, turns))


def celery_reference(system: System, tasks: int, samples: int) -> dict:
    """No-op tasks/s and chain/hop latencies on a worker shaped like the app's.

    The worker (`bench.celery_ref`) must be running; see `System.worker`.
    """
    from .celery_ref import chain_of_three, noop, stamp

    # No socket timeout: BLPOP waits longer than redis-py's default of 5 s.
    client = redis.Redis.from_url(system.env["REDIS_URL"], socket_timeout=None)
    prefix = f"{system.env['REDIS_PREFIX']}:bench"

    def timed(send: Callable[[str], object], key: str) -> float:
        sent = time.time_ns()
        send(key)
        _, ran = client.blpop([key], timeout=30)
        return (int(ran) - sent) / 1e6

    rounds = range(samples + 3)  # the first three warm the connections up
    hops = [timed(lambda k: stamp.delay(k), f"{prefix}:hop:{i}") for i in rounds][3:]
    chains = [
        timed(lambda k: chain_of_three(k).apply_async(), f"{prefix}:chain:{i}")
        for i in rounds
    ][3:]
    counter = f"{prefix}:noop"
    start = time.time_ns()
    for _ in range(tasks):
        noop.delay(counter, tasks)
    enqueued = time.time_ns()
    _, done = client.blpop([f"{counter}:done"], timeout=300)
    return {
        "noop_tasks_per_s": round(tasks / ((int(done) - start) / 1e9), 1),
        "enqueued_per_s": round(tasks / ((enqueued - start) / 1e9), 1),
        "tasks": tasks,
        "hop_ms": spread(hops),
        "chain3_ms": spread(chains),
    }
