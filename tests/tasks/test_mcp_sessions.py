"""MCP sessions to servers nobody here wrote: the reference servers `mcp-server-git`
and `mcp-server-time` from PyPI, over stdio, driven through the worker's hub.

Their sessions used to die seconds after listing (a transport opened in one task
and closed in another); here each must serve a read, stay open through ten idle
seconds, then serve a write.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chat.models import McpListing, McpPin
from tasks.mcp_client import McpHub

BIN = Path(sys.executable).parent
IDLE_SECONDS = 10

# Real servers over stdio, and ten idle seconds: in `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "alice@example.com")
    git(repo, "config", "user.name", "Alice")
    (repo / "README.md").write_text("hello\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "notes.txt").write_text("ship the packs\n")
    return repo


@pytest.fixture
def started() -> Iterator[Callable[[McpHub], McpHub]]:
    """Hubs closed after the test: their stdio servers' processes stop."""
    hubs: list[McpHub] = []

    def start(hub: McpHub) -> McpHub:
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.close()


def text(answer) -> str:
    return "\n".join(getattr(block, "text", "") for block in answer.content)


def call(hub: McpHub, server: str, tool: str, arguments: dict) -> str:
    sent: list[str] = []
    answer = hub.call(server, tool, arguments, lambda: sent.append(tool))
    assert sent == [tool]
    assert not answer.is_error, text(answer)
    return text(answer)


@pytest.mark.django_db(transaction=True)
def test_pypi_stdio_servers_hold_their_sessions_through_idle_time(
    repo, started
) -> None:
    servers = [
        {
            "name": "git",
            "command": [str(BIN / "mcp-server-git"), "--repository", str(repo)],
        },
        {
            "name": "time",
            "command": [str(BIN / "mcp-server-time"), "--local-timezone", "UTC"],
        },
    ]
    hub = started(McpHub(servers, timeout=20))
    listed = {name: hub.tools(name, wait=30) for name in ("git", "time")}
    assert "git_status" in {t["name"] for t in listed["git"] or []}
    assert "get_current_time" in {t["name"] for t in listed["time"] or []}
    # Stored for every process, and each tool pinned as first listed.
    assert set(McpListing.objects.values_list("server", flat=True)) == {"git", "time"}
    assert McpPin.objects.filter(server="git", tool="git_add").exists()

    assert "notes.txt" in call(hub, "git", "git_status", {"repo_path": str(repo)})
    assert "UTC" in call(hub, "time", "get_current_time", {"timezone": "UTC"})

    time.sleep(IDLE_SECONDS)

    add = {"repo_path": str(repo), "files": ["notes.txt"]}
    call(hub, "git", "git_add", add)
    assert git(repo, "diff", "--cached", "--name-only").split() == ["notes.txt"]
    assert "UTC" in call(hub, "time", "get_current_time", {"timezone": "UTC"})
    # Nothing went down meanwhile: each server was connected once.
    assert all(server.error == "not connected yet" for server in hub.servers.values())


@pytest.mark.django_db(transaction=True)
def test_a_call_made_while_the_server_is_down_is_sent_when_it_is_back(
    repo, tmp_path, started
) -> None:
    # The server's command exists only after the call is made: the call waits in
    # the queue and the first session to open sends it, once.
    launcher = tmp_path / "git-server"
    hub = started(
        McpHub([{"name": "git", "command": [sys.executable, str(launcher)]}], 20)
    )
    time.sleep(1.5)
    assert hub.error("git") != "not connected yet"  # it tried, and failed
    with ThreadPoolExecutor(1) as pool:
        status = pool.submit(call, hub, "git", "git_status", {"repo_path": str(repo)})
        time.sleep(0.5)
        launcher.write_text(
            "import sys\n"
            "from mcp_server_git import main\n"
            f"sys.argv = ['mcp-server-git', '--repository', {str(repo)!r}]\n"
            "main()\n"
        )
        assert "notes.txt" in status.result(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_a_server_that_exited_while_idle_is_started_again_for_the_next_call(
    started,
) -> None:
    clock = [str(BIN / "mcp-server-time"), "--local-timezone", "UTC"]
    hub = started(McpHub([{"name": "time", "command": clock}], timeout=20))
    assert hub.tools("time", wait=30)
    [pid] = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "mcp-server-time"],
        capture_output=True,
        text=True,
    ).stdout.split()
    os.kill(int(pid), signal.SIGKILL)
    time.sleep(1)

    # Not sent to the dead session (where it would have been lost, maybe run):
    # sent once, to the server started again.
    assert "UTC" in call(hub, "time", "get_current_time", {"timezone": "UTC"})
