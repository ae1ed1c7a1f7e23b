"""Traces and JSON logs from the real processes (contract, "Operating it"): the web
process and a worker export to a real OTLP/HTTP receiver, and their output is read
line by line."""

import json
import re
import secrets
from collections.abc import Iterator

import pytest
import requests as http
from websockets.sync import client as ws_sync

from chat.models import Action, Request
from tests.otlp import Collector, Span
from tests.plugins.people import token_for
from tests.plugins.stack import reached, wait_for

pytestmark = pytest.mark.e2e

S = Request.Status
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector().start()
    yield collector
    collector.stop()


def _post(web: str, token: str, path: str, body: dict, **headers: str) -> dict:
    response = http.post(
        f"{web}{path}",
        json=body,
        timeout=10,
        headers={"Authorization": f"Token {token}", **headers},
    )
    assert response.status_code < 300, response.text
    return response.json()


def _one(spans: list[Span], name: str, **where: object) -> Span:
    found = [
        s
        for s in spans
        if s.name == name and all(getattr(s, k) == v for k, v in where.items())
    ]
    assert len(found) == 1, (name, where, [(s.name, s.parent_id) for s in spans])
    return found[0]


def _turn(collector: Collector, trace_id: str, *names: str) -> list[Span]:
    """The trace's spans once every span named is there (the processes export in
    the background, every 100 ms here)."""

    def complete() -> list[Span] | None:
        spans = collector.trace(trace_id)
        have = {s.name for s in spans}
        return spans if all(n in have for n in names) else None

    try:
        return wait_for(complete, timeout=20, what=f"spans {names}")  # type: ignore[return-value]
    except AssertionError:
        got = [(s.name, s.trace_id[:6], s.parent_id) for s in collector.spans]
        raise AssertionError(f"spans {names} not in {trace_id}: {got}") from None


def test_a_turn_is_one_trace_through_an_approval_decided_over_rest(
    stack, room, alice, bob, collector, linear_standin
):
    api_key = "sk-e2e-" + secrets.token_hex(16)
    env = collector.env()
    stack.worker(OPENAI_API_KEY=api_key, **env)
    web = stack.web(**env)
    bob_token, alice_token = token_for(bob), token_for(alice)

    body = _post(
        web,
        bob_token,
        "/api/rooms/triage/requests",
        {"text": "Please delete ENG-3"},
        traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
    )
    request = Request.objects.get(pk=body["id"])
    reached(request, S.AWAITING_APPROVAL)
    action = Action.objects.get(request=request)
    _post(web, alice_token, f"/api/actions/{action.pk}/approve", {})
    reached(request, S.COMPLETED)

    spans = _turn(
        collector,
        CALLER_TRACE,
        "approval delete_issue",
        "execute_tool delete_issue",
        "run/agent.tool_call",
    )

    # Two model steps: the one that proposed the call, the one that answered after.
    # A step's CONSUMER span ends after its model call's, and may come in a later
    # export: wait for both.
    def both_steps() -> bool:
        names = [s.name for s in collector.trace(CALLER_TRACE)]
        calls = [n for n in names if n.startswith("chat ")]
        return len(calls) == 2 and names.count("run/agent.model_step") >= 2

    wait_for(both_steps, what="both model calls and the runs of their steps")
    spans = collector.trace(CALLER_TRACE)
    by_id = {s.span_id: s for s in spans}
    ids = {"agentsite.request.id": str(request.pk), "agentsite.room": "triage"}

    # The POST: a SERVER span named by its route, child of the caller's span.
    post = _one(spans, "POST /api/rooms/{slug}/requests")
    assert (post.kind, post.parent_id) == ("SERVER", CALLER_SPAN)
    assert post.attributes["http.request.method"] == "POST"
    assert post.attributes["http.route"] == "/api/rooms/{slug}/requests"
    assert post.attributes["url.path"] == "/api/rooms/triage/requests"
    assert post.attributes["http.response.status_code"] == 202
    assert post.attributes["agentsite.request.id"] == str(request.pk)
    assert post.resource["service.name"] == "agentsite-e2e"

    # Every model step: sent under the POST, run under its sending.
    sends = [s for s in spans if s.name == "apply_async/agent.model_step"]
    runs = [s for s in spans if s.name == "run/agent.model_step"]
    assert len(sends) >= 2 and len(runs) >= 2
    assert all(s.parent_id == post.span_id and s.kind == "PRODUCER" for s in sends)
    assert all(by_id[r.parent_id] in sends and r.kind == "CONSUMER" for r in runs)
    for run in runs:
        assert {k: run.attributes.get(k) for k in ids} == ids

    # The model calls: CLIENT spans under the step's run, with the GenAI attributes.
    calls = [s for s in spans if s.name.startswith("chat ")]
    assert len(calls) == 2
    model = calls[0].attributes["gen_ai.request.model"]
    for call in calls:
        assert call.name == f"chat {model}" and call.kind == "CLIENT"
        assert call.parent_id in {r.span_id for r in runs}
        a = call.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.stream"] is True
        assert a["gen_ai.response.id"].startswith("chatcmpl-")
        assert a["gen_ai.response.model"]
        assert a["gen_ai.usage.input_tokens"] > 0
        assert a["gen_ai.usage.output_tokens"] > 0
        assert a["gen_ai.response.time_to_first_chunk"] > 0
        assert a["server.address"] == "127.0.0.1" and a["server.port"] > 0
        assert {k: a.get(k) for k in ids} == ids
        assert "gen_ai.input.messages" not in a  # content capture is off
    reasons = sorted(c.attributes["gen_ai.response.finish_reasons"][0] for c in calls)
    assert reasons == ["stop", "tool_calls"]

    # The approval: from pending to the decision, under the proposing step, linked
    # to the approving POST (a trace of its own).
    approval = _one(spans, "approval delete_issue")
    proposing = by_id[approval.parent_id]
    assert proposing.name == "run/agent.model_step"
    assert approval.kind == "INTERNAL"
    assert approval.attributes == {
        **ids,
        "agentsite.action.id": str(action.pk),
        "gen_ai.tool.name": "delete_issue",
        "gen_ai.tool.call.id": action.tool_call_id,
        "agentsite.approval.decision": "approved",
        "agentsite.approval.decided_via": "api",
    }
    approve = _one(collector.spans, "POST /api/actions/{action_id}/approve")
    assert approval.links == [(approve.trace_id, approve.span_id)]
    assert approve.trace_id != CALLER_TRACE
    assert approval.start <= approve.start < approve.end

    # The tool call it released: sent under it, executed under its run.
    send = _one(spans, "apply_async/agent.tool_call")
    run = _one(spans, "run/agent.tool_call")
    tool = _one(spans, "execute_tool delete_issue")
    assert send.parent_id == approval.span_id
    assert run.parent_id == send.span_id
    assert tool.parent_id == run.span_id
    assert tool.attributes == {
        **ids,
        "agentsite.action.id": str(action.pk),
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "delete_issue",
        "gen_ai.tool.call.id": action.tool_call_id,
    }

    # One trace for the turn: every parent it names was exported (the caller's
    # span aside), and nothing of the turn went to another trace.
    assert {s.parent_id for s in spans} - set(by_id) == {CALLER_SPAN}
    elsewhere = [
        s
        for s in collector.spans
        if s.attributes.get("agentsite.request.id") == str(request.pk)
        and s.trace_id != CALLER_TRACE
    ]
    assert elsewhere == []

    # No secret anywhere: not the API key, not the users' tokens, not the text.
    everything = json.dumps(
        [[s.name, s.attributes, s.resource, s.texts] for s in collector.spans],
        default=str,
    )
    for secret in (api_key, bob_token, alice_token, "test-github-token"):
        assert secret not in everything
    assert "Please delete ENG-3" not in everything
    assert not re.search(r"(?i)authorization|cookie", everything)


def test_a_request_from_a_websocket_chat_frame_is_rooted_in_ws_chat(
    stack, room, bob, collector
):
    env = collector.env()
    stack.worker(**env)
    web = stack.web(**env)
    url = web.replace("http://", "ws://") + "/ws/rooms/triage/"
    headers = {"Authorization": f"Token {token_for(bob)}"}
    with ws_sync.connect(url, additional_headers=headers) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        ws.send(json.dumps({"type": "chat", "text": "Hello, what can you do?"}))
        request = wait_for(
            lambda: Request.objects.filter(room=room).first(), what="the request"
        )
    reached(request, S.COMPLETED)

    root = wait_for(
        lambda: [
            s
            for s in collector.named("ws chat")
            if s.attributes.get("agentsite.request.id") == str(request.pk)
        ],
        what="the ws chat span",
    )[0]
    assert (root.kind, root.parent_id) == ("SERVER", "")
    spans = _turn(collector, root.trace_id, "run/agent.model_step", "chat gpt-4o-mini")
    by_id = {s.span_id: s for s in spans}
    send = _one(spans, "apply_async/agent.model_step")
    assert send.parent_id == root.span_id
    run = _one(spans, "run/agent.model_step")
    assert run.parent_id == send.span_id
    call = next(s for s in spans if s.name.startswith("chat "))
    assert by_id[call.parent_id] is run


def test_json_logs_parse_line_by_line_with_the_failed_request_at_error(
    stack, room, bob, collector, openai_standin
):
    api_key = "sk-e2e-" + secrets.token_hex(16)
    env = collector.env(LOG_FORMAT="json")
    worker = stack.worker(OPENAI_API_KEY=api_key, **env)
    web = stack.web(**env)
    stack.env.update(env)
    beat = stack.beat()
    # A refusal the model service will not change its mind about: the turn fails.
    # (It names the key it was sent, as OpenAI does: no line may repeat it.)
    openai_standin.control("faults", {"faults": [{"status": 401, "count": 1}]})
    body = _post(web, token_for(bob), "/api/rooms/triage/requests", {"text": "Hello"})
    request = Request.objects.get(pk=body["id"])
    reached(request, S.FAILED)

    def lines(proc) -> list[dict]:
        text = proc.output()
        assert text.strip(), "no output"
        parsed = []
        for line in text.splitlines():
            record = json.loads(line)  # every line is one JSON object
            assert isinstance(record, dict), line
            assert {"timestamp", "level", "logger", "message"} <= set(record), line
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"]
            )
            assert record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
            parsed.append(record)
        return parsed

    failed = wait_for(
        lambda: [
            r
            for r in lines(worker)
            if r["level"] == "ERROR" and r.get("request_id") == str(request.pk)
        ],
        what="the ERROR line of the failed request",
    )
    assert len(failed) == 1
    line = failed[0]
    assert line["room"] == "triage"
    assert "refused the request (401)" in line["message"]
    # In the turn's trace, whose root is the POST.
    post = wait_for(
        lambda: [
            s
            for s in collector.named("POST /api/rooms/{slug}/requests")
            if s.attributes.get("agentsite.request.id") == str(request.pk)
        ],
        what="the POST's span",
    )[0]
    assert line["trace_id"] == post.trace_id
    assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
    # The worker's own lines (Celery's ready line) and the web's, its access log.
    assert any(r["logger"].startswith("celery") for r in lines(worker))
    web_proc = next(p for p in stack.procs if p.name == "web")
    access = [r for r in lines(web_proc) if r["logger"] == "uvicorn.access"]
    assert any("/api/rooms/triage/requests" in r["message"] for r in access)
    # Beat, without its banner; the sweeps it sent ran in the worker.
    wait_for(lambda: "Sending due task" in beat.output(), what="beat to send a sweep")
    assert any(r["logger"].startswith("celery.beat") for r in lines(beat))
    for proc in (worker, web_proc, beat):
        assert api_key not in proc.output()
