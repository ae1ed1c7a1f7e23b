"""The counts behind GET /metrics, in process against the real Redis: counted where
the change happens, once it commits, and read back as Prometheus families; and the
verdicts /readyz gives on the heartbeats. The scrape of real processes is
tests/e2e/test_operations.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chat import metrics, probes, services
from chat.models import Action, Room, User
from tests.chat.test_api import pending_action

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def counts() -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.RedisCollector(metrics.RedisCollector.read()))
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(before: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return counts().get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """A block whose on-commit callbacks run when it ends, as after a commit (the
    test itself runs in a transaction that is rolled back)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_a_cancel_counts_the_request_and_its_pending_action(
    room: Room, bob: User, committed
) -> None:
    action = pending_action(room, bob)
    Action.objects.filter(pk=action.pk).update(
        created=timezone.now() - timedelta(minutes=2)
    )
    before = counts()

    with committed():
        services.request_cancel(request_id=str(action.request_id), user=bob)

    assert moved(before, "agentsite_requests_total", status="cancelled") == 1
    tool = {"tool": "delete_issue"}
    assert moved(before, "agentsite_actions_total", outcome="cancelled", **tool) == 1
    wait = "agentsite_approval_wait_seconds"
    assert moved(before, f"{wait}_count", decision="cancelled", **tool) == 1
    # Two minutes: past the 60 s bucket, within the 300 s one.
    assert moved(before, f"{wait}_bucket", le="60.0", decision="cancelled", **tool) == 0
    waited = moved(before, f"{wait}_bucket", le="300.0", decision="cancelled", **tool)
    assert waited == 1
    assert 119 < moved(before, f"{wait}_sum", decision="cancelled", **tool) < 200


def test_an_expiry_counts_as_expired(room: Room, bob: User, committed) -> None:
    action = pending_action(room, bob)
    Action.objects.filter(pk=action.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    before = counts()

    with committed():
        assert services.action_expire_overdue() == 1

    tool = {"tool": "delete_issue"}
    assert moved(before, "agentsite_actions_total", outcome="expired", **tool) == 1
    wait = "agentsite_approval_wait_seconds_count"
    assert moved(before, wait, decision="expired", **tool) == 1


def test_an_approval_counts_its_wait_but_no_end(
    room: Room, alice: User, bob: User, committed
) -> None:
    action = pending_action(room, bob)
    before = counts()

    with committed():
        services.action_decide(action_id=str(action.pk), user=alice, decision="approve")

    tool = {"tool": "delete_issue"}
    wait = "agentsite_approval_wait_seconds_count"
    assert moved(before, wait, decision="approved", **tool) == 1
    for outcome in ("succeeded", "failed", "denied"):
        assert moved(before, "agentsite_actions_total", outcome=outcome, **tool) == 0


def test_nothing_is_counted_for_a_change_rolled_back(
    room: Room, bob: User, committed
) -> None:
    action = pending_action(room, bob)
    before = counts()

    with committed(), pytest.raises(RuntimeError), transaction.atomic():
        services.request_cancel(request_id=str(action.request_id), user=bob)
        raise RuntimeError("rolled back")

    assert moved(before, "agentsite_requests_total", status="cancelled") == 0


def test_every_known_series_is_shown_before_its_first_count() -> None:
    seen = counts()
    for status in ("completed", "failed", "cancelled"):
        assert ("agentsite_requests_total", frozenset({("status", status)})) in seen
    for kind in ("email", "webhook", "slack"):
        labels = frozenset({("kind", kind), ("outcome", "gave_up")})
        assert ("agentsite_deliveries_total", labels) in seen


def test_readyz_verdicts_name_the_age_of_the_last_heartbeat(settings) -> None:
    settings.READYZ_MAX_AGE = 30
    assert probes.heartbeat_verdict(probes.WORKER, 12.0) == "ok"
    assert probes.heartbeat_verdict(probes.WORKER, 41.7) == "no heartbeat for 41 s"
    assert probes.heartbeat_verdict(probes.WORKER, None) == "no heartbeat"
    assert probes.heartbeat_verdict(probes.BEAT, 31.0) == "no tick for 31 s"


def test_readyz_is_503_without_workers_and_200_with_their_heartbeats(
    db, settings
) -> None:
    settings.READYZ_MAX_AGE = 30
    from chat.redis_client import redis_client, redis_key

    redis_client().delete(redis_key("readyz", "worker"), redis_key("readyz", "beat"))
    answer = Client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "database": "ok",
        "redis": "ok",
        "worker": "no heartbeat",
        "beat": "no tick",
    }

    probes.heartbeat_write(probes.WORKER)
    probes.heartbeat_write(probes.BEAT)
    answer = Client().get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["worker"] == "ok"
