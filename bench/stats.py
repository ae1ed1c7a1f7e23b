"""Percentiles and the per-watcher bookkeeping of lost tokens."""

from __future__ import annotations

import math


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile `p` (0-100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float]) -> dict:
    """p50/p90/p99/max of `values`, rounded for people, plus how many there were."""
    out = {f"p{p}": percentile(values, p) for p in (50, 90, 99)}
    out["max"] = max(values) if values else None
    out = {k: None if v is None else round(v, 2) for k, v in out.items()}
    return {**out, "samples": len(values)}


def summary(clients: list[dict], expected: int) -> dict:
    """Latency spread and losses over every watcher of every client process.

    A watcher expects tokens 1..`expected`; one that failed to connect lost them all.
    """
    latencies: list[float] = []
    newest: list[float] = []
    lost = duplicates = frames = 0
    connected = failed = 0
    for client in clients:
        connected += client["connected"]
        failed += client["failed"]
        for conn in client["connections"]:
            latencies += conn["latency_ms"]
            newest += conn["newest_ms"]
            frames += conn["frames"]
            got = set(conn["k"]) & set(range(1, expected + 1))
            lost += expected - len(got)
            duplicates += len(conn["k"]) - len(set(conn["k"]))
    lost += failed * expected
    return {
        "latency_ms": spread(latencies),
        # The newest token of each frame waited for no coalescing: transport alone.
        "newest_token_ms": spread(newest),
        "watchers": connected,
        "failed": failed,
        "frames_per_watcher": round(frames / max(1, connected), 1),
        "lost": lost,
        "duplicates": duplicates,
    }
