"""An outage of the database or Redis answers 503 with `Retry-After`, not a 500.

While PostgreSQL restarts or Redis is unreachable, a call fails through no fault of
the caller and no bug here: clients (the room page, the generated client, a webhook
sender) should try again shortly, and the log should not read like a crash. Any
other exception still reaches Django's handler (a 500, logged with its traceback).
"""

import logging

import redis
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)

OUTAGES = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RETRY_AFTER_SECONDS = 5
DETAIL = "Temporarily unavailable: try again in a few seconds."


class OutageMiddleware(MiddlewareMixin):
    """Sync and async alike (the mixin), so it adds no thread hop to an ASGI call."""

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if not isinstance(exception, OUTAGES):
            return None
        logger.warning(
            "%s %s: 503, %s: %s",
            request.method,
            request.path,
            type(exception).__name__,
            exception,
        )
        response: HttpResponse
        if request.path.startswith(("/api/", "/hooks/")):
            response = JsonResponse({"detail": DETAIL}, status=503)
        else:
            response = HttpResponse(DETAIL, status=503, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
