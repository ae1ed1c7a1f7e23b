"""What `make run` and `make test` install, read from make's dry run (-n -B: every
target out of date, nothing executed)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dry_run(target: str) -> str:
    done = subprocess.run(
        ["make", "-n", "-B", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_run_installs_the_runtime_lock_only_and_says_so_first():
    lines = dry_run("run").splitlines()
    installs = [line for line in lines if " install " in line]
    assert any("-r requirements/run.txt" in line for line in installs), lines
    assert not any("test" in line for line in installs), lines
    said = next(i for i, line in enumerate(lines) if line.startswith("echo"))
    assert "installing what running needs" in lines[said]
    assert said < lines.index(installs[0])


def test_make_test_installs_the_test_lock():
    assert "-r requirements/test.txt" in dry_run("test")


def test_ci_installs_through_make_install_from_the_lock():
    assert "make install" in (ROOT / ".ci" / "run").read_text()
    assert "-r requirements/test.txt" in dry_run("install")
