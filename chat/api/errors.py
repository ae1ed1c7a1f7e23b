"""Every API error is `{"detail": "..."}` with a 4xx status."""

import logging
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chat.errors import AppError

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, AppError):
        return Response({"detail": exc.detail, **exc.extra}, status=exc.status)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        # DRF turns these into 403 when the view's first authentication class sends
        # no challenge, and sessions (listed first) send none; the contract says 401.
        return Response(
            {"detail": str(exc.detail)},
            status=401,
            headers={"WWW-Authenticate": TokenAuthentication.keyword},
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": _flatten(exc.detail), "errors": exc.detail}
    elif response is not None and isinstance(exc, Http404):
        response.data = {"detail": "Not found."}
    return response


def _flatten(detail: object, prefix: str = "") -> str:
    if isinstance(detail, dict):
        return "; ".join(_flatten(v, f"{prefix}{k}: ") for k, v in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(v, prefix) for v in detail)
    return f"{prefix}{detail}"


def json_404_or_page(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    """API clients get JSON for unknown paths too; people get the usual page."""
    if request.path.startswith(("/api/", "/hooks/")):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
