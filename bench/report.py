"""The benchmark's one table, its JSON, and the latency plot as a hand-made SVG."""

from __future__ import annotations

import json
import math
from pathlib import Path

COLUMNS = (
    "scenario",
    "ours",
    "limit (same run)",
    "ratio",
    "target",
    "met",
    "others' cores",
)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _others(*windows: dict | None) -> str:
    """CPU cores other processes used during the measurements (ours / the limit's)."""
    return " / ".join("-" if w is None else f"{w['others_cores']:.1f}" for w in windows)


def _ratio(ours: float | None, limit: float | None) -> float | None:
    if ours is None or not limit:
        return None
    return round(ours / limit, 2)


def fanout_row(case: dict) -> dict:
    ours, limit = case["ours"], case["limit"]
    o, li = ours["latency_ms"], limit["latency_ms"]
    ratio = _ratio(o["p99"], li["p99"])
    lost_ok = ours["lost"] == 0 and ours["failed"] == 0
    if case["webs"] > 1:
        target = "p99 < 250 ms, 0 lost"
        met = o["p99"] is not None and o["p99"] < 250 and lost_ok
    else:
        target = "p99 <= 2x limit, 0 lost"
        met = ratio is not None and ratio <= 2 and lost_ok
    return {
        "scenario": f"fan-out {case['case']}: p50/p99 ms",
        "ours": o["p99"],
        "ours_text": f"{_fmt(o['p50'])} / {_fmt(o['p99'])}, lost {ours['lost']}",
        "limit": li["p99"],
        "limit_text": f"{_fmt(li['p50'])} / {_fmt(li['p99'])}, lost {limit['lost']}"
        " (relay, best of 2)",
        "ratio": ratio,
        "target": target,
        "met": met,
        "others": _others(ours.get("machine"), limit.get("machine")),
    }


def fanout_cpu_row(case: dict) -> dict:
    """Web CPU per frame per watcher against the relay's, with where the CPU went:
    a ratio that holds on any machine, and the split that tells a slow server from
    a machine the watcher clients saturate."""
    ours, limit = case["ours"], case["limit"]
    o, li = ours["server_cpu_us_per_frame"], limit["server_cpu_us_per_frame"]
    ratio = _ratio(o, li)

    def split(side: dict) -> str:
        parts = [f"servers {side['server_cpu_s']:.2f} s"]
        if "worker_cpu_s" in side:
            parts.append(f"worker {side['worker_cpu_s']:.2f} s")
        parts.append(f"clients {side['client_cpu_s']:.2f} s")
        return ", ".join(parts)

    return {
        "scenario": f"fan-out {case['case']}: web CPU per frame per watcher, us",
        "ours": o,
        "ours_text": f"{_fmt(o)} ({split(ours)})",
        "limit": li,
        "limit_text": f"{_fmt(li)} ({split(limit)}, relay)",
        "ratio": ratio,
        "target": "<= 1.2x the relay's",
        "met": ratio is not None and ratio <= 1.2,
        "others": _others(ours.get("machine"), limit.get("machine")),
    }


def absolute_row(
    name: str,
    ours: float | None,
    limit: float | None,
    limit_name: str,
    bound: float,
    unit: str = "ms",
    others: str = "-",
) -> dict:
    return {
        "scenario": name,
        "ours": ours,
        "ours_text": f"{_fmt(ours)} {unit}",
        "limit": limit,
        "limit_text": f"{_fmt(limit)} {unit} ({limit_name})",
        "ratio": _ratio(ours, limit),
        "target": f"< {bound:g} {unit}",
        "met": ours is not None and ours < bound,
        "others": others,
    }


def rows(results: dict) -> list[dict]:
    s = results["scenarios"]
    out = []
    for case in s.get("fanout", []):
        out.append(fanout_row(case))
        # Only where both sides used measurable CPU (not in a smoke run's few frames).
        if (
            case["ours"]["server_cpu_us_per_frame"]
            and case["limit"]["server_cpu_us_per_frame"]
        ):
            out.append(fanout_cpu_row(case))
    if "celery" in s:
        out += turn_rows(s)
    if "memory" in s:
        out.append(memory_row(s["memory"]))
    for case in s.get("concurrent", []):
        out += concurrent_rows(case)
    if "chunks" in s:
        out.append(chunks_row(s["chunks"]))
    if "fairness" in s:
        out.append(fairness_row(s["fairness"]))
    if "kill" in s:
        out.append(kill_row(s["kill"]))
    return out


def _complete_once(ours: dict) -> bool:
    return (
        ours["lost"] == 0
        and ours["duplicated"] == 0
        and ours["not_completed"] == 0
        and ours["post_errors"] == 0
    )


def _outcome_text(ours: dict) -> str:
    return (
        f"lost {ours['lost']}, dup {ours['duplicated']}, "
        f"not completed {ours['not_completed']}"
    )


def cancel_row(k: int, ours: dict, others: str) -> dict:
    """One turn cancelled mid-stream among K: how soon its stream stopped."""
    c = ours["cancel"]
    frame, after = c.get("to_cancelled_frame_ms"), c.get("last_delta_after_ms")
    stopped = None if frame is None else max(frame, after or 0)
    return {
        "scenario": f"concurrent K={k}: cancel one streaming turn -> it stops, ms",
        "ours": stopped,
        "ours_text": f"{_fmt(stopped)} (cancelled frame {_fmt(frame)}, last delta "
        f"{_fmt(after)} after the call; HTTP {c.get('http_status')}, "
        f"{c.get('final_status')})",
        "limit": 1000,
        "limit_text": "1000 ms (the target)",
        "ratio": _ratio(stopped, 1000),
        "target": "<= 1000 ms, ends cancelled",
        "met": stopped is not None
        and stopped <= 1000
        and c.get("final_status") == "cancelled",
        "others": others,
    }


def chunks_row(chunks: dict) -> dict:
    """What reading one streamed chunk costs the worker, ours against a bare socket:
    what K concurrent streams multiply (20 chunks/s each at a hosted model's pace)."""
    ours, bare = chunks["sdk_us_per_chunk"], chunks["bare_us_per_chunk"]
    return {
        "scenario": "worker CPU per streamed chunk, us (one stream)",
        "ours": ours,
        "ours_text": f"{_fmt(ours)} (stream_chat: the engine's loop reading the "
        f"SSE bytes, {chunks['text_chunks']} chunks)",
        "limit": bare,
        "limit_text": f"{_fmt(bare)} (a bare socket, {chunks['bare_events']} chunks)",
        "ratio": _ratio(ours, bare),
        "target": "<= 2x the bare reader",
        "met": ours <= 2 * bare,
        "others": _others(chunks.get("machine"), None),
    }


def fairness_row(case: dict) -> dict:
    """K users' first deltas beside one user's burst, against the same K alone."""
    alone, beside = case["alone"], case["beside"]
    a, b = alone["post_to_first_delta_ms"], beside["post_to_first_delta_ms"]
    burst = beside.get("burst", {})
    let_in = burst.get("202", 0)
    ratio = _ratio(b["p99"], a["p99"])
    return {
        "scenario": f"fairness: {case['k']} users' 1st delta p50/p99 beside one "
        f"user's {case['burst']} posts",
        "ours": b["p99"],
        "ours_text": f"{_fmt(b['p50'])} / {_fmt(b['p99'])} (the burst: "
        + ", ".join(f"{n} x HTTP {code}" for code, n in sorted(burst.items()))
        + f"), {_outcome_text(beside)}",
        "limit": a["p99"],
        "limit_text": f"{_fmt(a['p50'])} / {_fmt(a['p99'])} ({case['k']} alone)",
        "ratio": ratio,
        "target": "burst capped at 5; others' p99 <= 1.2x alone",
        "met": let_in <= 5
        and ratio is not None
        and ratio <= 1.2
        and _complete_once(beside),
        "others": _others(beside.get("machine"), alone.get("machine")),
    }


def kill_row(ours: dict) -> dict:
    """Every worker SIGKILLed with K turns streaming, then started again."""
    k = ours["k"]
    ok = _complete_once(ours) and ours["watcher_saw_completed"] == k
    return {
        "scenario": f"SIGKILL every worker, {k} turns streaming: all complete once",
        "ours": ours.get("recovered_s"),
        "ours_text": f"{_outcome_text(ours)}; watchers saw "
        f"{ours['watcher_saw_completed']}/{k} completed, the last "
        f"{_fmt(ours.get('recovered_s'))} s after the kill",
        "limit": ours["expected_s"],
        "limit_text": f"{_fmt(ours['expected_s'])} s (lease + sweep + one stream)",
        "ratio": _ratio(ours.get("recovered_s"), ours["expected_s"]),
        "target": "every turn completes, its final message once",
        "met": ok,
        "others": _others(ours.get("machine"), None),
    }


def concurrent_rows(case: dict) -> list[dict]:
    """K turns at once: latency against K bare streams, losses, memory, PG, CPU."""
    k, ours, limit = case["k"], case["ours"], case["limit"]
    o, li = ours["post_to_first_delta_ms"], limit["ttfc_ms"]
    model = ours["post_to_model_token_ms"]
    ok = _complete_once(ours) and o["samples"] == k
    gap50 = None if o["p50"] is None or li["p50"] is None else o["p50"] - li["p50"]
    gap99 = None if o["p99"] is None or li["p99"] is None else o["p99"] - li["p99"]
    met = gap50 is not None and gap99 is not None and gap50 <= 100 and gap99 <= 500
    others = _others(ours.get("machine"), limit.get("machine"))
    out = [
        {
            "scenario": f"concurrent K={k}: POST -> 1st delta p50/p99 ms",
            "ours": o["p99"],
            "ours_text": f"{_fmt(o['p50'])} / {_fmt(o['p99'])} (model token "
            f"{_fmt(model['p50'])} / {_fmt(model['p99'])}), {_outcome_text(ours)}",
            "limit": li["p99"],
            "limit_text": f"{_fmt(li['p50'])} / {_fmt(li['p99'])} ({k} bare streams,"
            f" {limit['failed']} failed)",
            "ratio": _ratio(o["p99"], li["p99"]),
            "target": "p50 <= limit+100, p99 <= limit+500, all complete once",
            "met": met and ok,
            "others": others,
        },
        {
            "scenario": f"concurrent K={k}: worker RSS growth per in-flight turn",
            "ours": ours["kb_per_turn"],
            "ours_text": f"{_fmt(ours['kb_per_turn'])} KB"
            f" ({ours['rss_before_kb'] // 1024} -> {ours['rss_peak_kb'] // 1024} MB)",
            "limit": 1024,
            "limit_text": "1024 KB (the target)",
            "ratio": _ratio(ours["kb_per_turn"], 1024),
            "target": "< 1024 KB",
            "met": ours["kb_per_turn"] < 1024,
            "others": others,
        },
    ]
    pg, workers = ours["pg_worker_connections_max"], ours.get("workers", 1)
    pool = ours["pg_pool_size"] * workers
    if pg is not None:
        out.append(
            {
                "scenario": f"concurrent K={k}: worker's PostgreSQL connections (max)",
                "ours": pg,
                "ours_text": f"{pg} ({ours['pg_connections_max']} with the web's)",
                "limit": pool,
                "limit_text": f"{pool} (DB_POOL_SIZE"
                + (f" x {workers} workers)" if workers > 1 else ")"),
                "ratio": _ratio(pg, pool),
                "target": "<= pool size",
                "met": pg <= pool,
                "others": others,
            }
        )
    if "cancel" in ours:
        out.append(cancel_row(k, ours, others))
    if turn := turn_cpu_row(k, ours, limit, others):
        out.append(turn)
    mine, bare = sum(ours["cpu_cores"].values()), sum(limit["cpu_cores"].values())
    out.append(
        {
            "scenario": f"concurrent K={k}: CPU cores while streaming",
            "ours": round(mine, 2),
            "ours_text": ", ".join(f"{n} {v:.2f}" for n, v in ours["cpu_cores"].items())
            # Per turn: what sizing needs (a turn here streams one 100-token answer).
            + "; per turn "
            + ", ".join(
                f"{n} {1000 * ours['cpu_s'][n] / k:.0f} ms"
                for n in ("worker", "web")
                if n in ours["cpu_s"]
            ),
            "limit": round(bare, 3),
            "limit_text": ", ".join(
                f"{n} {v:.2f}" for n, v in limit["cpu_cores"].items()
            ),
            "ratio": _ratio(mine, bare),
            "target": f"reported (load {case['loadavg'][0]})",
            "met": None,
            "others": others,
        }
    )
    return out


def turn_cpu_row(k: int, ours: dict, limit: dict, others: str) -> dict | None:
    """CPU per turn, the worker's and the web's, against what the bare client spent
    reading the same answer (one 100-chunk stream per turn, K at once)."""
    cpu, bare = ours["cpu_s"], limit.get("cpu_s", {}).get("clients")
    if "worker" not in cpu or "web" not in cpu or not bare:
        return None
    worker, web = (1000 * cpu[n] / k for n in ("worker", "web"))
    reader = 1000 * bare / k
    mine = round(worker + web, 1)
    return {
        "scenario": f"concurrent K={k}: CPU per turn, worker + web, ms",
        "ours": mine,
        "ours_text": f"{mine} (worker {worker:.1f} + web {web:.1f})",
        "limit": round(reader, 2),
        "limit_text": f"{reader:.2f} (the bare client reading one stream)",
        "ratio": _ratio(mine, reader),
        "target": "<= 5x the bare reader",
        "met": mine <= 5 * reader,
        "others": others,
    }


def turn_rows(s: dict) -> list[dict]:
    out = []
    turn, ref = s["turn_overhead"], s["celery"]
    out.append(
        absolute_row(
            "turn overhead p50 (POST -> 1st delta - model TTFT)",
            turn["overhead_ms"]["p50"],
            ref["chain3_ms"]["p50"],
            "3-task chain",
            30,
            others=_others(turn.get("machine"), ref.get("machine")),
        )
    )
    out.append(
        absolute_row(
            "decision to effect p50 (approve -> Linear)",
            s["decision_to_effect"]["latency_ms"]["p50"],
            ref["hop_ms"]["p50"],
            "1-task hop",
            30,
            others=_others(s["decision_to_effect"].get("machine"), ref.get("machine")),
        )
    )
    tput = s["throughput"]
    out.append(
        {
            "scenario": "throughput, turns/s (short answers, 0-delay model)",
            "ours": tput["turns_per_s"],
            "ours_text": f"{_fmt(tput['turns_per_s'])} turns/s",
            "limit": ref["noop_tasks_per_s"],
            "limit_text": f"{_fmt(ref['noop_tasks_per_s'], 0)} no-op tasks/s",
            "ratio": _ratio(tput["turns_per_s"], ref["noop_tasks_per_s"]),
            "target": "reported",
            "met": None,
            "others": _others(tput.get("machine"), ref.get("machine")),
        }
    )
    return out


def memory_row(mem: dict) -> dict:
    return absolute_row(
        f"memory per idle watcher (N={mem['watchers']}, 1 web)",
        mem["ours"]["kb_per_watcher"],
        mem["limit"]["kb_per_watcher"],
        "bare uvicorn",
        40,
        unit="KB",
    )


def table(table_rows: list[dict]) -> str:
    cells = [COLUMNS] + [
        (
            r["scenario"],
            r["ours_text"],
            r["limit_text"],
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            r["target"],
            {True: "yes", False: "NO", None: "-"}[r["met"]],
            r["others"],
        )
        for r in table_rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    if results["scenarios"].get("fanout"):
        (out_dir / "latency.svg").write_text(svg(results["scenarios"]["fanout"]))


# The plot -------------------------------------------------------------------------

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 50
SERIES = (  # (label, side, percentile, colour, dashed)
    ("ours p99", "ours", "p99", "#c0392b", False),
    ("ours p50", "ours", "p50", "#e67e22", False),
    ("relay p99", "limit", "p99", "#2c3e50", True),
    ("relay p50", "limit", "p50", "#7f8c8d", True),
)


def _procs(webs: int) -> str:
    return "" if webs == 1 else f" ({webs} web processes)"


def svg(cases: list[dict]) -> str:
    """Delivery latency against watchers N, log-log, ours against the plain relay."""
    points = {
        label: [
            (c["watchers"], c[side]["latency_ms"][p])
            for c in cases
            if c[side]["latency_ms"][p]
        ]
        for label, side, p, _, _ in SERIES
    }
    xs = sorted({c["watchers"] for c in cases}) or [1]
    webs = {c["watchers"]: c["webs"] for c in cases}
    ys = [y for series in points.values() for _, y in series] or [1.0]
    x_lo, x_hi = math.log10(xs[0]) - 0.1, math.log10(xs[-1]) + 0.1
    y_lo = math.floor(math.log10(max(min(ys), 0.1)))
    y_hi = math.ceil(math.log10(max(ys)))
    y_hi += y_hi == y_lo
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (math.log10(x) - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (math.log10(y) - y_lo) / (y_hi - y_lo) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">Token delivery latency vs watchers '
        "of one room (ms, log scale)</text>",
    ]
    for exp in range(y_lo, y_hi + 1):
        y = py(10**exp)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{10**exp:g}</text>'
        )
    for x in xs:
        parts.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{px(x):.1f}" y="{TOP + plot_h + 18}" '
            f'text-anchor="middle">{x}{_procs(webs.get(x, 1))}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 10}" '
        'text-anchor="middle">watchers N</text>'
    )
    for i, (label, _, _, colour, dashed) in enumerate(SERIES):
        series = points[label]
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        if series:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in series)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" '
                f'stroke-width="2"{dash}/>'
            )
        for x, y in series:
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" '
                f'fill="{colour}"><title>{label} N={x}: {y} ms</title></circle>'
            )
        ly = TOP + 10 + i * 20
        lx = LEFT + plot_w + 15
        parts.append(
            f'<line x1="{lx}" x2="{lx + 25}" y1="{ly}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{lx + 32}" y="{ly + 4}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
