"""Settings a production box gets when it sets nothing but its secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stack.runner import run_env

ROOT = Path(__file__).resolve().parents[2]


def _debug_with(env: dict[str, str]) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            "from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "agentsite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_debug_is_off_when_unset() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    env["SECRET_KEY"] = "x" * 60
    assert _debug_with(env) == "False"


def test_make_run_turns_debug_on_unless_told() -> None:
    assert run_env({"PATH": "/bin"})["DEBUG"] == "1"
    assert run_env({"PATH": "/bin", "DEBUG": "0"})["DEBUG"] == "0"


def test_limits_are_finite_when_unset() -> None:
    """Contract "Limits": a production box that sets nothing has a daily model token
    budget (not unlimited), a cap on pending actions and one on sockets per user."""
    names = (
        "AGENT_DAILY_TOKENS_PER_USER",
        "AGENT_MAX_PENDING_PER_USER",
        "WS_MAX_SOCKETS_PER_USER",
    )
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(SECRET_KEY="x" * 60, DJANGO_SETTINGS_MODULE="agentsite.settings")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            f"print(*(getattr(settings, n) for n in {names!r}))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    tokens, pending, sockets = map(int, result.stdout.split())
    assert 0 < tokens <= 1_000_000
    assert (pending, sockets) == (20, 20)
