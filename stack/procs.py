"""Process and port helpers shared by the runner, the test command and Redis."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
# Resolved once in the parent: after fork only async-signal-safe work is wise, so
# the child must not have to load libc itself. Linux only: elsewhere (macOS) a
# SIGKILLed runner leaves its children running.
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` making the child receive `sig` when its parent dies.

    Without it a SIGKILLed runner would leave Redis, uvicorn and celery behind.
    SIGKILL, not SIGTERM: nobody is left to wait for a graceful stop, and a Celery
    worker was seen left behind after its runner was killed: it had caught the
    SIGTERM and kept retrying the connection to its broker (the embedded Redis, gone
    with the runner). The kernel ties this to the thread that forked, so spawn from
    the main thread.
    """
    parent = os.getpid()

    def preexec() -> None:
        if _prctl is None:
            return
        _prctl(PR_SET_PDEATHSIG, sig)
        # The parent may have died between fork and prctl: then nobody signals us.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` right now.

    SO_REUSEADDR as servers use it, so a port in TIME_WAIT after the previous
    run counts as free, while one somebody listens on does not.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on; the kernel picks it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of the process group `pgid`.

    Read from /proc rather than `killpg(pgid, 0)`, which also counts zombies
    that an init that never reaps would keep around forever.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        # The command name may hold spaces and parentheses: split after the last ")".
        state, _ppid, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether any live process of the process group `pgid` remains."""
    if Path("/proc/self/stat").exists():
        return bool(group_members(pgid))
    try:  # no /proc (macOS): zombies count as alive, at worst a slower stop
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group that may already be gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_group(
    process: subprocess.Popen, deadline: float, force: threading.Event | None = None
) -> int:
    """Wait for the group led by `process` to end; SIGKILL it at `deadline`.

    The whole group, because celery's pool processes share their parent's group
    and could outlive it. `force` set (a second Ctrl-C) means SIGKILL at once.
    Returns the leader's exit code.
    """
    while time.monotonic() < deadline and not (force and force.is_set()):
        if process.poll() is not None and not group_alive(process.pid):
            return process.returncode
        time.sleep(0.05)
    signal_group(process.pid, signal.SIGKILL)
    return process.wait()
