"""`python -m bench [--smoke] [--out DIR]`: start the real system, measure, report.

Prints one table (ours, the limit measured in the same run, the ratio, the target)
and writes it with every detail to DIR/latest.json, plus DIR/latency.svg.
`--smoke` is the same run with tiny numbers, for CI (well under a minute).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import concurrent, report
from .fanout import Case, run_bare_memory, run_limit, run_ours
from .machine import Profiler, Window, loadavg
from .system import ROOT, System
from .turns import celery_reference, decision_to_effect, throughput, turn_overhead


@dataclass
class Plan:
    cases: list[Case]
    turn_samples: int
    decisions: int
    throughput_turns: int
    noop_tasks: int
    ref_samples: int
    # Concurrent turns: K at once, each streaming `concurrent_text` at the delay.
    concurrent_k: list[int] = field(default_factory=lambda: [50, 200, 500, 1000])
    concurrent_text: str = "count to 100"
    concurrent_delay: float = 0.05
    # All K turns posted by one user (whose row lock, the per-user cap's, orders
    # them) instead of one user per room.
    concurrent_one_user: bool = False
    # Web processes and worker processes for the concurrent turns: rooms are spread
    # over the webs (a balancer's round robin), the workers share the queues.
    concurrent_webs: int = 2
    concurrent_workers: int = 2
    # Fairness: one user posts `burst` turns at once (the cap lets 5 in) beside
    # `fair_k` other users' turns, compared with `fair_k` turns alone.
    concurrent_fair_k: int = 50
    concurrent_burst: int = 10
    # SIGKILL every worker once `kill_k` turns all stream; all must complete once.
    concurrent_kill_k: int = 200
    # One stream at a time (5 ms a token): the worker's CPU per chunk.
    chunks_text: str = "count to 400"
    memory_watchers: int | None = field(init=False)

    def __post_init__(self) -> None:
        single = [c.watchers for c in self.cases if c.webs == 1]
        # 500 when measured: the figure; else the biggest single-process N.
        self.memory_watchers = 500 if 500 in single else max(single, default=None)


def plan(smoke: bool) -> Plan:
    if smoke:
        return Plan(
            [Case(3, 1, 20, 100, 100), Case(4, 2, 20, 100, 100)],
            turn_samples=3,
            decisions=2,
            throughput_turns=10,
            noop_tasks=200,
            ref_samples=5,
            concurrent_k=[5],
            concurrent_text="count to 60",
            concurrent_fair_k=5,
            concurrent_burst=7,
            concurrent_kill_k=3,
            chunks_text="count to 40",
        )
    cases = [
        Case(100, 1, 200, 100, 100),
        Case(500, 1, 200, 100, 100),
        Case(1000, 2, 200, 100, 100),
    ]
    return Plan(
        cases,
        turn_samples=30,
        decisions=15,
        throughput_turns=300,
        noop_tasks=3000,
        ref_samples=30,
    )


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    system = System(args.out.resolve(), say)
    meta = {
        "smoke": args.smoke,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": loadavg(),
        "plan": asdict(args.plan),
    }
    say(f"load average before the run: {meta['loadavg_start']}")
    rooms = [f"fanout-{c.watchers}" for c in args.plan.cases]
    if args.only in (None, "concurrent"):
        biggest = max(
            [
                *args.plan.concurrent_k,
                args.plan.concurrent_fair_k,
                args.plan.concurrent_kill_k,
            ]
        )
        rooms += ["c-warm", *concurrent.rooms(biggest)]
        rooms += [f"f-{n}" for n in range(1, args.plan.concurrent_burst + 1)]
    try:
        system.start([*rooms, "turns", "decisions", "throughput"])
        if args.smoke:
            # Recovery from the SIGKILL case within seconds, as the chaos run does:
            # a lease as deployed (20 s) is most of a smoke run's time.
            system.env.update(AGENT_LEASE_SECONDS="4", AGENT_SWEEP_SECONDS="1")
        # The Celery reference tasks are sent from this process.
        os.environ.update(system.env)
        profile = args.out.resolve() / "profiles" if args.profile else None
        scenarios = measure(system, args.plan, say, profile, args.only)
    finally:
        system.stop()
    meta["loadavg_end"] = loadavg()
    meta["duration_s"] = round(time.monotonic() - started, 1)
    publish({"meta": meta, "scenarios": scenarios}, args.out)
    return 0


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny N, few messages")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the results (default bench/results, or "
        "bench/results/partial with --only or --cases)",
    )
    parser.add_argument("--cases", help="fan-out cases instead, e.g. 500x1,1000x2")
    parser.add_argument(
        "--only",
        choices=["fanout", "turns", "concurrent"],
        help="measure only the fan-out cases (and memory), only the turn scenarios "
        "or only the concurrent turns",
    )
    parser.add_argument(
        "--concurrent-k",
        help="concurrent turns K instead, e.g. 50,200 "
        "(default 50,200,500,1000; smoke 5)",
    )
    parser.add_argument(
        "--one-user",
        action="store_true",
        help="concurrent turns all posted by one user (default: one user per room)",
    )
    parser.add_argument(
        "--concurrent-procs",
        metavar="WEBSxWORKERS",
        help="concurrent turns on this many web and worker processes (default 2x2: "
        "one of each per core here)",
    )
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="concurrent turns: only the K runs (no fairness, no SIGKILL case)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the web and worker processes while measuring (OUT/profiles)",
    )
    parser.add_argument(
        "--patience",
        type=float,
        help="seconds to wait for other processes to calm down before each "
        "measurement (default 15, 0 with --smoke)",
    )
    args = parser.parse_args(argv)
    if args.profile and not Path(sys.executable).with_name("py-spy").exists():
        parser.error("--profile needs py-spy in the venv: pip install py-spy")
    if args.out is None:
        partial = args.only or args.cases
        args.out = ROOT / "bench" / "results" / ("partial" if partial else "")
    args.plan = plan(args.smoke)
    if args.cases:
        model = args.plan.cases[0]
        pairs = (c.partition("x")[::2] for c in args.cases.split(","))
        cases = [
            Case(int(n), int(w), model.messages, model.rate, model.size)
            for n, w in pairs
        ]
        args.plan = replace(args.plan, cases=cases)
    if args.concurrent_k:
        ks = [int(k) for k in args.concurrent_k.split(",")]
        args.plan = replace(args.plan, concurrent_k=ks)
    if args.concurrent_procs:
        webs, _, workers = args.concurrent_procs.partition("x")
        args.plan = replace(
            args.plan, concurrent_webs=int(webs), concurrent_workers=int(workers or 1)
        )
    if args.no_extras:
        args.plan = replace(args.plan, concurrent_fair_k=0, concurrent_kill_k=0)
    if args.one_user:
        args.plan = replace(args.plan, concurrent_one_user=True)
    Window.patience = args.patience if args.patience is not None else 15.0
    if args.smoke and args.patience is None:
        Window.patience = 0.0
    return args


def publish(results: dict, out: Path) -> None:
    results["rows"] = report.rows(results)
    report.write(results, out)
    meta = results["meta"]
    print()
    print(report.table(results["rows"]))
    print(
        f"\nload average: before {meta['loadavg_start']}, after "
        f"{meta['loadavg_end']} ({meta['cpus']} CPUs); took {meta['duration_s']} s; "
        f"details in {out / 'latest.json'}"
    )


def measure(
    system: System,
    the_plan: Plan,
    say: Callable[[str], None],
    profile: Path | None,
    only: str | None = None,
) -> dict:
    scenarios = {}
    if only in (None, "turns"):
        scenarios.update(measure_turns(system, the_plan, say, profile))
    if only in (None, "fanout"):
        scenarios.update(measure_fanout(system, the_plan, say, profile))
    if only in (None, "concurrent"):
        scenarios.update(measure_concurrent(system, the_plan, say, profile))
    return scenarios


def measure_concurrent(
    system: System, the_plan: Plan, say: Callable[[str], None], profile: Path | None
) -> dict:
    worker = next((p for p in system.procs if p.name == "worker"), None)
    workers = [worker or system.worker("worker")]
    for n in range(2, the_plan.concurrent_workers + 1):
        workers.append(system.worker(f"worker-{n}"))
    names = [f"web-concurrent-{n}" for n in range(1, the_plan.concurrent_webs + 1)]
    # The per-user cap as deployed (5), except when one user posts every turn.
    cap = "100000" if the_plan.concurrent_one_user else "5"
    webs = system.webs(names, env={"AGENT_MAX_ACTIVE_PER_USER": cap})

    def turns(k: int, extras: concurrent.Extras) -> dict:
        return concurrent.run_ours(
            system,
            webs,
            workers,
            k,
            the_plan.concurrent_text,
            the_plan.concurrent_delay,
            the_plan.concurrent_one_user,
            extras,
        )

    cases = []
    for k in the_plan.concurrent_k:
        say(f"concurrent turns K={k}: ours (one turn cancelled mid-stream)")
        spied = [*webs, *workers]
        with Profiler(profile, spied, f"concurrent-{k}"), Window() as window:
            ours = turns(k, concurrent.Extras(cancel=True))
        ours["machine"] = window.summary
        say(f"concurrent turns K={k}: the limit ({k} bare streams)")
        with Window() as window:
            limit = concurrent.run_limit(system, k)
        limit["machine"] = window.summary
        say(
            f"  ours p50/p99 {ours['post_to_first_delta_ms']['p50']}/"
            f"{ours['post_to_first_delta_ms']['p99']} ms, limit "
            f"{limit['ttfc_ms']['p50']}/{limit['ttfc_ms']['p99']} ms; load "
            f"{loadavg()}"
        )
        cases.append({"k": k, "ours": ours, "limit": limit, "loadavg": loadavg()})
    out: dict = {"concurrent": cases}
    say("one stream's CPU per chunk: ours, then a bare socket")
    with Window() as window:
        out["chunks"] = concurrent.run_chunks(system, the_plan.chunks_text)
    out["chunks"]["machine"] = window.summary
    k, burst = the_plan.concurrent_fair_k, the_plan.concurrent_burst
    if k and burst:
        say(f"fairness: {k} users' turns alone, then beside one user's {burst}")
        with Window() as window:
            alone = turns(k, concurrent.Extras(tag="-alone"))
        alone["machine"] = window.summary
        with Window() as window:
            beside = turns(k, concurrent.Extras(burst=burst, tag="-burst"))
        beside["machine"] = window.summary
        out["fairness"] = {"k": k, "burst": burst, "alone": alone, "beside": beside}
    if k := the_plan.concurrent_kill_k:
        say(f"SIGKILL: every worker killed with {k} turns streaming, then restarted")
        system.beat()  # its sweep requeues the turns whose leases ran out
        with Window() as window:
            killed = turns(
                k, concurrent.Extras(kill=lambda: system.crash(workers), tag="-kill")
            )
        killed["machine"] = window.summary
        # What recovery waits for: a lease to run out, the sweep, a stream again.
        lease = int(system.env.get("AGENT_LEASE_SECONDS") or 20)
        sweep = int(system.env.get("AGENT_SWEEP_SECONDS") or 5)
        stream = int(the_plan.concurrent_text.split()[-1]) * the_plan.concurrent_delay
        killed["expected_s"] = round(lease + sweep + stream, 1)
        out["kill"] = killed
    for web in webs:
        system.dismiss(web)
    for extra in workers[1:]:
        system.dismiss(extra)
    return out


def measure_turns(
    system: System, the_plan: Plan, say: Callable[[str], None], profile: Path | None
) -> dict:
    say("celery reference: no-op rate, 1-task hop, 3-task chain")
    reference = system.worker("worker-ref", app="bench.celery_ref")
    with Window() as window:
        celery = celery_reference(system, the_plan.noop_tasks, the_plan.ref_samples)
    celery["machine"] = window.summary
    system.dismiss(reference)
    worker = system.worker("worker", wait=False)
    web = system.web("web-main")
    system.wait_worker(worker)
    scenarios = {"celery": celery}
    for name, run, size in (
        ("turn_overhead", turn_overhead, the_plan.turn_samples),
        ("decision_to_effect", decision_to_effect, the_plan.decisions),
        ("throughput", throughput, the_plan.throughput_turns),
    ):
        say(name.replace("_", " "))
        room = {"turn_overhead": "turns", "decision_to_effect": "decisions"}
        with Profiler(profile, [web, worker], name), Window() as window:
            scenarios[name] = run(system, web, room.get(name, name), size)
        scenarios[name]["machine"] = window.summary
    system.dismiss(web)
    return scenarios


def measure_fanout(
    system: System, the_plan: Plan, say: Callable[[str], None], profile: Path | None
) -> dict:
    if not any(p.name == "worker" for p in system.procs):
        system.worker("worker")
    scenarios = {}
    scenarios["fanout"] = [
        fan_out(system, case, say, profile) for case in the_plan.cases
    ]
    n = the_plan.memory_watchers
    if n is None:
        return scenarios
    say(f"memory: bare uvicorn with {n} idle WebSockets")
    mine = next(c for c in scenarios["fanout"] if c["watchers"] == n and c["webs"] == 1)
    scenarios["memory"] = {
        "watchers": n,
        "ours": mine["ours"]["memory"],
        "limit": run_bare_memory(system, n),
        "relay": mine["limit"]["memory"],
    }
    return scenarios


def fan_out(
    system: System, case: Case, say: Callable[[str], None], profile: Path | None
) -> dict:
    say(f"fan-out {case.name}: the plain relay")
    limit = run_limit(system, case)
    say(f"fan-out {case.name}: ours")
    ours = run_ours(system, case, f"fanout-{case.watchers}", profile)
    say(
        f"  ours p99 {ours['latency_ms']['p99']} ms, relay p99 "
        f"{limit['latency_ms']['p99']} ms; other processes used "
        f"{ours['machine']['others_cores']} / {limit['machine']['others_cores']}"
        " cores meanwhile"
    )
    return {
        "case": case.name,
        "watchers": case.watchers,
        "webs": case.webs,
        "ours": ours,
        "limit": limit,
    }


if __name__ == "__main__":
    sys.exit(main())
