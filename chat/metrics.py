"""Prometheus counters and histograms shared by every process of a deployment
(contract: "Operating it", "Metrics").

Each web and worker process adds what it counted to Redis hashes, one per metric
(a field per label set, and per bucket for a histogram), in one pipelined round
trip; a scrape of any web process reads them all back (`RedisCollector`). So the
numbers cover every process on every host, survive a process's restart, and need no
multiprocess directory. What happens inside a transaction is counted once it
commits: a rolled-back change was never made.

Labels never hold room, user, request or action ids: only statuses, outcomes, model
and tool names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .redis_client import redis_client, redis_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spec:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # a histogram when not empty
    # Every label's values, when all are known: their series are shown at 0 before
    # the first count, so that `rate()` and `increase()` see the first one.
    known: tuple[tuple[str, ...], ...] = ()


REQUESTS = Spec(
    "agentsite_requests_total",
    "Requests that ended, by status.",
    ("status",),
    known=(("completed",), ("failed",), ("cancelled",)),
)
MODEL_CALLS = Spec(
    "agentsite_model_calls_total",
    "HTTP calls to the model service (each retry counts).",
    ("model", "outcome"),
)
MODEL_DURATION = Spec(
    "agentsite_model_call_duration_seconds",
    "From sending a model call to its last chunk or its error.",
    ("model", "outcome"),
    (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
FIRST_TOKEN = Spec(
    "agentsite_model_time_to_first_token_seconds",
    "From sending a model call to the first chunk of its stream.",
    ("model",),
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOKENS = Spec(
    "agentsite_model_tokens_total",
    "Tokens as the model service's usage reported them.",
    ("model", "type"),
)
ACTIONS = Spec(
    "agentsite_actions_total",
    "Actions that ended, by tool and outcome.",
    ("tool", "outcome"),
)
APPROVAL_WAIT = Spec(
    "agentsite_approval_wait_seconds",
    "From an action becoming pending to its decision.",
    ("tool", "decision"),
    (1, 10, 60, 300, 1800, 3600, 14400, 86400, 259200, 604800),
)
TOOL_DURATION = Spec(
    "agentsite_tool_call_duration_seconds",
    "One tool execution.",
    ("tool", "outcome"),
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DELIVERIES = Spec(
    "agentsite_deliveries_total",
    "Delivery attempts: retry failed with another attempt due, gave_up failed the "
    "last one.",
    ("kind", "outcome"),
    known=tuple(
        (kind, outcome)
        for kind in ("email", "webhook", "slack")
        for outcome in ("ok", "retry", "gave_up")
    ),
)
SPECS = (
    REQUESTS,
    MODEL_CALLS,
    MODEL_DURATION,
    FIRST_TOKEN,
    TOKENS,
    ACTIONS,
    APPROVAL_WAIT,
    TOOL_DURATION,
    DELIVERIES,
)

# Separators that no label value holds (model and tool names are printable).
_LABELS = "\x1f"
_PART = "\x1e"


def _key(spec: Spec) -> str:
    return redis_key("metrics", spec.name)


def _field(spec: Spec, labels: dict[str, str]) -> str:
    return _LABELS.join(str(labels[name]) for name in spec.labels)


# Counting --------------------------------------------------------------------------


class Batch:
    """Counts to send in one round trip: `add` and `observe`, then `send`."""

    def __init__(self) -> None:
        self._ops: list[tuple[str, str, float]] = []

    def add(self, spec: Spec, amount: float = 1, **labels: str) -> Batch:
        assert not spec.buckets, spec.name
        if amount:
            self._ops.append((_key(spec), _field(spec, labels), amount))
        return self

    def observe(self, spec: Spec, value: float, **labels: str) -> Batch:
        assert spec.buckets, spec.name
        key, series = _key(spec), _field(spec, labels)
        value = max(0.0, float(value))
        for bound in spec.buckets:
            if value <= bound:
                self._ops.append((key, f"{series}{_PART}{_bound(bound)}", 1))
        self._ops.append((key, f"{series}{_PART}count", 1))
        self._ops.append((key, f"{series}{_PART}sum", value))
        return self

    def send(self) -> None:
        """Add the counts to Redis. A metric is never worth failing the work it
        counts for: an unreachable Redis loses these counts and logs a warning."""
        if not self._ops:
            return
        try:
            with redis_client().pipeline(transaction=False) as pipe:
                for key, field, amount in self._ops:
                    if isinstance(amount, int):
                        pipe.hincrby(key, field, amount)
                    else:
                        pipe.hincrbyfloat(key, field, amount)
                pipe.execute()
        except Exception:
            logger.warning("metrics: could not count in Redis", exc_info=True)
        self._ops = []

    def send_on_commit(self) -> None:
        """Send once the current transaction commits (at once outside one)."""
        transaction.on_commit(self.send)


def _bound(bound: float) -> str:
    return repr(float(bound))


def request_ended(status: str) -> None:
    """A request ended (completed, failed, cancelled): counted on commit."""
    Batch().add(REQUESTS, status=status).send_on_commit()


def action_ended(
    *, tool: str, outcome: str, pending_since: datetime | None = None
) -> None:
    """An action ended with `outcome` (counted on commit); with `pending_since`,
    it ended a wait for approval too (denied, expired, cancelled)."""
    batch = Batch().add(ACTIONS, tool=tool, outcome=outcome)
    if pending_since is not None:
        batch.observe(APPROVAL_WAIT, _since(pending_since), tool=tool, decision=outcome)
    batch.send_on_commit()


def approval_decided(*, tool: str, decision: str, pending_since: datetime) -> None:
    """An approval wait ended (`approved`, `denied`, `expired`, `cancelled`)."""
    Batch().observe(
        APPROVAL_WAIT, _since(pending_since), tool=tool, decision=decision
    ).send_on_commit()


def _since(moment: datetime) -> float:
    return (timezone.now() - moment).total_seconds()


def model_call(
    *,
    model: str,
    outcome: str,
    duration: float,
    first_token: float | None,
    usage: dict[str, Any],
) -> None:
    """One HTTP call to the model service, as it ended."""
    batch = Batch().add(MODEL_CALLS, model=model, outcome=outcome)
    batch.observe(MODEL_DURATION, duration, model=model, outcome=outcome)
    if first_token is not None:
        batch.observe(FIRST_TOKEN, first_token, model=model)
    for kind, name in (("input", "prompt_tokens"), ("output", "completion_tokens")):
        if isinstance(count := usage.get(name), int) and count > 0:
            batch.add(TOKENS, count, model=model, type=kind)
    batch.send()


def tool_executed(*, tool: str, outcome: str, duration: float) -> None:
    """One execution of a tool (`succeeded` or `failed`)."""
    Batch().observe(TOOL_DURATION, duration, tool=tool, outcome=outcome).send()


def delivery_attempted(*, kind: str, outcome: str) -> None:
    """One delivery attempt: `ok`, `retry` or `gave_up`."""
    Batch().add(DELIVERIES, kind=kind, outcome=outcome).send()


# Reading back ----------------------------------------------------------------------


class RedisCollector(Collector):
    """Every process's counts, as stored in Redis, for one scrape."""

    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self._hashes = hashes

    @staticmethod
    def read() -> dict[str, dict[str, str]]:
        """The metrics' hashes, in one round trip (raises when Redis is away)."""
        with redis_client().pipeline(transaction=False) as pipe:
            for spec in SPECS:
                pipe.hgetall(_key(spec))
            values = pipe.execute()
        return {spec.name: value for spec, value in zip(SPECS, values, strict=True)}

    def collect(self) -> Iterator[Metric]:
        for spec in SPECS:
            stored = self._hashes.get(spec.name, {})
            if spec.buckets:
                yield _histogram(spec, stored)
            else:
                yield _counter(spec, stored)


def _labels(series: str) -> list[str]:
    return series.split(_LABELS)


def _counter(spec: Spec, stored: dict[str, str]) -> Metric:
    family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    series = {_LABELS.join(values): 0.0 for values in spec.known}
    series.update({field: float(value) for field, value in stored.items()})
    for field in sorted(series):
        family.add_metric(_labels(field), series[field])
    return family


def _histogram(spec: Spec, stored: dict[str, str]) -> Metric:
    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    by_series: dict[str, dict[str, float]] = {}
    for field, value in stored.items():
        series, _, part = field.rpartition(_PART)
        by_series.setdefault(series, {})[part] = float(value)
    for series in sorted(by_series):
        parts = by_series[series]
        count = parts.get("count", 0.0)
        buckets: list[Sequence[Any]] = [
            [_bucket_name(b), parts.get(_bound(b), 0.0)] for b in spec.buckets
        ]
        buckets.append(["+Inf", count])
        family.add_metric(
            _labels(series),
            buckets,  # type: ignore[arg-type]
            parts.get("sum", 0.0),
        )
    return family


def _bucket_name(bound: float) -> str:
    # As prometheus_client names its own buckets ("0.5", "1.0", "+Inf").
    return repr(float(bound)) if math.isfinite(bound) else "+Inf"
