"""Pages for people, the health and readiness checks, and the metrics scrape."""

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordResetView
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from . import probes, services
from .errors import AppError
from .http import AuthenticatedHttpRequest
from .metrics import RedisCollector
from .models import Action, Membership, Room
from .redis_client import redis_client
from .snapshot import snapshot_build

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks},
        status=200 if healthy else 503,
    )


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception:
        logger.warning("healthz: database unavailable", exc_info=True)
        return "unavailable"


def _check_redis() -> str:
    try:
        redis_client().ping()
        return "ok"
    except Exception:
        logger.warning("healthz: redis unavailable", exc_info=True)
        return "unavailable"


T = TypeVar("T")

# Each check of /readyz and each reading of a /metrics scrape gets this long; the
# checks run at once, so /readyz answers within 2 s (contract: "Readiness").
PROBE_TIMEOUT = 1.5


async def _within(read: Callable[[], T]) -> T:
    """`read()` on a thread of its own, or TimeoutError past PROBE_TIMEOUT (the
    thread is left to finish: a hung socket must not hold the answer)."""
    return await asyncio.wait_for(
        sync_to_async(read, thread_sensitive=False)(), PROBE_TIMEOUT
    )


async def _verdict(read: Callable[[], object], what: str) -> str:
    try:
        await _within(read)
    except TimeoutError:
        return f"no answer in {PROBE_TIMEOUT:g} s"
    except Exception:
        logger.warning("readyz: %s unavailable", what, exc_info=True)
        return "unavailable"
    return "ok"


@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer, a worker consumes and beat ticks;
    503 naming each check that fails (contract: "Readiness: GET /readyz")."""
    database, redis_, ages = await asyncio.gather(
        _verdict(probes.database_answers, "database"),
        _verdict(probes.redis_answers, "redis"),
        _within(probes.heartbeat_ages),
        return_exceptions=True,
    )
    checks: dict[str, Any] = {"database": database, "redis": redis_}
    for role in (probes.WORKER, probes.BEAT):
        if isinstance(ages, BaseException):
            checks[role] = "unknown: redis unavailable"
        else:
            checks[role] = probes.heartbeat_verdict(role, ages[role])
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks},
        status=200 if ready else 503,
    )


class _Gauges(Collector):
    """The gauges read at scrape time; one whose reading failed is left out (its
    absence is what `absent()` alerts on), the scrape goes on."""

    def __init__(self, readings: dict[str, Any]) -> None:
        self._readings = readings

    def collect(self) -> list[Metric]:
        found: list[Metric] = []
        for name, (help_, label, _read) in SCRAPE_GAUGES.items():
            value = self._readings.get(name)
            if value is None or isinstance(value, BaseException):
                continue
            family = GaugeMetricFamily(name, help_, labels=[label] if label else [])
            if label:
                for key, count in sorted(value.items()):
                    family.add_metric([key], count)
            else:
                family.add_metric([], value)
            found.append(family)
        return found


SCRAPE_GAUGES: dict[str, tuple[str, str, Callable[[], Any]]] = {
    "agentsite_requests_open": (
        "Requests not ended, by status.",
        "status",
        probes.requests_open,
    ),
    "agentsite_actions_pending": ("Actions pending now.", "", probes.actions_pending),
    "agentsite_queue_depth": (
        "Messages waiting in the broker, by Celery queue.",
        "queue",
        probes.queue_depth,
    ),
    "agentsite_deliveries_pending": (
        "Outbox deliveries neither sent nor given up, by kind.",
        "kind",
        probes.deliveries_pending,
    ),
    "agentsite_websocket_connections": (
        "Open WebSockets over all web processes.",
        "",
        probes.websocket_connections,
    ),
}


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@require_GET
async def metrics(request: HttpRequest) -> HttpResponse:
    """The deployment's metrics in Prometheus' text format (OpenMetrics when asked),
    behind `Authorization: Bearer <METRICS_TOKEN>` (contract: "Metrics")."""
    if not settings.METRICS_TOKEN:
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    if not _bearer_matches(request, settings.METRICS_TOKEN):
        response = HttpResponse(
            "A bearer token is needed.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    names = list(SCRAPE_GAUGES)
    readings = await asyncio.gather(
        _within(RedisCollector.read),
        *(_within(SCRAPE_GAUGES[name][2]) for name in names),
        return_exceptions=True,
    )
    for name, value in zip(["counters", *names], readings, strict=True):
        if isinstance(value, BaseException):
            logger.warning("metrics: %s unreadable: %r", name, value)
    registry = CollectorRegistry(auto_describe=False)
    counts = readings[0]
    if isinstance(counts, BaseException):
        return HttpResponse(
            "The counts in Redis could not be read.\n",
            status=503,
            content_type="text/plain",
        )
    registry.register(RedisCollector(counts))
    registry.register(_Gauges(dict(zip(names, readings[1:], strict=True))))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)


@login_required
@require_http_methods(["GET", "POST"])
def room_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    may_create = services.can_create_room(user=request.user)
    if request.method == "POST" and not may_create:
        messages.error(request, "Creating rooms needs the permission chat.add_room.")
    elif request.method == "POST":
        try:
            room = services.room_create(
                user=request.user,
                name=request.POST.get("name", ""),
                slug=request.POST.get("slug", ""),
                via=Action.Via.ROOM,
            )
        except AppError as exc:
            messages.error(request, exc.detail)
        else:
            return redirect("room", slug=room.slug)
    memberships = (
        Membership.objects.filter(user=request.user)
        .select_related("room")
        .order_by("room__name")
    )
    return render(
        request,
        "chat/room_list.html",
        {"memberships": memberships, "may_create": may_create},
    )


@login_required
def room_detail(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    try:
        room = services.room_get_for_member(slug=slug, user=request.user)
    except AppError:
        raise Http404("No such room.") from None
    context = {
        "room": room,
        "role": services.room_role(room=room, user=request.user),
        "can_decide": services.can_decide(room=room, user=request.user),
        "members": room.memberships.select_related("user").order_by("user__username"),
        "roles": Membership.Role.values,
        "max_input_chars": settings.AGENT_MAX_INPUT_CHARS,
        # The page draws from the snapshot a watcher gets, then follows the socket.
        "snapshot": snapshot_build(room=room, user=request.user, with_presence=False),
    }
    return render(request, "chat/room.html", context)


@login_required
@require_http_methods(["POST"])
def room_member_add(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    room = Room.objects.filter(slug=slug).first()
    username = request.POST.get("username", "").strip()
    try:
        if room is None:
            raise services.NotFound("No such room.")
        membership = services.member_add(
            room=room,
            actor=request.user,
            username=username,
            role=request.POST.get("role", Membership.Role.MEMBER),
            via=Action.Via.ROOM,
        )
    except services.NotFound:
        raise Http404("No such room.") from None
    except AppError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{username} is now {membership.role} here.")
    return redirect("room", slug=slug)


_password_reset = PasswordResetView.as_view()


def password_reset(request: HttpRequest) -> HttpResponseBase:
    """Django's reset form, only where mail goes out (EMAIL_HOST). Without it the
    console backend would print the reset link, a credential, into the web process's
    log; the login lockout counts and refuses its POSTs (chat/lockout.py)."""
    if not settings.EMAIL_HOST:
        raise Http404("Password reset needs EMAIL_HOST.")
    return _password_reset(request)
