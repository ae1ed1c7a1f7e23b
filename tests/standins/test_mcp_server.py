"""The MCP stand-in (a notes service), driven by the MCP SDK's own client.

Over Streamable HTTP (an in-process server, and one subprocess for the listening
line) and over stdio (subprocesses). No Django here.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx2
import pytest
import requests
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ToolsListChanged
from mcp_types import CallToolResult, TextContent, ToolListChangedNotification

from standins.mcp_server import RunningServer, serve_in_thread

REPO = Path(__file__).resolve().parents[2]
TOKEN = "mcp-test-token-0123"
BUILTIN = ["search_notes", "get_note", "add_note", "delete_note"]
SEEDED_N1 = {
    "id": "n1",
    "title": "Launch checklist",
    "text": "Confirm the release notes, tag v2.4 and tell support before Friday.",
    "created": "2025-01-06T09:00:00Z",
}
LISTENING = re.compile(r"^mcp standin listening on http://127\.0\.0\.1:(\d+)/mcp$")

T = TypeVar("T")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = serve_in_thread()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def fresh(server: RunningServer) -> None:
    requests.post(server.control_url("reset"), timeout=5).raise_for_status()


def run(main: Callable[[], Awaitable[T]], timeout: float = 5) -> T:
    """Run an async test body, failing it after `timeout` seconds."""

    async def bounded() -> T:
        with anyio.fail_after(timeout):
            return await main()

    return anyio.run(bounded)


def get(server: RunningServer, name: str) -> Any:
    answer = requests.get(server.control_url(name), timeout=5)
    answer.raise_for_status()
    return answer.json()[name]


def post(server: RunningServer, name: str, body: dict) -> requests.Response:
    return requests.post(server.control_url(name), json=body, timeout=5)


async def apost(server: RunningServer, name: str, body: dict) -> None:
    """POST to a control endpoint from async code (off the event loop)."""
    answer = await anyio.to_thread.run_sync(partial(post, server, name, body))
    answer.raise_for_status()


def text(result: CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def stdio_params(**env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "standins.mcp_server", "--stdio"],
        cwd=str(REPO),
        env=env or None,
    )


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


# Listing


def check_listing(tools: list[Any]) -> None:
    """The four note tools, with annotations and typed, described schemas."""
    by_name = {tool.name: tool for tool in tools}
    assert list(by_name) == BUILTIN

    hints = {
        name: (
            tool.annotations.read_only_hint,
            tool.annotations.destructive_hint,
            tool.annotations.idempotent_hint,
            tool.annotations.open_world_hint,
        )
        for name, tool in by_name.items()
    }
    assert hints == {
        "search_notes": (True, None, True, False),
        "get_note": (True, None, None, False),
        "add_note": (False, False, False, False),
        "delete_note": (False, True, True, False),
    }
    assert by_name["delete_note"].annotations.title == "Delete a note"

    search = by_name["search_notes"].input_schema
    assert search["type"] == "object"
    assert search["required"] == ["query"]
    query, limit = search["properties"]["query"], search["properties"]["limit"]
    assert (query["type"], query["maxLength"]) == ("string", 200)
    assert query["description"]
    assert (limit["type"], limit["default"], limit["minimum"], limit["maximum"]) == (
        "integer",
        10,
        1,
        50,
    )
    add = by_name["add_note"].input_schema
    assert sorted(add["required"]) == ["text", "title"]
    assert add["properties"]["title"]["maxLength"] == 200
    assert add["properties"]["text"]["maxLength"] == 10_000
    for name in ("get_note", "delete_note"):
        schema = by_name[name].input_schema
        assert schema["required"] == ["id"]
        assert schema["properties"]["id"]["type"] == "string"
        assert schema["properties"]["id"]["description"]
    assert "notes" in by_name["search_notes"].output_schema["properties"]
    assert set(by_name["get_note"].output_schema["properties"]) == {
        "id",
        "title",
        "text",
        "created",
    }


def test_http_client_negotiates_2026_and_lists_annotated_tools(
    server: RunningServer,
) -> None:
    async def main() -> None:
        async with Client(server.url) as client:
            assert client.protocol_version == "2026-07-28"
            assert client.server_info is not None
            assert client.server_info.name == "notes-standin"
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.tools.list_changed is True
            check_listing((await client.list_tools()).tools)

    run(main)


def test_legacy_http_handshake_lists_the_same_tools(server: RunningServer) -> None:
    async def main() -> None:
        async with Client(server.url, mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.tools.list_changed is True
            check_listing((await client.list_tools()).tools)

    run(main)


def test_stdio_lists_tools_and_logs_effects_to_the_file(tmp_path: Path) -> None:
    effects_file = tmp_path / "effects.jsonl"

    async def main() -> None:
        params = stdio_params(MCP_STANDIN_EFFECTS=str(effects_file))
        async with Client(params, read_timeout_seconds=5) as client:
            assert client.protocol_version == "2026-07-28"
            check_listing((await client.list_tools()).tools)
            added = await client.call_tool(
                "add_note", {"title": "Via stdio", "text": "x"}
            )
            assert added.structured_content["id"] == "n4"
            read = await client.call_tool("get_note", {"id": "n1"})
            assert read.structured_content == SEEDED_N1

    run(main)
    lines = effects_file.read_text().splitlines()
    assert len(lines) == 1  # the read is no effect
    effect = json.loads(lines[0])
    assert effect["tool"] == "add_note"
    assert effect["arguments"] == {"title": "Via stdio", "text": "x"}
    assert effect["result"]["id"] == "n4"


def test_stdio_handshake_era_session() -> None:
    async def main() -> None:
        async with Client(stdio_params(), mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.tools.list_changed is True
            check_listing((await client.list_tools()).tools)

    run(main)


def test_stdio_writes_nothing_but_protocol_to_stdout() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.mcp_server", "--stdio"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    try:
        out, _ = process.communicate(json.dumps(initialize) + "\n", timeout=5)
    finally:
        process.kill()
    lines = out.splitlines()
    assert len(lines) == 1
    answer = json.loads(lines[0])
    assert answer["id"] == 1
    assert answer["result"]["serverInfo"]["name"] == "notes-standin"


# Calling each tool


def test_search_notes_returns_structured_notes_and_text(server: RunningServer) -> None:
    async def main() -> None:
        async with Client(server.url) as client:
            found = await client.call_tool("search_notes", {"query": "ACME pricing"})
            everything = await client.call_tool("search_notes", {"query": ""})
            first = await client.call_tool("search_notes", {"query": "", "limit": 1})
            nothing = await client.call_tool("search_notes", {"query": "zebra"})
        assert not found.is_error
        notes = found.structured_content["notes"]
        assert [note["id"] for note in notes] == ["n2"]
        assert notes[0]["title"] == "Customer call: Acme"
        assert "n2" in text(found) and "Customer call: Acme" in text(found)
        assert len(everything.structured_content["notes"]) == 3
        assert [n["id"] for n in first.structured_content["notes"]] == ["n1"]
        assert nothing.structured_content == {"notes": []}
        assert "No notes match" in text(nothing)

    run(main)


def test_get_note_and_unknown_note_is_a_tool_error(server: RunningServer) -> None:
    async def main() -> None:
        async with Client(server.url) as client:
            note = await client.call_tool("get_note", {"id": "n1"})
            missing = await client.call_tool("get_note", {"id": "n99"})
        assert not note.is_error
        assert note.structured_content == SEEDED_N1
        assert "Launch checklist" in text(note) and "tag v2.4" in text(note)
        assert missing.is_error
        assert missing.structured_content is None
        assert "n99" in text(missing) and "search_notes" in text(missing)

    run(main)


def test_add_note_twice_adds_two_notes_and_two_effects(server: RunningServer) -> None:
    arguments = {"title": "Call Bo", "text": "About the invoice."}

    async def main() -> list[dict]:
        async with Client(server.url) as client:
            first = await client.call_tool("add_note", arguments)
            second = await client.call_tool("add_note", arguments)
            found = await client.call_tool("search_notes", {"query": "invoice"})
        assert [first.structured_content["id"], second.structured_content["id"]] == [
            "n4",
            "n5",
        ]
        assert first.structured_content["title"] == "Call Bo"
        assert "Added note n4" in text(first)
        return found.structured_content["notes"]

    assert [note["id"] for note in run(main)] == ["n4", "n5"]
    effects = get(server, "effects")
    assert [(e["tool"], e["arguments"]) for e in effects] == [
        ("add_note", arguments)
    ] * 2
    assert [e["result"]["id"] for e in effects] == ["n4", "n5"]


def test_delete_note_is_idempotent(server: RunningServer) -> None:
    async def main() -> None:
        async with Client(server.url) as client:
            deleted = await client.call_tool("delete_note", {"id": "n3"})
            again = await client.call_tool("delete_note", {"id": "n3"})
            gone = await client.call_tool("get_note", {"id": "n3"})
        assert deleted.structured_content == {"id": "n3", "deleted": True}
        assert "Deleted note n3" in text(deleted)
        assert not again.is_error
        assert again.structured_content == {"id": "n3", "deleted": False}
        assert gone.is_error

    run(main)
    assert get(server, "effects") == [
        {
            "tool": "delete_note",
            "arguments": {"id": "n3"},
            "result": {"id": "n3", "deleted": True},
        }
    ]


def test_arguments_outside_the_schema_are_a_tool_error(server: RunningServer) -> None:
    async def main() -> None:
        async with Client(server.url) as client:
            result = await client.call_tool(
                "add_note", {"title": "x" * 201, "text": ""}
            )
        assert result.is_error
        assert "title" in text(result)

    run(main)
    assert get(server, "effects") == []


def test_calls_log_every_call_and_effects_only_changes(server: RunningServer) -> None:
    async def main() -> None:
        async with Client(server.url) as client:
            await client.call_tool("search_notes", {"query": "milk", "limit": 2})
            await client.call_tool("get_note", {"id": "n404"})
            await client.call_tool("delete_note", {"id": "n2"})

    run(main)
    calls = get(server, "calls")
    assert [(c["tool"], c["arguments"]) for c in calls] == [
        ("search_notes", {"query": "milk", "limit": 2}),
        ("get_note", {"id": "n404"}),
        ("delete_note", {"id": "n2"}),
    ]
    assert all(re.match(r"^\d{4}-\d\d-\d\dT", c["at"]) for c in calls)
    assert [e["tool"] for e in get(server, "effects")] == ["delete_note"]
    assert server.store.get("n2") is None  # the in-process store is the served one


# Faults


def test_fault_delay_does_not_hold_up_other_calls(server: RunningServer) -> None:
    post(server, "faults", {"faults": [{"tool": "search_notes", "delay": 1.0}]})

    async def main() -> tuple[float, float]:
        durations: dict[str, float] = {}
        async with Client(server.url) as client:

            async def slow() -> None:
                start = time.monotonic()
                await client.call_tool("search_notes", {"query": "acme"})
                durations["slow"] = time.monotonic() - start

            async with anyio.create_task_group() as group:
                group.start_soon(slow)
                await anyio.sleep(0.1)
                start = time.monotonic()
                note = await client.call_tool("get_note", {"id": "n1"})
                durations["fast"] = time.monotonic() - start
                assert "slow" not in durations
                assert not note.is_error
            # The fault was used up: the next search is quick.
            start = time.monotonic()
            await client.call_tool("search_notes", {"query": "acme"})
            durations["after"] = time.monotonic() - start
        return durations["slow"], durations["fast"] + durations["after"]

    slow, quick = run(main)
    assert slow >= 1.0
    assert quick < 0.5


def test_fault_error_answers_instead_of_applying(server: RunningServer) -> None:
    fault = {"tool": "add_note", "error": "Notes backend unavailable (503)."}
    assert post(server, "faults", {"faults": [fault]}).status_code == 200

    async def main() -> None:
        async with Client(server.url) as client:
            failed = await client.call_tool(
                "add_note", {"title": "Quokka", "text": "b"}
            )
            found = await client.call_tool("search_notes", {"query": "quokka"})
            assert found.structured_content == {"notes": []}
            retried = await client.call_tool(
                "add_note", {"title": "Quokka", "text": "b"}
            )
        assert failed.is_error
        assert text(failed) == "Notes backend unavailable (503)."
        assert not retried.is_error
        assert retried.structured_content["id"] == "n4"

    run(main)
    assert [e["result"]["id"] for e in get(server, "effects")] == ["n4"]


def test_fault_after_apply_changes_the_store_before_answering(
    server: RunningServer,
) -> None:
    fault = {
        "tool": "add_note",
        "delay": 0.6,
        "after_apply": True,
        "error": "Timed out.",
    }
    post(server, "faults", {"faults": [fault]})

    async def main() -> None:
        async with Client(server.url) as client:
            answers: list[CallToolResult] = []

            async def call() -> None:
                answers.append(
                    await client.call_tool("add_note", {"title": "T", "text": "u"})
                )

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await anyio.sleep(0.3)
                # Still waiting for the answer, but the note is there already.
                assert not answers
                effects = await anyio.to_thread.run_sync(get, server, "effects")
                assert [e["result"]["id"] for e in effects] == ["n4"]
            assert answers[0].is_error
            assert text(answers[0]) == "Timed out."
            found = await client.call_tool("get_note", {"id": "n4"})
            assert not found.is_error

    run(main)


def test_fault_count_and_wildcard(server: RunningServer) -> None:
    post(server, "faults", {"faults": [{"tool": "*", "error": "Down.", "count": 2}]})

    async def main() -> list[bool]:
        async with Client(server.url) as client:
            results = [
                await client.call_tool("get_note", {"id": "n1"}),
                await client.call_tool("search_notes", {"query": ""}),
                await client.call_tool("get_note", {"id": "n1"}),
            ]
        return [result.is_error for result in results]

    assert run(main) == [True, True, False]


def test_malformed_faults_are_refused(server: RunningServer) -> None:
    assert post(server, "faults", {"faults": {"tool": "x"}}).status_code == 400
    assert post(server, "faults", {"faults": [{"delay": "soon"}]}).status_code == 400
    assert (
        post(server, "faults", {"faults": [{"tool": "x", "oops": 1}]}).status_code
        == 400
    )


# Authentication


def test_token_is_required_for_mcp_but_not_for_control() -> None:
    with serve_in_thread(token=TOKEN) as secured:
        bare = requests.post(secured.url, json={}, timeout=5)
        wrong = requests.post(
            secured.url, json={}, headers={"Authorization": "Bearer nope"}, timeout=5
        )
        assert bare.status_code == wrong.status_code == 401
        assert bare.headers["WWW-Authenticate"].startswith("Bearer ")
        assert bare.json()["error"] == "invalid_token"
        assert requests.get(secured.control_url("health"), timeout=5).json() == {
            "ok": True
        }

        async def main() -> None:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx2.AsyncClient(headers=headers) as http:
                transport = streamable_http_client(secured.url, http_client=http)
                async with Client(transport) as client:
                    assert client.protocol_version == "2026-07-28"
                    note = await client.call_tool("get_note", {"id": "n1"})
                    assert note.structured_content == SEEDED_N1
            with pytest.raises(BaseException) as refused:
                async with Client(secured.url):
                    pass
            assert any(isinstance(leaf, MCPError) for leaf in leaves(refused.value))

        run(main)


# Changing the tool list


def test_listening_client_hears_tool_list_changes(server: RunningServer) -> None:
    async def main() -> None:
        async with Client(server.url, read_timeout_seconds=5) as client:
            await client.list_tools()
            async with client.listen(tools_list_changed=True) as subscription:
                assert subscription.honored.tools_list_changed is True
                await apost(
                    server,
                    "tools",
                    {"add": [{"name": "archive_note", "description": "Archive it."}]},
                )
                with anyio.fail_after(2):
                    event = await anext(subscription)
                assert isinstance(event, ToolsListChanged)
                listing = {t.name: t for t in (await client.list_tools()).tools}
                assert list(listing) == [*BUILTIN, "archive_note"]
                added = listing["archive_note"]
                assert added.description == "Archive it."
                assert added.annotations.read_only_hint is False
                echoed = await client.call_tool("archive_note", {"id": "n1", "why": 2})
                assert echoed.structured_content == {
                    "tool": "archive_note",
                    "arguments": {"id": "n1", "why": 2},
                }

                await apost(server, "tools", {"remove": ["archive_note", "add_note"]})
                with anyio.fail_after(2):
                    assert isinstance(await anext(subscription), ToolsListChanged)
                names = [t.name for t in (await client.list_tools()).tools]
                assert names == ["search_notes", "get_note", "delete_note"]

    run(main)
    assert [c["tool"] for c in get(server, "calls")] == ["archive_note"]


def test_handshake_session_gets_list_changed_notification(
    server: RunningServer,
) -> None:
    async def main() -> None:
        heard = anyio.Event()

        async def on_message(message: Any) -> None:
            if isinstance(message, ToolListChangedNotification):
                heard.set()

        async with Client(
            server.url, mode="legacy", message_handler=on_message
        ) as client:
            await client.list_tools()
            # The notification rides the session's GET stream, which the client
            # opens in the background after the handshake: try until it is up.
            for attempt in range(5):
                body = {"add": [{"name": f"ping_{attempt}", "read_only": True}]}
                await apost(server, "tools", body)
                with anyio.move_on_after(0.5):
                    await heard.wait()
                if heard.is_set():
                    break
            assert heard.is_set()
            tools = (await client.list_tools()).tools
            added = [t for t in tools if t.name.startswith("ping_")]
            assert added and added[-1].annotations.read_only_hint is True

    run(main)


def test_reset_restores_notes_and_tools(server: RunningServer) -> None:
    post(server, "tools", {"add": [{"name": "extra"}], "remove": ["add_note"]})
    post(server, "faults", {"faults": [{"tool": "*", "error": "x"}]})
    assert requests.get(server.control_url("tools"), timeout=5).json() == {
        "tools": ["search_notes", "get_note", "delete_note", "extra"]
    }
    server.store.add("Scratch", "Gone after reset.")

    assert post(server, "reset", {}).json() == {"ok": True}

    async def main() -> None:
        async with Client(server.url) as client:
            assert [t.name for t in (await client.list_tools()).tools] == BUILTIN
            everything = await client.call_tool("search_notes", {"query": ""})
            assert not everything.is_error  # the fault went too
            assert len(everything.structured_content["notes"]) == 3

    run(main)
    calls = get(server, "calls")  # only those since the reset
    assert [(c["tool"], c["arguments"]) for c in calls] == [
        ("search_notes", {"query": ""})
    ]


def test_malformed_tool_changes_are_refused(server: RunningServer) -> None:
    assert post(server, "tools", {"add": [{"name": "has space"}]}).status_code == 400
    assert post(server, "tools", {"remove": ["no_such_tool"]}).status_code == 400
    assert post(server, "tools", {"rename": []}).status_code == 400


# The command line


def test_subprocess_with_port_0_prints_the_listening_line() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.mcp_server", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 5)
        assert ready, "no listening line within 5 s"
        line = process.stdout.readline().rstrip("\n")
        match = LISTENING.match(line)
        assert match, line
        port = int(match.group(1))
        assert port > 0
        health = requests.get(f"http://127.0.0.1:{port}/_control/health", timeout=5)
        assert health.json() == {"ok": True}
    finally:
        process.terminate()
        process.wait(5)
