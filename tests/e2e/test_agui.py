"""The AG-UI endpoint against the real web and worker processes (contract: "AG-UI
endpoint"), read by both official SDKs: `@ag-ui/client`'s HttpAgent under Node
(tests/agui/run_agent.mjs, which verifies every event as it reads the stream) and
the Python `ag-ui-protocol` models, which parse every event of the raw stream."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from ag_ui.core import Event
from pydantic import TypeAdapter

from chat import services
from chat.models import Action, Membership, Message, PolicyRule, Request
from tests.plugins.people import token_for
from tests.plugins.stack import effects, reached, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tests" / "agui" / "run_agent.mjs"
EVENT = TypeAdapter(Event)


def node_run(web: str, token: str, slug: str = "triage", **options: Any) -> dict:
    """One run through the official client; its answer (events, outcome, error)."""
    path = "agui/connect" if options.pop("connect", False) else "agui"
    config = {
        "url": f"{web}/api/rooms/{slug}/{path}",
        "threadId": slug,
        "token": token,
        **options,
    }
    done = subprocess.run(
        ["node", str(CLIENT), json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr
    answer = json.loads(lines[-1])
    assert "error" not in answer, (answer, done.stderr)
    return answer


def sse_run(
    web: str, token: str | None, body: dict | bytes, slug: str = "triage", path="agui"
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{web}/api/rooms/{slug}/{path}",
        data=data,
        headers=headers,
        stream=True,
        timeout=90,
    )


def read_events(response: requests.Response) -> tuple[list[dict], int]:
    """Every event of a raw stream, each checked against the AG-UI 1.0 models (no
    field they lack, no null), and the number of keep-alive comments."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    raw = response.raw.read().decode("utf-8")
    assert "\r" not in raw
    events, keep_alives = [], 0
    for block in raw.split("\n\n"):
        if not block:
            continue
        if block == ": keep-alive":
            keep_alives += 1
            continue
        assert block.startswith("data: ") and "\n" not in block, block
        data = json.loads(block.removeprefix("data: "))
        parsed = EVENT.validate_python(data)
        assert parsed.model_dump(mode="json", by_alias=True) == data
        events.append(data)
    return events, keep_alives


def types(events: list[dict]) -> list[str]:
    return [event["type"] for event in events]


def text_of(events: list[dict], message: str) -> str:
    return "".join(
        e["delta"]
        for e in events
        if e["type"] == "TEXT_MESSAGE_CONTENT" and e["messageId"] == message
    )


def run_id() -> str:
    return f"run-{uuid.uuid4().hex}"


@pytest.fixture
def web(stack) -> str:
    stack.worker()
    return stack.web(AGUI_KEEPALIVE_SECONDS="1")


@pytest.fixture
def carol(room, alice):
    from tests.plugins.people import _user

    carol = _user("carol")
    services.member_add(
        room=room, actor=alice, username="carol", role=Membership.Role.APPROVER
    )
    return carol


def test_a_question_streams_its_answer_as_one_run(web, room, bob) -> None:
    answer = node_run(web, token_for(bob), text="find issues about login")
    events = answer["events"]
    assert types(events)[0] == "RUN_STARTED" and types(events)[-1] == "RUN_FINISHED"
    assert answer["outcome"] == {"type": "success"}
    request = Request.objects.get(room=room)
    assert request.status == "completed"
    assert events[0]["metadata"] == {"agentsite": {"request": str(request.pk)}}
    assert events[0]["protocolVersion"] == "1.0"
    # The read ran at once: its call and its result, under the action's id.
    action = Action.objects.get(request=request)
    start = next(e for e in events if e["type"] == "TOOL_CALL_START")
    assert start == {
        "type": "TOOL_CALL_START",
        "toolCallId": str(action.pk),
        "toolCallName": "search_issues",
    }
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    tool_message = Message.objects.get(request=request, role="tool")
    assert result["toolCallId"] == str(action.pk)
    assert result["messageId"] == str(tool_message.pk)
    assert result["content"] == tool_message.content
    # The answer's deltas concatenate to its final content, as the API has it.
    final = Message.objects.get(request=request, role="assistant", content__gt="")
    assert text_of(events, str(final.pk)) == final.content
    detail = requests.get(
        f"{web}/api/requests/{request.pk}",
        headers={"Authorization": f"Token {token_for(bob)}"},
        timeout=10,
    ).json()
    tool = next(m for m in detail["messages"] if m["role"] == "tool")
    assert tool["action"] == str(action.pk)
    assert "agentsite.action" in {e.get("name") for e in events}
    # The same through a raw reader: every event parses with the Python models.
    raw, _ = read_events(
        sse_run(
            web,
            token_for(bob),
            {
                "threadId": "triage",
                "runId": run_id(),
                "messages": [{"id": "u1", "role": "user", "content": "show ENG-3"}],
            },
        )
    )
    assert types(raw)[0] == "RUN_STARTED" and raw[-1]["outcome"] == {"type": "success"}
