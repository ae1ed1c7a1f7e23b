"""Two minutes of chaos with a fixed seed end with every invariant kept (issue 27).

The run starts its own PostgreSQL cluster and Redis, the processes and stand-ins,
and exits 1 on a violation, printing the seed, the kill schedule and the first
broken invariant (shown here on failure).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_two_minutes_of_chaos_keep_every_invariant(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--minutes", "2", "--seed", "1"]
        + ["--out", str(tmp_path / "chaos")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = done.stdout + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "violations: 0" in done.stdout, report
    kills = re.search(r"kills: (\d+)", done.stdout)
    assert kills is not None and int(kills.group(1)) >= 30, report
    restarts = re.search(r"restarts: redis (\d+), postgres (\d+)", done.stdout)
    assert restarts is not None and min(map(int, restarts.groups())) >= 1, report
    checked = re.search(r"invariants checked: (\d+)", done.stdout)
    assert checked is not None and int(checked.group(1)) > 100, report
