"""What `/readyz` and `/metrics` read at the moment they are asked (contract:
"Operating it"): the heartbeats of the workers and of beat, and the gauges read from
the database and the broker.

The worker side writes the heartbeats (`tasks.tasks`, on Celery's own heartbeat and
when beat sends the sweep) through `heartbeat_write`; the views run each reading
here under a timeout, so a database or broker that hangs makes its check fail
rather than the probe hang.
"""

from __future__ import annotations

import time
from functools import cache

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count, F

from .models import Action, Delivery, Request, Webhook
from .redis_client import redis_client, redis_key
from .socket_cap import sockets_open

WORKER = "worker"
BEAT = "beat"


def _heartbeat_key(role: str) -> str:
    return redis_key("readyz", role)


def heartbeat_write(role: str) -> None:
    """Say that a worker consumes (`worker`) or that beat sent the sweep (`beat`).

    One key per role holds the latest time any process of that role wrote: the
    contract asks for at least one live worker, whichever.
    """
    ttl = max(3600, settings.READYZ_MAX_AGE * 10)
    redis_client().set(_heartbeat_key(role), repr(time.time()), ex=ttl)


def heartbeat_ages() -> dict[str, float | None]:
    """Seconds since each role's last heartbeat, None when there was none lately."""
    with redis_client().pipeline(transaction=False) as pipe:
        for role in (WORKER, BEAT):
            pipe.get(_heartbeat_key(role))
        stamps = pipe.execute()
    now = time.time()
    return {
        role: None if stamp is None else max(0.0, now - float(stamp))
        for role, stamp in zip((WORKER, BEAT), stamps, strict=True)
    }


def heartbeat_verdict(role: str, age: float | None) -> str:
    """`ok`, or the reason the role does not look alive."""
    if age is None:
        return "no heartbeat" if role == WORKER else "no tick"
    if age > settings.READYZ_MAX_AGE:
        what = "heartbeat" if role == WORKER else "tick"
        return f"no {what} for {int(age)} s"
    return "ok"


def database_answers() -> None:
    """Raises unless the database answers a query; the connection is given back
    (probes run on threads of their own)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def redis_answers() -> None:
    redis_client().ping()


# Gauges read at scrape time ---------------------------------------------------------

OPEN = (Request.Status.QUEUED, Request.Status.RUNNING, Request.Status.AWAITING_APPROVAL)
DELIVERY_KINDS = ("email", "webhook", "slack")


def requests_open() -> dict[str, int]:
    try:
        counts = dict(
            Request.objects.filter(status__in=OPEN)
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
    finally:
        connection.close()
    return {str(status): int(counts.get(status, 0)) for status in OPEN}


def actions_pending() -> int:
    try:
        return Action.objects.filter(status=Action.Status.PENDING).count()
    finally:
        connection.close()


def deliveries_pending() -> dict[str, int]:
    """Outbox rows neither sent nor given up, by kind: a webhook in Slack's format
    is `slack`."""
    counts = dict.fromkeys(DELIVERY_KINDS, 0)
    try:
        rows = (
            Delivery.objects.filter(status=Delivery.Status.PENDING)
            .values("channel", format=F("webhook__format"))
            .annotate(n=Count("pk"))
        )
        for row in rows:
            counts[delivery_kind(row["channel"], row["format"])] += row["n"]
    finally:
        connection.close()
    return counts


def delivery_kind(channel: str, webhook_format: str | None) -> str:
    if channel == Delivery.Channel.EMAIL:
        return "email"
    return "slack" if webhook_format == Webhook.Format.SLACK else "webhook"


def queue_names() -> list[str]:
    return [
        settings.CELERY_MODEL_QUEUE,
        settings.CELERY_TOOLS_QUEUE,
        settings.CELERY_TASK_DEFAULT_QUEUE,
    ]


# Kombu's Redis transport keeps a queue as a list, and its priorities 3, 6 and 9 as
# lists of their own named after it (`<queue>\x06\x16<priority>`).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


@cache
def _broker() -> redis.Redis:
    if settings.CELERY_BROKER_URL == settings.REDIS_URL:
        return redis_client()
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2
    )


def queue_depth() -> dict[str, int]:
    """Messages waiting in each Celery queue of the broker."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    names = queue_names()
    with _broker().pipeline(transaction=False) as pipe:
        for name in names:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(f"{prefix}{name}{suffix}")
        lengths = pipe.execute()
    per = len(_PRIORITY_SUFFIXES)
    return {name: sum(lengths[i * per : (i + 1) * per]) for i, name in enumerate(names)}


def websocket_connections() -> int:
    return sockets_open()
