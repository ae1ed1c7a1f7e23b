"""The AG-UI endpoint against the real web and worker processes (contract: "AG-UI
endpoint"), read by both official SDKs: `@ag-ui/client`'s HttpAgent under Node
(tests/agui/run_agent.mjs, which verifies every event as it reads the stream) and
the Python `ag-ui-protocol` models, which parse every event of the raw stream."""

from __future__ import annotations

import json
import subprocess
import threading
import time
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
    for event in answer["events"]:
        EVENT.validate_python(event)  # and the Python SDK parses what Node read
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


def resume(action: Action, **payload: Any) -> list[dict]:
    return [{"interruptId": str(action.pk), "status": "resolved", "payload": payload}]


def pending_delete(web: str, bob) -> tuple[dict, Action]:
    asked = node_run(web, token_for(bob), text="delete ENG-3")
    return asked, Action.objects.get(tool="delete_issue", status="pending")


def test_an_approval_ends_the_run_with_an_interrupt_and_resume_approves_it(
    web, room, alice, bob, linear_standin
) -> None:
    asked, action = pending_delete(web, bob)
    assert asked["outcome"]["type"] == "interrupt"
    (interrupt,) = asked["outcome"]["interrupts"]
    assert interrupt["id"] == interrupt["toolCallId"] == str(action.pk)
    assert interrupt["reason"] == "tool_call"
    assert interrupt["message"].startswith("Approve delete_issue on ENG-3 (")
    assert interrupt["message"].endswith(")?")
    tools = requests.get(
        f"{web}/api/tools", headers={"Authorization": f"Token {token_for(bob)}"}
    ).json()
    parameters = next(t["parameters"] for t in tools if t["name"] == "delete_issue")
    assert interrupt["responseSchema"] == {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "editedArgs": parameters,
            "reason": {"type": "string"},
        },
        "required": ["approved"],
    }
    assert interrupt["expiresAt"] == services.action_get(
        action_id=str(action.pk), user=bob
    ).expires_at.isoformat().replace("+00:00", "Z")
    agentsite = interrupt["metadata"]["agentsite"]
    assert agentsite["may_vote"] is False  # bob is a member, not an approver
    assert agentsite["action"]["id"] == str(action.pk)
    assert [p["id"] for p in asked["pending"]] == [str(action.pk)]
    # The call was told before the interrupt.
    kinds = types(asked["events"])
    assert kinds.index("TOOL_CALL_START") < kinds.index("TOOL_CALL_END")
    assert kinds[-1] == "RUN_FINISHED"

    approved = node_run(web, token_for(alice), resume=resume(action, approved=True))
    assert approved["outcome"] == {"type": "success"}
    events = approved["events"]
    assert "TOOL_CALL_START" not in types(events)  # answered: not told again
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert result["toolCallId"] == str(action.pk)
    assert '"succeeded"' in result["content"]
    action.refresh_from_db()
    assert (action.status, action.decided_via) == ("succeeded", "api")
    assert action.decided_by == alice
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_a_denial_through_resume_is_the_tools_result_and_nothing_runs(
    web, room, alice, bob, linear_standin
) -> None:
    _, action = pending_delete(web, bob)
    denied = node_run(
        web, token_for(alice), resume=resume(action, approved=False, reason="no way")
    )
    assert denied["outcome"] == {"type": "success"}
    result = next(e for e in denied["events"] if e["type"] == "TOOL_CALL_RESULT")
    assert '"denied": true' in result["content"] and "no way" in result["content"]
    action.refresh_from_db()
    assert action.status == "denied" and action.reason == "no way"
    assert effects(linear_standin, "issueDelete") == []


def test_two_clients_approve_under_a_quorum_of_two_and_the_tool_runs_once(
    web, room, alice, bob, carol, linear_standin
) -> None:
    PolicyRule.objects.create(room=room, tool="delete_issue", approvals_required=2)
    _, action = pending_delete(web, bob)
    # Alice's resumed run (a raw reader: every event through the Python models)
    # stays open while the request waits on the second vote.
    answer: dict[str, Any] = {}

    def alice_run() -> None:
        body = {
            "threadId": "triage",
            "runId": run_id(),
            "messages": [],
            "resume": resume(action, approved=True),
        }
        answer["events"], answer["keep_alives"] = read_events(
            sse_run(web, token_for(alice), body)
        )

    reader = threading.Thread(target=alice_run)
    reader.start()
    wait_for(
        lambda: action.votes.filter(user=alice).exists(), what="alice's vote to count"
    )
    reader.join(timeout=3)
    assert reader.is_alive()  # waiting on carol, with keep-alives meanwhile
    action.refresh_from_db()
    assert action.status == "pending"

    second = node_run(web, token_for(carol), resume=resume(action, approved=True))
    assert second["outcome"] == {"type": "success"}
    reader.join(timeout=60)
    events = answer["events"]
    assert events[-1]["outcome"] == {"type": "success"}
    assert answer["keep_alives"] >= 1
    votes = [
        e["value"]["approvals"]
        for e in events
        if e["type"] == "CUSTOM" and e["name"] == "agentsite.action"
    ]
    assert [len(v) for v in votes][:2] == [1, 2]
    assert [e["type"] for e in events].count("TOOL_CALL_RESULT") == 1
    assert len(effects(linear_standin, "issueDelete")) == 1
    assert Action.objects.get(pk=action.pk).status == "succeeded"


def test_a_late_joiner_connects_to_the_history_and_the_pending_approval(
    web, room, alice, bob
) -> None:
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    reached(request, "awaiting_approval", timeout=60)
    action = Action.objects.get(request=request)
    joined = node_run(web, token_for(alice), connect=True)
    events = joined["events"]
    assert types(events)[:2] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    assert events[0]["metadata"] == {"agentsite": {"request": str(request.pk)}}
    history = events[1]["messages"]
    user = next(m for m in history if m["role"] == "user")
    assert (user["content"], user["name"]) == ("delete ENG-3", "bob")
    call = next(m for m in history if m.get("toolCalls"))
    assert call["id"] == call["toolCalls"][0]["id"] == str(action.pk)
    assert call["toolCalls"][0]["function"]["name"] == "delete_issue"
    (interrupt,) = joined["outcome"]["interrupts"]
    assert interrupt["id"] == str(action.pk)
    assert interrupt["metadata"]["agentsite"]["may_vote"] is True
    # Nothing in progress: the history, then success.
    services.action_decide(action_id=str(action.pk), user=alice, decision="deny")
    reached(request, "completed")
    quiet = node_run(web, token_for(alice), connect=True)
    assert types(quiet["events"]) == [
        "RUN_STARTED",
        "MESSAGES_SNAPSHOT",
        "RUN_FINISHED",
    ]


def test_refused_input_answers_the_contracts_codes(
    web, room, alice, bob, mallory
) -> None:
    good = {
        "threadId": "triage",
        "runId": "r1",
        "messages": [{"id": "u", "role": "user", "content": "hi"}],
    }

    def status(body: Any, token: str | None = token_for(alice), **kw: Any) -> int:
        response = sse_run(web, token, body, **kw)
        if response.status_code != 200:
            assert response.json()["detail"]
        return response.status_code

    assert status(good, token=None) == 401
    assert status(good, token=token_for(mallory)) == 404
    assert status(good, slug="elsewhere") == 404
    assert status({**good, "threadId": "other"}) == 400
    assert status(b"not json") == 400
    assert status(b"[1, 2]") == 400
    assert status({**good, "runId": 5}) == 400
    assert status({**good, "runId": ""}) == 400
    assert status({**good, "runId": "x" * 201}) == 400
    assert status({**good, "protocolVersion": None}) == 400
    assert status({k: v for k, v in good.items() if k != "messages"}) == 400
    assert status({**good, "messages": []}) == 400
    assert status({**good, "messages": [{"id": "u", "role": "bogus"}]}) == 400
    assert status({**good, "messages": [{"id": "u", "role": "user"}]}) == 400
    assert status({**good, "messages": [{"id": "a", "role": "assistant"}]}) == 400
    assert (
        status({**good, "messages": [{"id": "u", "role": "user", "content": " "}]})
        == 400
    )
    too_long = "x" * 10_001
    assert (
        status({**good, "messages": [{"id": "u", "role": "user", "content": too_long}]})
        == 400
    )
    assert status(b'{"pad": "' + b"x" * (1024 * 1024) + b'"}') == 400
    assert (
        requests.get(
            f"{web}/api/rooms/triage/agui",
            headers={"Authorization": f"Token {token_for(alice)}"},
        ).status_code
        == 405
    )
    missing = {**good, "forwardedProps": {"agentsite": {"request": str(uuid.uuid4())}}}
    assert status(missing, path="agui/connect") == 404
    # A runId once per caller and room: connect with nothing in progress ends at once.
    first = {**good, "runId": "once"}
    events, _ = read_events(sse_run(web, token_for(alice), first, path="agui/connect"))
    assert types(events) == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]
    assert status(first, path="agui/connect") == 409
    assert Request.objects.count() == 0  # nothing was posted by any of these

    # Resume entries refused: a stream of exactly one RUN_ERROR with the code.
    _, action = pending_delete(web, bob)

    def refused(token: str, entries: list[dict]) -> str:
        body = {
            "threadId": "triage",
            "runId": run_id(),
            "messages": [],
            "resume": entries,
        }
        events, _ = read_events(sse_run(web, token, body))
        assert types(events) == ["RUN_ERROR"], events
        return events[0]["code"]

    assert refused(token_for(bob), resume(action, approved=True)) == "not_eligible"
    assert (
        refused(token_for(alice), resume(action, approved="yes")) == "invalid_payload"
    )
    assert (
        refused(token_for(alice), resume(action, approved=True, editedArgs={"id": 5}))
        == "invalid_arguments"
    )
    unknown = [{"interruptId": str(uuid.uuid4()), "status": "resolved"}]
    assert refused(token_for(alice), unknown) == "unknown_interrupt"
    node_run(web, token_for(alice), resume=resume(action, approved=False))
    assert refused(token_for(alice), resume(action, approved=True)) == "not_pending"


def test_a_session_needs_csrf_and_bodies_must_be_json(web, room, alice) -> None:
    from tests.e2e.test_hostile_ws import log_in

    cookies = {"sessionid": log_in(web, alice)}
    body = json.dumps(
        {
            "threadId": "triage",
            "runId": run_id(),
            "messages": [],
            "forwardedProps": {"agentsite": {"request": str(uuid.uuid4())}},
        }
    )
    refused = requests.post(
        f"{web}/api/rooms/triage/agui/connect",
        data=body,
        cookies=cookies,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    form = requests.post(
        f"{web}/api/rooms/triage/agui",
        data=body,
        headers={
            "Authorization": f"Token {token_for(alice)}",
            "Content-Type": "text/plain",
        },
        timeout=10,
    )
    assert form.status_code == 415


def test_a_callers_streams_are_capped_and_a_hang_up_cancels_nothing(
    stack, room, alice, bob
) -> None:
    stack.worker()
    web = stack.web(
        "web-cap", AGUI_MAX_STREAMS_PER_USER="1", AGUI_KEEPALIVE_SECONDS="1"
    )
    _, action = pending_delete(web, bob)
    # Alice leaves the action to the room's other voters: her run stays open.
    waiting = sse_run(
        web,
        token_for(alice),
        {
            "threadId": "triage",
            "runId": run_id(),
            "messages": [],
            "resume": [{"interruptId": str(action.pk), "status": "cancelled"}],
        },
    )
    assert waiting.status_code == 200
    chunks = waiting.iter_lines()
    assert json.loads(next(chunks).removeprefix(b"data: "))["type"] == "RUN_STARTED"
    connect = {"threadId": "triage", "runId": run_id(), "messages": []}
    second = sse_run(web, token_for(alice), connect, path="agui/connect")
    assert second.status_code == 429 and second.json()["detail"]
    waiting.close()  # the client hangs up: the request goes on, the slot is freed
    wait_for(
        lambda: (
            sse_run(
                web,
                token_for(alice),
                {**connect, "runId": run_id()},
                path="agui/connect",
            ).status_code
            == 200
        ),
        what="the closed stream's slot to be free",
    )
    action.refresh_from_db()
    assert action.status == "pending"
    assert action.request.status == "awaiting_approval"


def test_the_example_script_asks_and_approves(web, room, alice, linear_standin) -> None:
    """examples/agui_approve.mjs, the one docs/agui.md shows, as a user would run it."""
    import os

    done = subprocess.run(
        ["node", str(ROOT / "examples" / "agui_approve.mjs"), "delete ENG-3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={
            **os.environ,
            "AGENTSITE_URL": web,
            "AGENTSITE_ROOM": "triage",
            "AGENTSITE_TOKEN": token_for(alice),
        },
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "outcome interrupt" in lines and lines[-1] == "outcome success", lines
    assert any(
        line.startswith("interrupt Approve delete_issue on ENG-3") for line in lines
    )
    assert len(effects(linear_standin, "issueDelete")) == 1


def _threads(pid: int) -> int:
    """Threads of a process and of its descendants (the Procfile's shell)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += len(os.listdir(f"/proc/{current}/task"))
        except OSError:
            continue
        todo += children.get(current, [])
    return total


def test_open_streams_hold_no_thread_of_the_web_process(
    stack, room, alice, bob
) -> None:
    stack.worker()
    web = stack.web("web-threads")
    proc = stack.procs[-1]
    _, action = pending_delete(web, bob)
    waiting = {
        "threadId": "triage",
        "messages": [],
        "resume": [{"interruptId": str(action.pk), "status": "cancelled"}],
    }

    def open_streams(count: int) -> list[requests.Response]:
        streams = []
        for _ in range(count):
            stream = sse_run(web, token_for(alice), {**waiting, "runId": run_id()})
            assert stream.status_code == 200
            first = next(stream.iter_lines())
            assert json.loads(first.removeprefix(b"data: "))["type"] == "RUN_STARTED"
            streams.append(stream)
        return streams

    for stream in open_streams(6):  # warm the process's pools up
        stream.close()
    time.sleep(1)
    before = _threads(proc.pid)
    streams = open_streams(8)
    time.sleep(1)
    during = _threads(proc.pid)
    for stream in streams:
        stream.close()
    assert during - before < 3, (before, during)
