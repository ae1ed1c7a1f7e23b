"""Pages for people, and the health check for load balancers."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordResetView
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import services
from .errors import AppError
from .http import AuthenticatedHttpRequest
from .models import Membership, Room
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
