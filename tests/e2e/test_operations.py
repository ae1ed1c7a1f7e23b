"""Metrics and readiness with real processes (contract: "Operating it"): a web
process scraped by Prometheus' own parser after real turns run by two workers, one
consuming the model queue and one the tools queue, so that the counts of both
processes must reach the scrape; and /readyz following the workers and beat."""

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync import client as ws_sync

from chat import services
from chat.models import Action, Delivery, Request
from tests.e2e.test_agent import pending
from tests.peers import Receiver
from tests.plugins.people import token_for
from tests.plugins.stack import reached, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fresh_stack]

TOKEN = "scrape-token-" + "s" * 24
MODEL = "gpt-4o-mini"


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one scrape, by name and labels, parsed by prometheus_client."""
    answer = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def hook(room, alice, settings) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    server = Receiver().start()
    services.webhook_create(
        room_slug=room.slug, user=alice, url=server.url, events=["request.ended"]
    )
    yield server
    server.stop()


def test_counters_move_by_what_two_workers_did(stack, room, alice, bob, hook):
    base = stack.web(METRICS_TOKEN=TOKEN)
    env = {"WEBHOOK_ALLOW_PRIVATE": "1"}
    stack.worker("model-worker", WORKER_QUEUES="model", **env)
    stack.worker("tools-worker", WORKER_QUEUES="tools,default", **env)
    before = scrape(base)

    questions = [
        services.request_start(room=room, user=bob, text=f"Hello {n}, what now?")
        for n in range(3)
    ]
    deleting = services.request_start(room=room, user=bob, text="Please delete ENG-3")
    denied = services.request_start(room=room, user=bob, text="Please delete ENG-4")
    for request in questions:
        reached(request, Request.Status.COMPLETED)
    [approve] = pending(deleting)
    [deny] = pending(denied)
    services.action_decide(action_id=str(approve.pk), user=alice, decision="approve")
    services.action_decide(action_id=str(deny.pk), user=alice, decision="deny")
    for request in (deleting, denied):
        reached(request, Request.Status.COMPLETED)
    wait_for(
        lambda: Delivery.objects.filter(status="sent").count() == 5,
        timeout=30,
        what="the five request.ended webhooks",
    )
    after = scrape(base)

    turns = Request.objects.filter(room=room)
    # One model call per answer: three questions, and two calls each for the
    # delete (the proposal, then the answer after the tool's result).
    calls = 3 + 2 + 2
    assert moved(before, after, "agentsite_requests_total", status="completed") == 5
    assert moved(before, after, "agentsite_requests_total", status="failed") == 0
    ok = {"model": MODEL, "outcome": "ok"}
    assert moved(before, after, "agentsite_model_calls_total", **ok) == calls
    assert moved(before, after, "agentsite_model_calls_total", **ok) == calls
    duration = "agentsite_model_call_duration_seconds"
    assert moved(before, after, f"{duration}_count", **ok) == calls
    assert moved(before, after, f"{duration}_bucket", le="+Inf", **ok) == calls
    ttft = "agentsite_model_time_to_first_token_seconds"
    assert moved(before, after, f"{ttft}_count", model=MODEL) == calls
    assert moved(before, after, f"{ttft}_sum", model=MODEL) > 0
    for kind, field in (("input", "prompt_tokens"), ("output", "completion_tokens")):
        spent = sum(turn.usage[field] for turn in turns)
        assert spent > 0
        tokens = moved(
            before, after, "agentsite_model_tokens_total", model=MODEL, type=kind
        )
        assert tokens == spent
    actions = "agentsite_actions_total"
    tool = {"tool": "delete_issue"}
    assert moved(before, after, actions, outcome="succeeded", **tool) == 1
    assert moved(before, after, actions, outcome="denied", **tool) == 1
    assert moved(before, after, actions, outcome="failed", **tool) == 0
    wait = "agentsite_approval_wait_seconds"
    for decision in ("approved", "denied"):
        assert moved(before, after, f"{wait}_count", decision=decision, **tool) == 1
        assert (
            moved(
                before,
                after,
                f"{wait}_bucket",
                le="604800.0",
                decision=decision,
                **tool,
            )
            == 1
        )
    run = "agentsite_tool_call_duration_seconds"
    assert moved(before, after, f"{run}_count", outcome="succeeded", **tool) == 1
    deliveries = "agentsite_deliveries_total"
    assert moved(before, after, deliveries, kind="webhook", outcome="ok") == 5
    assert moved(before, after, deliveries, kind="webhook", outcome="gave_up") == 0
    # The gauges, read at the scrape: nothing open or pending any more.
    for status in ("queued", "running", "awaiting_approval"):
        assert after[("agentsite_requests_open", frozenset({("status", status)}))] == 0
    assert after[("agentsite_actions_pending", frozenset())] == 0
    assert (
        after[("agentsite_deliveries_pending", frozenset({("kind", "webhook")}))] == 0
    )
    assert Action.objects.filter(status="pending").count() == 0
    # No label names a room, a user, a request or an action.
    identifiers = {room.slug, alice.username, bob.username} | {
        str(turn.pk) for turn in turns
    }
    labels = {value for _, pairs in after for _, value in pairs}
    assert not labels & identifiers


def test_gauges_show_what_waits(stack, room, bob):
    base = stack.web(METRICS_TOKEN=TOKEN)
    stack.worker("model-worker", WORKER_QUEUES="model")
    request = services.request_start(room=room, user=bob, text="Please delete ENG-3")
    pending(request)
    # No worker consumes the tools queue: a question's model step is answered, but
    # nothing takes the tool calls; and one more request waits for a model worker.
    stack.procs[-1].stop()
    waiting = services.request_start(room=room, user=bob, text="Hello there")
    answer = scrape(base)

    assert answer[("agentsite_actions_pending", frozenset())] == 1
    open_ = "agentsite_requests_open"
    assert answer[(open_, frozenset({("status", "awaiting_approval")}))] == 1
    assert answer[(open_, frozenset({("status", "queued")}))] == 1
    from django.conf import settings

    queue = (
        "agentsite_queue_depth",
        frozenset({("queue", settings.CELERY_MODEL_QUEUE)}),
    )
    assert answer[queue] == 1
    services.request_cancel(request_id=str(waiting.pk), user=bob)


def test_metrics_needs_the_bearer_token(stack):
    base = stack.web(METRICS_TOKEN=TOKEN)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        answer = requests.get(f"{base}/metrics", headers=headers, timeout=10)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "agentsite_" not in answer.text

    openmetrics = requests.get(
        f"{base}/metrics",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/openmetrics-text; version=1.0.0",
        },
        timeout=10,
    )
    assert openmetrics.status_code == 200
    assert openmetrics.headers["Content-Type"].startswith(
        "application/openmetrics-text"
    )
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_metrics_is_404_without_a_token_configured(stack):
    base = stack.web()
    answer = requests.get(
        f"{base}/metrics", headers={"Authorization": "Bearer "}, timeout=10
    )
    assert answer.status_code == 404


def readyz(base: str) -> tuple[int, dict]:
    answer = requests.get(f"{base}/readyz", timeout=5)
    return answer.status_code, answer.json()


def test_readyz_follows_the_workers_and_beat(stack):
    age = "6"
    base = stack.web(READYZ_MAX_AGE=age)
    first = stack.worker("worker-1", READYZ_MAX_AGE=age)
    second = stack.worker("worker-2", READYZ_MAX_AGE=age)
    stack.beat()
    wait_for(lambda: readyz(base)[0] == 200, timeout=20, what="ready")
    assert readyz(base) == (
        200,
        {"status": "ok", "database": "ok", "redis": "ok", "worker": "ok", "beat": "ok"},
    )

    first.stop()
    assert readyz(base)[0] == 200  # one worker is enough
    second.stop()
    wait_for(lambda: readyz(base)[0] == 503, timeout=20, what="not ready")
    status, body = readyz(base)
    assert body["status"] == "unavailable"
    assert body["worker"].startswith("no heartbeat for ")
    assert body["worker"].endswith(" s")
    # Beat still sends the sweep, though no worker runs it.
    assert body["beat"] == "ok"
    assert body["database"] == body["redis"] == "ok"

    stack.worker("worker-3", READYZ_MAX_AGE=age)
    wait_for(lambda: readyz(base)[0] == 200, timeout=20, what="ready again")


def test_readyz_names_beat_when_it_stops(stack):
    base = stack.web(READYZ_MAX_AGE="6")
    stack.worker()
    beat = stack.beat()
    wait_for(lambda: readyz(base)[0] == 200, timeout=20, what="ready")
    beat.stop()
    wait_for(lambda: readyz(base)[0] == 503, timeout=20, what="beat missed")
    status, body = readyz(base)
    assert body["beat"].startswith("no tick for ")
    assert body["worker"] == "ok"


def test_readyz_and_metrics_answer_plain_http_under_https_redirects(stack):
    base = stack.web(SECURE_SSL_REDIRECT="1", METRICS_TOKEN=TOKEN)
    status, _ = readyz(base)
    assert status in (200, 503)
    answer = requests.get(
        f"{base}/metrics",
        headers={"Authorization": f"Bearer {TOKEN}"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 200
    login = requests.get(f"{base}/accounts/login/", allow_redirects=False, timeout=10)
    assert login.status_code == 301


def test_websocket_gauge_counts_the_sockets_of_every_web_process(stack, room, bob):
    first = stack.web(METRICS_TOKEN=TOKEN)
    second = stack.web("web-2", METRICS_TOKEN=TOKEN)
    headers = {"Authorization": f"Token {token_for(bob)}"}
    gauge = ("agentsite_websocket_connections", frozenset())

    def open_socket(sockets: ExitStack, base: str) -> None:
        url = base.replace("http://", "ws://") + f"/ws/rooms/{room.slug}/"
        connection = sockets.enter_context(
            ws_sync.connect(url, additional_headers=headers)
        )
        assert json.loads(connection.recv(timeout=10))["type"] == "snapshot"

    before = scrape(first)[gauge]
    with ExitStack() as sockets:
        for base in (first, second, second):
            open_socket(sockets, base)
        assert scrape(first)[gauge] - before == 3
        assert scrape(second)[gauge] - before == 3
    wait_for(lambda: scrape(second)[gauge] == before, timeout=10, what="sockets closed")
