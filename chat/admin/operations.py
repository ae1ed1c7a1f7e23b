"""The admin's Operations page: how the agent has been doing over the last day or
week, read from the database (no Prometheus needed), drawn by uPlot in the browser.

Turns by outcome, time to first token (p50/p95), tokens by model, actions pending,
approval wait by tool, deliveries that gave up. Staff only (`admin_view`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from chat.models import Action, Delivery, Request

from .. import probes

# A window and the width of its bars: 24 hours of an hour each, 7 days of 6 hours.
WINDOWS = {
    "day": (timedelta(days=1), timedelta(hours=1)),
    "week": (timedelta(days=7), timedelta(hours=6)),
}
OUTCOMES = (Request.Status.COMPLETED, Request.Status.FAILED, Request.Status.CANCELLED)


def operations_view(request: HttpRequest) -> HttpResponse:
    window = request.GET.get("window", "day")
    if window not in WINDOWS:
        window = "day"
    data = operations_data(window=window, now=timezone.now())
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "window": window,
        "windows": list(WINDOWS),
        "data": data,
    }
    return render(request, "admin/operations.html", context)


class _Buckets:
    """Bar starts over a window that ends at the current bar's end."""

    def __init__(self, window: str, now: datetime) -> None:
        span, self.step = WINDOWS[window]
        step = self.step.total_seconds()
        self.end = datetime.fromtimestamp(
            math.ceil(now.timestamp() / step) * step, tz=now.tzinfo
        )
        self.start = self.end - span
        self.count = int(span / self.step)

    def starts(self) -> list[int]:
        first = self.start.timestamp()
        step = self.step.total_seconds()
        return [int(first + step * i) for i in range(self.count)]

    def index(self, moment: datetime) -> int | None:
        i = int((moment - self.start) / self.step)
        return i if 0 <= i < self.count else None

    def zeros(self) -> list[float]:
        return [0] * self.count


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` of 1), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def operations_data(*, window: str, now: datetime) -> dict[str, Any]:
    """Everything the page draws, as JSON-ready lists over the window's bars."""
    bars = _Buckets(window, now)
    ended = Request.objects.filter(
        status__in=OUTCOMES, updated__gte=bars.start, updated__lt=bars.end
    )
    turns = {str(status): bars.zeros() for status in OUTCOMES}
    waits: list[list[float]] = [[] for _ in range(bars.count)]
    tokens: dict[str, list[float]] = defaultdict(bars.zeros)
    rows = ended.values_list(
        "status", "updated", "first_token_seconds", "model", "usage"
    )
    for status, updated, first_token, model, usage in rows.iterator():
        i = bars.index(updated)
        if i is None:
            continue
        turns[status][i] += 1
        if first_token is not None:
            waits[i].append(first_token)
        spent = _tokens(usage)
        if spent:
            tokens[model or "unknown"][i] += spent
    everything = [w for bar in waits for w in bar]
    return {
        "window": window,
        "starts": bars.starts(),
        "turns": turns,
        "first_token": {
            "p50": [percentile(bar, 0.5) for bar in waits],
            "p95": [percentile(bar, 0.95) for bar in waits],
        },
        "tokens": dict(sorted(tokens.items())),
        "pending": _pending(bars),
        "approval_wait": _approval_wait(bars),
        "deliveries_failed": _deliveries_failed(bars),
        "totals": {
            "turns": {status: int(sum(counts)) for status, counts in turns.items()},
            "first_token_p50": percentile(everything, 0.5),
            "first_token_p95": percentile(everything, 0.95),
            "tokens": {model: int(sum(n)) for model, n in sorted(tokens.items())},
            "pending_now": Action.objects.filter(status=Action.Status.PENDING).count(),
        },
    }


def _tokens(usage: object) -> int:
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    return sum(
        value
        for name in ("prompt_tokens", "completion_tokens")
        if isinstance(value := usage.get(name), int)
    )


def _pending(bars: _Buckets) -> list[int]:
    """Actions pending at the end of each bar (now, for the last one)."""
    asked = Action.objects.filter(requires_approval=True)
    ends = [bars.start + bars.step * (i + 1) for i in range(bars.count)]
    ends[-1] = min(ends[-1], timezone.now())
    counts = []
    for moment in ends:
        # Pending then: created by then and still pending, or left pending later
        # (`decided_at`; a cancel leaves none, so its last change, `updated`).
        left_later = Q(decided_at__gt=moment) | Q(
            decided_at__isnull=True, updated__gt=moment
        )
        counts.append(
            asked.filter(created__lte=moment)
            .filter(Q(status=Action.Status.PENDING) | left_later)
            .count()
        )
    return counts


def _approval_wait(bars: _Buckets) -> dict[str, list[Any]]:
    """Per tool, the wait from pending to a person's (or the timeout's) decision."""
    decided = Action.objects.filter(
        requires_approval=True,
        decided_at__gte=bars.start,
        decided_at__lt=bars.end,
    ).exclude(decided_via=Action.Via.POLICY)
    by_tool: dict[str, list[float]] = defaultdict(list)
    for tool, created, decided_at in decided.values_list(
        "tool", "created", "decided_at"
    ).iterator():
        if decided_at is not None:  # (filtered on it above)
            waited = (decided_at - created).total_seconds()
            by_tool[tool].append(max(0.0, waited))
    tools = sorted(by_tool)
    return {
        "tools": tools,
        "count": [len(by_tool[t]) for t in tools],
        "p50": [percentile(by_tool[t], 0.5) for t in tools],
        "p95": [percentile(by_tool[t], 0.95) for t in tools],
    }


def _deliveries_failed(bars: _Buckets) -> dict[str, list[float]]:
    """Deliveries that gave up, by kind, in the bar of their last attempt."""
    failed = {kind: bars.zeros() for kind in probes.DELIVERY_KINDS}
    rows: Iterable[tuple[str, str | None, datetime]] = Delivery.objects.filter(
        status=Delivery.Status.FAILED, updated__gte=bars.start, updated__lt=bars.end
    ).values_list("channel", "webhook__format", "updated")
    for channel, webhook_format, updated in rows:
        i = bars.index(updated)
        if i is not None:
            failed[probes.delivery_kind(channel, webhook_format)][i] += 1
    return failed
