"""Repeated failed logins lock the client out for a while (contract: "Limits").

Counted in the shared cache, per client address and per address and username, on
the three password doors: `/accounts/login/`, `/admin/login/` and
`POST /api/auth/token`; the password forms count and refuse under the same keys (a
change with a wrong old password, every reset, which mails someone). The address is
the socket's peer unless TRUSTED_PROXIES says how many proxies stand in front (then
X-Forwarded-For's entry that many from the right, which the nearest proxy appended):
a client cannot choose its own key. An IPv6 client is keyed by its /64, which one
subscriber usually holds whole, and a username by its NFKC case fold.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import unicodedata
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse

LOGIN_PATHS = ("/accounts/login/", "/admin/login/", "/api/auth/token")
# Django's password change views redirect on success: a POST answered otherwise failed
# (the old password wrong, most often), and counts as a failed login of that user.
PASSWORD_CHANGE_PATHS = ("/accounts/password_change/", "/admin/password_change/")
# A reset mails someone whether or not the address is known: every POST counts.
PASSWORD_RESET_PATHS = ("/accounts/password_reset/",)
GUARDED_PATHS = LOGIN_PATHS + PASSWORD_CHANGE_PATHS + PASSWORD_RESET_PATHS
# Per address, whatever the username: an address trying many names.
ADDRESS_FACTOR = 4


def client_address(request: HttpRequest) -> str:
    """The client's address, trusting only the configured number of proxies."""
    proxies = settings.TRUSTED_PROXIES
    peer = str(request.META.get("REMOTE_ADDR", ""))
    if proxies <= 0:
        return peer
    forwarded = [
        part.strip()
        for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if part.strip()
    ]
    # Each trusted proxy appended the address it saw; further left is the client's say.
    return forwarded[-proxies] if len(forwarded) >= proxies else peer


def address_key(address: str) -> str:
    """The part of an address one client controls: an IPv6 /64, an IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # A subscriber gets a /64 (or more) and picks any of its 2**64 addresses.
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def username_key(username: str) -> str:
    """One key for every spelling of a name: NFKC, then case fold (fullwidth letters,
    ligatures and the like are the same name)."""
    folded = unicodedata.normalize("NFKC", username.strip()).casefold()
    return unicodedata.normalize("NFKC", folded)


def _keys(address: str, username: str) -> list[tuple[str, int]]:
    limit = settings.LOGIN_FAILURE_LIMIT
    address = address_key(address)
    name = hashlib.sha256(
        username_key(username).encode("utf-8", "surrogatepass")
    ).hexdigest()[:32]
    return [
        (f"lockout:addr:{address}", limit * ADDRESS_FACTOR),
        (f"lockout:user:{address}:{name}", limit),
    ]


def _username(request: HttpRequest) -> str:
    if request.path in PASSWORD_CHANGE_PATHS:
        user = getattr(request, "user", None)
        return user.get_username() if user is not None and user.is_authenticated else ""
    if request.path in PASSWORD_RESET_PATHS:
        return str(request.POST.get("email", ""))
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):
            return ""
        value = body.get("username") if isinstance(body, dict) else None
        return value if isinstance(value, str) else ""
    return str(request.POST.get("username", ""))


def login_failed(request: HttpRequest | None) -> None:
    """Count one failed login of `request`'s client (and the username it tried)."""
    if request is None:
        return
    for key, _limit in _keys(client_address(request), _username(request)):
        cache.add(key, 0, settings.LOGIN_LOCKOUT_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, settings.LOGIN_LOCKOUT_SECONDS)


def locked_out(request: HttpRequest) -> bool:
    keys = _keys(client_address(request), _username(request))
    counts = cache.get_many([key for key, _ in keys])
    return any(int(counts.get(key, 0)) >= limit for key, limit in keys)


class LoginLockoutMiddleware:
    """Refuse a login or password form attempt (429) while its client is locked out;
    count the password forms' attempts (logins are counted by `on_login_failed`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path not in GUARDED_PATHS:
            return self.get_response(request)
        if locked_out(request):
            return self._refusal(request)
        response = self.get_response(request)
        if request.path in PASSWORD_RESET_PATHS or (
            request.path in PASSWORD_CHANGE_PATHS and response.status_code != 302
        ):
            login_failed(request)
        return response

    def _refusal(self, request: HttpRequest) -> HttpResponse:
        what = "failed logins" if request.path in LOGIN_PATHS else "password attempts"
        detail = (
            f"Too many {what}; try again in "
            f"{settings.LOGIN_LOCKOUT_SECONDS // 60} minutes."
        )
        response: HttpResponse
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": detail}, status=429)
        else:
            response = HttpResponse(detail, status=429, content_type="text/plain")
        response["Retry-After"] = str(settings.LOGIN_LOCKOUT_SECONDS)
        return response


def on_login_failed(
    sender: Any, credentials: Any, request: Any = None, **_: Any
) -> None:
    # Django's documented hook for every failed authenticate(), whichever door.
    login_failed(request)
