"""OpenTelemetry traces, configured by the standard `OTEL_*` variables.

Every process of the Procfile calls `setup()` once: the web process in
`agentsite/asgi.py` (before Django loads its middleware), the worker and beat from
Celery's start signals (`agentsite/celery.py`). With no OTLP endpoint set,
`OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` it does nothing: no
provider, no exporter, no instrumentation, and every span below is the API's no-op.

A turn is one trace (contract, "Traces"): the context of the span that created a
request is stored with it (`Request.trace_context`), the proposing step's (then the
approval's) with each action, and every task of the turn is sent `under()` it, so
that a step enqueued by the sweep days later still lands in the same trace.
"""

import logging
import os
import re
from asyncio import iscoroutinefunction
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

from asgiref.sync import markcoroutinefunction
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

logger = logging.getLogger(__name__)

tracer = trace.get_tracer("agentsite")

_state = {"on": False}

# Attribute names of the contract's "Traces" section.
REQUEST_ID = "agentsite.request.id"
ROOM = "agentsite.room"
ACTION_ID = "agentsite.action.id"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, not switched off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporters in ("", "none"):
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def enabled() -> bool:
    return _state["on"]


def capture_content() -> bool:
    """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: message text on spans."""
    return _state["on"] and _flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")


def setup() -> bool:
    """Install the tracer provider and the instrumentations, once per process;
    whether traces are on."""
    if _state["on"] or not wanted():
        return _state["on"]
    exporter = _exporter()
    if exporter is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_* are read by
    # the SDK itself; only the service name has a default of ours.
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "agentsite"}
    )
    provider = TracerProvider(resource=resource)
    from .sampling import NoStrayQueries

    provider.sampler = NoStrayQueries(provider.sampler)
    # In the background with a bounded queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048): a dead
    # collector drops spans, it never blocks a request or a step.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _instrument()
    _state["on"] = True
    return True


def _exporter() -> Any:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            logger.error(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the package "
                "opentelemetry-exporter-otlp-proto-grpc; traces are off"
            )
            return None
        return GrpcExporter()
    if protocol != "http/protobuf":
        logger.error("OTLP protocol %r is not supported; traces are off", protocol)
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Endpoint, headers and timeout from OTEL_EXPORTER_OTLP_(TRACES_)*.
    return OTLPSpanExporter()


def _instrument() -> None:
    # The HTTP server spans in the stable conventions (`http.request.method`,
    # `url.path`, `http.response.status_code`), as the contract names them.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from django.conf import settings
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # The HTTP SERVER spans are our middleware's, not opentelemetry-instrumentation-
    # django's: that one skips ASGI requests (all of ours) unless
    # opentelemetry-instrumentation-asgi wraps the whole ASGI app, which would also
    # make a span of every WebSocket, and it names routes in Django's syntax
    # (`api/rooms/<slug:slug>/requests`), not the contract's (`/api/rooms/{slug}/...`).
    settings.MIDDLEWARE = [ServerSpans.PATH, *settings.MIDDLEWARE]
    CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
    PsycopgInstrumentor().instrument(enable_commenter=False)
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


# HTTP server spans -------------------------------------------------------------------


class ServerSpans:
    """Django middleware, first of all: each HTTP request as a SERVER span named
    `{method} {route}` (OpenTelemetry's HTTP conventions), a child of the caller's
    `traceparent` if it sent one. Sync or async, as the chain around it is."""

    PATH = "agentsite.telemetry.ServerSpans"
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        with self._span(request) as span:
            response = self.get_response(request)
            self._describe(span, request, response)
            return response

    async def _acall(self, request: Any) -> Any:
        with self._span(request) as span:
            response = await self.get_response(request)
            self._describe(span, request, response)
            return response

    def _span(self, request: Any) -> AbstractContextManager[Span]:
        headers = {name.lower(): value for name, value in request.headers.items()}
        return tracer.start_as_current_span(
            request.method,
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "url.path": redact_path(request.path),
                "url.scheme": request.scheme,
            },
        )

    def _describe(self, span: Span, request: Any, response: Any) -> None:
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            fail(span, str(response.status_code))
        _http_server_span(span, request, response)


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_GROUP = re.compile(r"\(\?P<([^>]+)>[^)]*\)")
# Paths that hold a credential: the signed decision links.
_SECRET_PATH = re.compile(r"^(/decide/)[^/]+")


def route_template(route: str) -> str:
    """Django's route (`api/rooms/<slug:slug>/requests`, or a regex) as the HTTP
    conventions write it: `/api/rooms/{slug}/requests`."""
    route = _CONVERTER.sub(r"{\1}", _GROUP.sub(r"{\1}", route))
    route = route.lstrip("^").rstrip("$").replace("\\", "")
    return "/" + route.lstrip("/")


def redact_path(path: str) -> str:
    return _SECRET_PATH.sub(r"\1[redacted]", path)


def _http_server_span(span: Span, request: Any, response: Any) -> None:
    if not span.is_recording():
        return
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", "") if match is not None else ""
    if route:
        template = route_template(route)
        span.update_name(f"{request.method} {template}")
        span.set_attribute("http.route", template)
    span.set_attribute("url.path", redact_path(request.path))


# Contexts stored with requests and actions -------------------------------------------


def carrier() -> dict[str, str]:
    """The current span's context as W3C headers (`traceparent`, `tracestate`), to
    store with a row; empty when tracing is off."""
    headers: dict[str, str] = {}
    if _state["on"]:
        propagate.inject(headers)
    return headers


@contextmanager
def under(headers: Mapping[str, Any] | None) -> Iterator[None]:
    """Run the block in the stored context `headers` (the current one if empty)."""
    if not _state["on"] or not headers:
        yield
        return
    token = otel_context.attach(propagate.extract(_headers(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


def _headers(stored: Mapping[str, Any]) -> dict[str, str]:
    """The W3C headers of a stored context (which may keep other keys beside)."""
    return {k: v for k, v in stored.items() if isinstance(v, str)}


def tag(*, request_id: object = None, room: str = "", action_id: object = None) -> None:
    """Name the turn on the current span (the task's CONSUMER span, the HTTP one)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for key, value in ((REQUEST_ID, request_id), (ROOM, room), (ACTION_ID, action_id)):
        if value:
            span.set_attribute(key, str(value))


def turn_attributes(
    *, request_id: object, room: str, action_id: object = None
) -> dict[str, str]:
    attributes = {REQUEST_ID: str(request_id), ROOM: room}
    if action_id:
        attributes[ACTION_ID] = str(action_id)
    return attributes


def server_span(name: str, **attributes: str) -> AbstractContextManager[Any]:
    """A SERVER span around a WebSocket frame (`ws chat`); nothing when off."""
    if not _state["on"]:
        return nullcontext()
    return tracer.start_as_current_span(
        name, kind=SpanKind.SERVER, attributes=attributes
    )


def fail(span: Span, error_type: str, description: str = "") -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description or None))


def approval_span(
    *,
    headers: Mapping[str, Any],
    tool: str,
    started: datetime,
    attributes: dict[str, Any],
) -> tuple[Span, dict[str, str]]:
    """Start the `approval {tool}` span of a decision made now, under the proposing
    step's context `headers`, linked to the current span (where the decision was
    taken); the span and its own context, under which the released tool call is
    sent. The caller ends it (once the decision is committed)."""
    deciding = trace.get_current_span().get_span_context()
    links = [Link(deciding)] if deciding.is_valid else []
    parent = propagate.extract(_headers(headers)) if headers else otel_context.Context()
    span = tracer.start_span(
        f"approval {tool}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        links=links,
        start_time=int(started.timestamp() * 1e9),
    )
    stored: dict[str, str] = {}
    propagate.inject(stored, context=trace.set_span_in_context(span))
    return span, stored


__all__ = ["SpanKind", "tracer"]
