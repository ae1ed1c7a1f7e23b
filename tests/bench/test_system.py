"""The benchmark's web processes and workers run the Procfile's command lines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.system import System, bench_env
from stack.procfile import command_line, read_procfile
from stack.supervisor import PROCFILE

pytestmark = pytest.mark.e2e


def swapped(words: list[str], old: str, new: str) -> list[str]:
    assert old in words
    return [new if word == old else word for word in words]


@pytest.fixture
def system(tmp_path: Path, redis_url: str) -> Iterator[System]:
    system = System(tmp_path, print)
    system.log_dir.mkdir()
    system.env = bench_env(redis_url, f"bench-test-{os.getpid()}")
    yield system
    system.stop()


def test_bench_processes_are_the_procfiles_with_only_the_app_swapped(system):
    lines = read_procfile(PROCFILE)
    web = system.web("web-bare", app="bench.limit:bare_app")
    worker = system.worker("worker-ref", app="bench.celery_ref")

    web_line = command_line(lines["web"], web.env)
    assert web.argv == swapped(
        web_line, "agentsite.asgi:application", "bench.limit:bare_app"
    )
    worker_line = command_line(lines["worker"], worker.env)
    node = ["-n", f"worker-ref-{os.getpid()}@%h"]
    assert worker.argv == swapped(worker_line, "agentsite", "bench.celery_ref") + node
    # The Procfile's own pool size: the bench measures the worker as deployed.
    assert "WORKER_CONCURRENCY" not in worker.env
