"""What the benchmark reads about the machine: memory, CPU, load, other processes.

Also the profiler (`--profile`): py-spy attached to some of the system's processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Process(Protocol):
    name: str

    @property
    def pid(self) -> int: ...


def rss_kb(pid: int) -> int:
    """Resident memory of one process, in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores, not idle or iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def our_pids() -> list[int]:
    """This process and all its descendants (new sessions included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    ours, grew = {os.getpid()}, True
    while grew:
        found = {pid for pid, ppid in parents.items() if ppid in ours} - ours
        ours |= found
        grew = bool(found)
    return sorted(ours)


class Window:
    """How busy the machine was while a measurement ran, and how much of it was us.

    Other processes' CPU (other test runs) competes for the same cores; the
    benchmark's figures are only comparable when `others_cores` is near zero. So
    a window first waits, up to `patience` seconds, for a second in which other
    processes used less than a quarter of a core.
    """

    patience = 0.0

    def __enter__(self) -> Window:
        self.waited = wait_for_quiet(self.patience)
        self.start, self.load = time.monotonic(), loadavg()[0]
        self.busy, self.ours = busy_seconds(), cpu_seconds(our_pids())
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-3)
        busy = busy_seconds() - self.busy
        # Processes that ended inside the window are missed: a lower bound for ours.
        ours = max(0.0, cpu_seconds(our_pids()) - self.ours)
        self.summary = {
            "seconds": round(elapsed, 1),
            "busy_cores": round(busy / elapsed, 2),
            "ours_cores": round(min(ours, busy) / elapsed, 2),
            "others_cores": round(max(0.0, busy - ours) / elapsed, 2),
            "loadavg_1m": [self.load, loadavg()[0]],
            "waited_for_quiet_s": self.waited,
        }


def wait_for_quiet(patience: float, limit: float = 0.25) -> float:
    """Wait until other processes use < `limit` cores for a second; return the wait."""
    start = time.monotonic()
    while time.monotonic() - start < patience:
        busy, ours = busy_seconds(), cpu_seconds(our_pids())
        time.sleep(1.0)
        others = (busy_seconds() - busy) - (cpu_seconds(our_pids()) - ours)
        if others < limit:
            break
    return round(time.monotonic() - start, 1)


class Profiler:
    """py-spy on some processes while a block runs (`python -m bench --profile`).

    Raw collapsed stacks, one file per process, in `out`; only samples of threads
    holding the GIL (`--gil`), that is where the Python CPU time goes. py-spy pauses
    a process for each sample, so a profiled run's latencies are not the benchmark's.
    """

    def __init__(self, out: Path | None, targets: list[Process], tag: str) -> None:
        self.out, self.targets, self.tag = out, targets, tag
        self.spies: list[subprocess.Popen] = []

    def __enter__(self) -> Profiler:
        if self.out is None:
            return self
        self.out.mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).with_name("py-spy"))
        for proc in self.targets:
            argv = [spy, "record", "--gil", "--rate", "500", "--format", "raw", "--pid"]
            argv += [str(proc.pid), "-o", str(self.out / f"{self.tag}-{proc.name}.txt")]
            if proc.name.startswith("worker"):
                argv.append("--subprocesses")
            self.spies.append(
                subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        time.sleep(0.5)  # attached before the work starts
        return self

    def __exit__(self, *exc: object) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for spy in self.spies:
            spy.wait(60)
