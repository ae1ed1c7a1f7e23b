"""The tool packs beside Linear, end to end: GitHub issues through the local GitHub
server, and MCP servers' tools through a real MCP server (the SDK's server side),
each behind the approval gate, with real workers, Redis and the local model."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chat import services, tools
from chat.models import Action, McpListing, Message, Request, RoomEvent
from stack.procs import free_port
from tests.plugins.stack import mcp_servers, reached, wait_for

pytestmark = pytest.mark.e2e
S = Request.Status


def pending(request: Request) -> Action:
    reached(request, S.AWAITING_APPROVAL)
    [action] = Action.objects.filter(request=request, status="pending")
    return action


def last_answer(request: Request) -> str:
    return Message.objects.filter(request=request, role="assistant").last().content


def github_effects(github, op: str | None = None) -> list[dict]:
    found = github.control("effects")["effects"]
    return [e for e in found if op is None or e["op"] == op]


def assert_documented(github) -> None:
    """Every request we sent GitHub's stand-in matched the endpoint's documented
    shape (body, query parameters, API version header)."""
    sent = github.control("requests")["requests"]
    assert sent, "nothing was sent to GitHub"
    strays = [(r["method"], r["path"], r["problems"]) for r in sent if r["problems"]]
    assert strays == []


def executing(action: Action, attempts: int = 1) -> None:
    def started() -> bool:
        action.refresh_from_db()
        return action.status == "executing" and action.attempts >= attempts

    wait_for(started, timeout=20, what="the tool call to start")


# GitHub -------------------------------------------------------------------------


def test_github_create_asks_runs_once_on_approval_with_documented_requests(
    stack, room, alice, bob, github_standin
):
    stack.worker()
    request = services.request_start(
        room=room, user=bob, text="create a github issue titled Flaky login on main"
    )
    action = pending(request)
    assert (action.tool, action.pack) == ("github_create_issue", "github")
    assert action.preview == {
        "creates": "Flaky login on main",
        "repository": "demo/agentsite",
        "labels": [],
    }

    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    reached(request, S.COMPLETED)

    [created] = github_effects(github_standin, "create_issue")
    assert created["fields"]["title"] == "Flaky login on main"
    action.refresh_from_db()
    assert action.status == "succeeded"
    number = action.result["created"]["number"]
    # The hidden marker stays out of what the model and the room read.
    assert "agentsite-action" not in json.dumps(action.result)
    assert f"#{number}" in last_answer(request)
    assert_documented(github_standin)


def test_github_denied_update_never_runs(stack, room, alice, bob, github_standin):
    stack.worker()
    request = services.request_start(room=room, user=bob, text="close github issue #2")
    action = pending(request)
    assert action.preview["identifier"] == "#2"
    assert action.preview["state"] == "open"

    services.action_decide(
        action_id=str(action.pk), user=alice, decision="deny", reason="not fixed yet"
    )
    reached(request, S.COMPLETED)

    assert github_effects(github_standin, "update_issue") == []
    assert "not fixed yet" in last_answer(request)


def test_github_comment_edited_by_the_approver_runs_as_edited(
    stack, room, alice, bob, github_standin
):
    stack.worker()
    request = services.request_start(
        room=room, user=bob, text="comment on github issue #4: looks fine"
    )
    action = pending(request)

    services.action_decide(
        action_id=str(action.pk),
        user=alice,
        decision="approve",
        arguments={"number": 4, "body": "Reproduced on Safari 18."},
    )
    reached(request, S.COMPLETED)

    [comment] = github_effects(github_standin, "add_comment")
    assert comment["number"] == 4
    assert comment["fields"]["body"].startswith("Reproduced on Safari 18.")
    assert "edited" in last_answer(request)
    assert_documented(github_standin)


def test_github_reads_run_at_once(stack, room, bob, github_standin):
    stack.worker()
    request = services.request_start(room=room, user=bob, text="show github issue #3")
    reached(request, S.COMPLETED)

    [action] = Action.objects.filter(request=request)
    assert (action.status, action.requires_approval) == ("succeeded", False)
    assert action.result["issue"]["number"] == 3
    assert github_effects(github_standin) == []
    assert_documented(github_standin)


def test_a_github_create_cut_off_by_a_killed_worker_is_not_duplicated(
    stack, room, alice, bob, github_standin
):
    """The create reaches GitHub, the worker dies before the answer: the retry
    finds the issue by its marker instead of opening a second one."""
    github_standin.control(
        "faults", {"faults": [{"op": "create_issue", "delay": 4.0, "count": 1}]}
    )
    stack.beat()
    worker = stack.worker("worker-1")
    request = services.request_start(
        room=room, user=bob, text="create a github issue titled Crash-proof create"
    )
    action = pending(request)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    executing(action)
    # The POST is in flight, held by the fault's delay (the stand-in logs a request
    # only once it answers): room for a busy worker to send it, and to kill it before.
    time.sleep(1.5)
    worker.kill()
    wait_for(
        lambda: len(github_effects(github_standin, "create_issue")) == 1,
        timeout=10,
        what="the interrupted create to land",
    )
    stack.worker("worker-2")
    reached(request, S.COMPLETED, timeout=40)

    action.refresh_from_db()
    assert (action.status, action.attempts) == ("succeeded", 2)
    assert action.result["created"]["title"] == "Crash-proof create"
    assert len(github_effects(github_standin, "create_issue")) == 1
    assert_documented(github_standin)


def test_a_github_create_whose_answer_was_lost_is_read_back(
    stack, room, alice, bob, github_standin
):
    github_standin.control(
        "faults",
        {"faults": [{"op": "create_issue", "status": 502, "after_apply": True}]},
    )
    stack.worker()
    request = services.request_start(
        room=room, user=bob, text="create a github issue titled Lost answer"
    )
    action = pending(request)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    reached(request, S.COMPLETED, timeout=40)

    action.refresh_from_db()
    assert action.status == "succeeded"
    assert len(github_effects(github_standin, "create_issue")) == 1


# MCP ----------------------------------------------------------------------------


@pytest.fixture
def notes(mcp_standin, settings) -> dict:
    """The local MCP server as `notes`, in the worker and in this process: ours,
    so its annotations are trusted (as `make run` configures it)."""
    server = {"name": "notes", "url": mcp_standin.url, "trust_annotations": True}
    settings.AGENT_MCP_SERVERS = [server]
    tools.forget_listings()
    yield server
    tools.forget_listings()


def notes_worker(stack, *servers: dict, name: str = "worker"):
    worker = stack.worker(name, AGENT_MCP_SERVERS=mcp_servers(*servers))
    wait_for(
        lambda: McpListing.objects.filter(server=servers[0]["name"]).exists(),
        timeout=20,
        what="the worker to list the MCP server's tools",
    )
    tools.forget_listings()
    return worker


def mcp_effects(mcp, tool: str | None = None) -> list[dict]:
    found = mcp.control("effects")["effects"]
    return [e for e in found if tool is None or e["tool"] == tool]


def mcp_calls(mcp, tool: str) -> list[dict]:
    return [c for c in mcp.control("calls")["calls"] if c["tool"] == tool]


def test_a_read_only_mcp_tool_runs_without_approval(
    stack, room, bob, notes, mcp_standin
):
    notes_worker(stack, notes)
    request = services.request_start(
        room=room, user=bob, text="search notes for standup"
    )
    reached(request, S.COMPLETED)

    [action] = Action.objects.filter(request=request)
    assert (action.tool, action.pack) == ("notes__search_notes", "mcp")
    assert (action.status, action.requires_approval) == ("succeeded", False)
    assert action.result["text"]
    assert "notes" in action.result["structured"]
    assert "notes__search_notes answered" in last_answer(request)


def test_an_mcp_tool_that_is_not_read_only_asks_and_runs_once(
    stack, room, alice, bob, notes, mcp_standin
):
    notes_worker(stack, notes)
    request = services.request_start(
        room=room, user=bob, text="add a note titled Standup: ship the packs"
    )
    action = pending(request)
    assert action.tool == "notes__add_note"

    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    reached(request, S.COMPLETED)

    [effect] = mcp_effects(mcp_standin, "add_note")
    assert effect["arguments"] == {"title": "Standup", "text": "ship the packs"}
    assert Action.objects.get(pk=action.pk).status == "succeeded"


def test_an_mcp_tool_error_fails_the_action_and_the_turn_goes_on(
    stack, room, bob, notes, mcp_standin
):
    mcp_standin.control(
        "faults", {"faults": [{"tool": "search_notes", "error": "index offline"}]}
    )
    notes_worker(stack, notes)
    request = services.request_start(room=room, user=bob, text="search notes for x")
    reached(request, S.COMPLETED)

    action = Action.objects.get(request=request)
    assert action.status == "failed"
    assert "index offline" in action.error
    assert "index offline" in last_answer(request)


def test_a_denied_mcp_call_never_reaches_the_server(
    stack, room, alice, bob, notes, mcp_standin
):
    notes_worker(stack, notes)
    request = services.request_start(room=room, user=bob, text="delete note n2")
    action = pending(request)

    services.action_decide(
        action_id=str(action.pk), user=alice, decision="deny", reason="keep it"
    )
    reached(request, S.COMPLETED)

    assert mcp_calls(mcp_standin, "delete_note") == []
    assert "keep it" in last_answer(request)


def test_an_edited_mcp_call_runs_with_the_edited_arguments(
    stack, room, alice, bob, notes, mcp_standin
):
    notes_worker(stack, notes)
    request = services.request_start(
        room=room, user=bob, text="add a note titled Draft: first try"
    )
    action = pending(request)

    services.action_decide(
        action_id=str(action.pk),
        user=alice,
        decision="approve",
        arguments={"title": "Final", "text": "second try"},
    )
    reached(request, S.COMPLETED)

    [effect] = mcp_effects(mcp_standin, "add_note")
    assert effect["arguments"] == {"title": "Final", "text": "second try"}


def test_a_non_idempotent_mcp_call_cut_off_by_a_crash_is_not_repeated(
    stack, room, alice, bob, notes, mcp_standin
):
    mcp_standin.control(
        "faults", {"faults": [{"tool": "add_note", "delay": 3.0, "count": 1}]}
    )
    stack.beat()
    worker = notes_worker(stack, notes, name="worker-1")
    request = services.request_start(
        room=room, user=bob, text="add a note titled Once: only once"
    )
    action = pending(request)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    executing(action)
    wait_for(lambda: mcp_calls(mcp_standin, "add_note"), what="the call to arrive")
    worker.kill()
    notes_worker(stack, notes, name="worker-2")
    reached(request, S.COMPLETED, timeout=40)

    action.refresh_from_db()
    assert action.status == "failed"
    assert "may or may not have run" in action.error
    assert len(mcp_calls(mcp_standin, "add_note")) == 1


def test_an_idempotent_mcp_call_cut_off_by_a_crash_is_repeated(
    stack, room, alice, bob, notes, mcp_standin
):
    mcp_standin.control(
        "faults", {"faults": [{"tool": "delete_note", "delay": 3.0, "count": 1}]}
    )
    stack.beat()
    worker = notes_worker(stack, notes, name="worker-1")
    request = services.request_start(room=room, user=bob, text="delete note n1")
    action = pending(request)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    executing(action)
    wait_for(lambda: mcp_calls(mcp_standin, "delete_note"), what="the call to arrive")
    worker.kill()
    notes_worker(stack, notes, name="worker-2")
    reached(request, S.COMPLETED, timeout=40)

    action.refresh_from_db()
    assert action.status == "succeeded"
    assert len(mcp_calls(mcp_standin, "delete_note")) == 2


def test_an_mcp_server_that_is_down_leaves_its_tools_out_not_the_turn(
    stack, room, bob, notes, mcp_standin, openai_standin, settings
):
    ghost = {"name": "ghost", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    settings.AGENT_MCP_SERVERS = [notes, ghost]
    notes_worker(stack, notes, ghost)
    request = services.request_start(
        room=room, user=bob, text="search notes for standup"
    )
    reached(request, S.COMPLETED, timeout=40)

    assert Action.objects.get(request=request).status == "succeeded"
    [notice] = RoomEvent.objects.filter(room=room, type="notice")
    assert "ghost" in notice.payload["text"]
    assert notice.payload["request"] == str(request.pk)
    offered = openai_standin.control("requests")["requests"][0]["body"]["tools"]
    names = {t["function"]["name"] for t in offered}
    assert "notes__search_notes" in names
    assert not any(name.startswith("ghost__") for name in names)


def test_tools_are_listed_again_when_the_server_says_they_changed(
    stack, notes, mcp_standin
):
    notes_worker(stack, notes)
    mcp_standin.control(
        "tools", {"add": [{"name": "echo", "description": "Echo the arguments."}]}
    )

    def listed() -> bool:
        listing = McpListing.objects.get(server="notes")
        return "echo" in {tool["name"] for tool in listing.tools}

    wait_for(listed, timeout=20, what="the new tool in the listing")
    tools.forget_listings()
    assert tools.catalogue()["notes__echo"].needs_approval


def test_a_stdio_mcp_server_works_the_same(stack, room, bob, settings, tmp_path):
    local = {
        "name": "local",
        "command": [sys.executable, "-m", "standins.mcp_server", "--stdio"],
        "env": {"MCP_STANDIN_EFFECTS": str(tmp_path / "effects.jsonl")},
        "trust_annotations": True,
    }
    settings.AGENT_MCP_SERVERS = [local]
    notes_worker(stack, local)
    request = services.request_start(
        room=room, user=bob, text='call local__search_notes {"query": ""}'
    )
    reached(request, S.COMPLETED)

    [action] = Action.objects.filter(request=request)
    assert (action.status, action.requires_approval) == ("succeeded", False)
    assert action.result["structured"]["notes"]


def test_pypi_stdio_servers_read_then_write_after_approval_across_idle_time(
    stack, room, alice, bob, settings, tmp_path
):
    # The reference servers from PyPI (mcp-server-git, mcp-server-time), which
    # nobody here wrote: their sessions used to die seconds after listing.
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q"],
        ["config", "user.email", "alice@example.com"],
        ["config", "user.name", "Alice"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "notes.txt").write_text("ship the packs\n")
    bin_dir = Path(sys.executable).parent
    git = {
        "name": "git",
        "command": [str(bin_dir / "mcp-server-git"), "--repository", str(repo)],
        "trust_annotations": True,
    }
    clock = {
        "name": "time",
        "command": [str(bin_dir / "mcp-server-time"), "--local-timezone", "UTC"],
        "trust_annotations": True,
    }
    settings.AGENT_MCP_SERVERS = [git, clock]
    notes_worker(stack, git, clock)
    wait_for(lambda: McpListing.objects.filter(server="time").exists(), timeout=20)
    tools.forget_listings()

    def call(tool: str, arguments: dict) -> Request:
        text = f"call {tool} {json.dumps(arguments)}"
        return services.request_start(room=room, user=bob, text=text)

    def ran(request: Request) -> Action:
        reached(request, S.COMPLETED)
        [action] = Action.objects.filter(request=request)
        assert action.status == "succeeded", action.error
        return action

    status = ran(call("git__git_status", {"repo_path": str(repo)}))
    assert not status.requires_approval
    assert "notes.txt" in status.result["text"]
    assert (
        "UTC" in ran(call("time__get_current_time", {"timezone": "UTC"})).result["text"]
    )

    time.sleep(10)

    add = call("git__git_add", {"repo_path": str(repo), "files": ["notes.txt"]})
    action = pending(add)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    ran(add)
    staged = subprocess.run(
        ["git", "-C", str(repo), "diff", "--cached", "--name-only"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert staged == ["notes.txt"]
    assert (
        "UTC" in ran(call("time__get_current_time", {"timezone": "UTC"})).result["text"]
    )


def test_pack_secrets_reach_no_event_result_model_input_or_log(
    stack, room, alice, bob, notes, github_standin, mcp_standin, openai_standin
):
    """The GitHub token and an MCP server's headers travel only as credentials."""
    github_token, mcp_secret = "ghp_SECRET_pack_token_789", "mcp-SECRET-header-012"
    server = {**notes, "headers": {"Authorization": f"Bearer {mcp_secret}"}}
    stack.env.update(GITHUB_TOKEN=github_token)
    notes_worker(stack, server)
    searched = services.request_start(
        room=room, user=bob, text="search notes for launch"
    )
    reached(searched, S.COMPLETED)
    created = services.request_start(
        room=room, user=bob, text="create a github issue titled Secret-free"
    )
    action = pending(created)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    reached(created, S.COMPLETED)

    seen = json.dumps(
        [
            list(RoomEvent.objects.filter(room=room).values_list("payload", flat=True)),
            list(Action.objects.values_list("result", "preview", "error")),
            [r["body"] for r in openai_standin.control("requests")["requests"]],
        ],
        default=str,
    )
    logs = "".join(proc.output() for proc in stack.procs)
    for secret in (github_token, mcp_secret):
        assert secret not in seen and secret not in logs
    assert Action.objects.get(pk=action.pk).status == "succeeded"
