"""`python -m stack test`: pytest with a Redis it can rely on, kept to itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from hashlib import sha256
from pathlib import Path
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
    if not collect_static():
        print("error: manage.py collectstatic failed", file=sys.stderr)
        return 1
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


def collect_static() -> bool:
    """`manage.py collectstatic`, unless STATIC_ROOT was collected from exactly
    these sources (hashing and compressing every file takes seconds); whether
    STATIC_ROOT is then up to date."""
    root = Path(os.environ.get("STATIC_ROOT", "").strip() or ROOT / "staticfiles")
    stamp = ROOT / ".stack" / "collected-static"
    sources = f"{root.resolve()}\n{static_sources()}\n"
    if not (root / "staticfiles.json").exists():
        sources = ""  # nothing collected there (or it was removed): collect
    if sources and stamp.exists() and stamp.read_text() == sources:
        return True
    stamp.unlink(missing_ok=True)
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
    )
    if collected.returncode != 0:
        return False
    if sources:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(sources)
    return True


def static_sources() -> str:
    """A fingerprint of what collectstatic reads: our static files (names, sizes,
    times), the settings and storage that process them, and the installed packages
    whose static files it copies (admin, DRF, the API docs)."""
    import site

    digest = sha256()
    for path in sorted((ROOT / "static").rglob("*")):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for path in (ROOT / "agentsite" / "settings.py", ROOT / "agentsite" / "storage.py"):
        digest.update(f"{path}\0{path.stat().st_mtime_ns}\n".encode())
    for packages in map(Path, site.getsitepackages()):
        for installed in sorted(packages.glob("*.dist-info")):
            digest.update(f"{installed.name}\n".encode())
    return digest.hexdigest()


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
