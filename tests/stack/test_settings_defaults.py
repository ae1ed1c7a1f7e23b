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
