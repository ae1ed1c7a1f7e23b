"""The benchmark keeps working: its smoke mode starts the whole system and reports.

Only that it runs and reports numbers is checked; the figures themselves are what
`make bench` is for, on a quiet machine.
"""

import json
import subprocess
import sys
from numbers import Number
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "celery",
    "turn_overhead",
    "decision_to_effect",
    "throughput",
    "fanout",
    "memory",
    "concurrent",
    "fairness",
    "kill",
    "chunks",
}


@pytest.mark.timeout(480)
def test_smoke_run_reports_every_scenario_with_numbers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=450,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    assert SCENARIOS <= set(results["scenarios"])
    names = " | ".join(row["scenario"] for row in results["rows"])
    for part in (
        "fan-out",
        "turn overhead",
        "decision to effect",
        "throughput",
        "memory",
        "concurrent",
    ):
        assert part in names
    for row in results["rows"]:
        assert isinstance(row["ours"], Number), row
        assert isinstance(row["limit"], Number), row
        assert isinstance(row["ratio"], Number), row
    for case in results["scenarios"]["fanout"]:
        for side in ("ours", "limit"):
            assert case[side]["watchers"] == case["watchers"], case
            assert case[side]["latency_ms"]["samples"] > 0, case
    for case in results["scenarios"]["concurrent"]:
        ours = case["ours"]
        assert ours["post_to_first_delta_ms"]["samples"] == case["k"], case
        assert ours["lost"] == ours["duplicated"] == ours["not_completed"] == 0, case
        assert case["limit"]["ttfc_ms"]["samples"] == case["k"], case
        # One turn was cancelled mid-stream, and its stream stopped.
        assert ours["cancel"]["final_status"] == "cancelled", ours["cancel"]
        assert ours["cancel"]["last_delta_after_ms"] < 1000, ours["cancel"]
    fair = results["scenarios"]["fairness"]["beside"]
    assert fair["burst"].get("202", 0) == 5, fair["burst"]  # the cap, 5 in flight
    assert fair["burst"].get("429", 0) >= 1, fair["burst"]
    killed = results["scenarios"]["kill"]
    assert killed["lost"] == killed["duplicated"] == killed["not_completed"] == 0
    assert killed["watcher_saw_completed"] == killed["k"], killed
    assert (tmp_path / "latency.svg").read_text().startswith("<svg")
    assert "fan-out" in done.stdout  # the table
