"""`python -m stack test`: pytest with a Redis it can rely on, kept to itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

from agentsite.env import load_dotenv

from .procs import die_with_parent
from .redis import RedisUnavailable, ensure_redis
from .runner import DEFAULT_REDIS_URL, ROOT


def main(pytest_args: list[str]) -> int:
    """Run pytest with `pytest_args` and return its exit code."""
    load_dotenv(ROOT / ".env")
    # Development settings (the demo's passwords, private webhook hosts) unless a
    # test run asks for production ones; settings default DEBUG to off.
    os.environ.setdefault("DEBUG", "1")
    # The web processes the tests start serve STATIC_ROOT as a deployment does.
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
    )
    if collected.returncode != 0:
        print("error: manage.py collectstatic failed", file=sys.stderr)
        return collected.returncode
    asked = os.environ.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL
    try:
        url, server = ensure_redis(asked, log=lambda text: print(text, flush=True))
    except RedisUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        # Our own prefix: queues, keys and channels of a `make run` sharing this
        # Redis stay apart from the ones the tests create and flush.
        prefix = f"agentsite-test-{os.getpid()}"
        env = dict(os.environ, REDIS_URL=url, REDIS_PREFIX=prefix)
        return run_pytest(pytest_args, env)
    finally:
        if server is not None:
            server.stop()


def run_pytest(args: list[str], env: dict[str, str]) -> int:
    """Run pytest as a child in our process group and wait for it.

    Same group: a Ctrl-C reaches pytest directly, which then prints what it
    has, while we only wait, to stop Redis after it. A SIGTERM is passed on.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=ROOT,
        env=env,
        preexec_fn=die_with_parent(),
    )

    def pass_on(signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGINT:  # pytest got the terminal's SIGINT itself
            process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, pass_on)
    return process.wait()
