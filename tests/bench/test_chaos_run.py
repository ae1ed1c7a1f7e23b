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

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1500)
def test_two_minutes_of_chaos_keep_every_invariant(tmp_path: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "bench.chaos", "--minutes", "2", "--seed", "1"]
        + ["--out", str(tmp_path / "chaos")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        # SIGTERM, so that it stops what it started (its PostgreSQL cluster).
        run.terminate()
        stdout, stderr = run.communicate(timeout=120)
    report = stdout + stderr[-3000:]
    assert run.returncode == 0, report
    assert "violations: 0" in stdout, report
    kills = re.search(r"kills: (\d+)", stdout)
    assert kills is not None and int(kills.group(1)) >= 30, report
    restarts = re.search(r"restarts: redis (\d+), postgres (\d+)", stdout)
    assert restarts is not None and min(map(int, restarts.groups())) >= 1, report
    checked = re.search(r"invariants checked: (\d+)", stdout)
    assert checked is not None and int(checked.group(1)) > 100, report
