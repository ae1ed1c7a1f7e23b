"""Tracing's off-switch and its names, and the JSON log line, without processes."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from agentsite import logs, telemetry

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "http://127.0.0.1:9"  # nobody listens: nothing is sent in these tests

STATE = """
import sys, django
django.setup()
from agentsite import telemetry
on = telemetry.setup()
import chat.services, tasks.steps  # what a worker imports
from opentelemetry import trace
provider = trace.get_tracer_provider()
name = getattr(provider, "resource", None)
name = name.attributes.get("service.name") if name else None
print(on, type(provider).__name__, "opentelemetry.sdk.trace" in sys.modules, name)
with telemetry.tracer.start_as_current_span("x"):
    print(sorted(telemetry.carrier()))
"""


def state(**env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", STATE],
        cwd=ROOT,
        env={**environ, "DJANGO_SETTINGS_MODULE": "agentsite.settings", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.split("\n")[:2]


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, True),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"},
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_traces_are_wanted_only_with_an_endpoint_and_not_switched_off(env, wanted):
    assert telemetry.wanted(env) is wanted


@pytest.mark.slow  # Python processes that import Django and the worker
def test_without_an_endpoint_nothing_is_installed_and_spans_are_no_ops():
    # No SDK imported at all: no provider, no exporter, no thread; no context stored.
    assert state() == ["False ProxyTracerProvider False None", "[]"]
    assert state(OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT, OTEL_SDK_DISABLED="true") == [
        "False ProxyTracerProvider False None",
        "[]",
    ]
    assert state(OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT, OTEL_TRACES_EXPORTER="none") == [
        "False ProxyTracerProvider False None",
        "[]",
    ]


@pytest.mark.slow
def test_with_an_endpoint_the_sdk_exports_under_the_service_name():
    assert state(OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT) == [
        "True TracerProvider True agentsite",
        "['traceparent']",
    ]
    assert state(OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT, OTEL_SERVICE_NAME="triage-bot")[
        0
    ] == ("True TracerProvider True triage-bot")


def test_an_unsupported_protocol_leaves_traces_off(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with caplog.at_level(logging.ERROR):
        assert telemetry.setup() is False
    assert "not supported" in caplog.text
    assert not telemetry.enabled()


def test_off_the_helpers_do_nothing():
    assert not telemetry.enabled()
    assert telemetry.carrier() == {}
    with telemetry.under({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}):
        assert telemetry.carrier() == {}


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("api/rooms/<slug:slug>/requests", "/api/rooms/{slug}/requests"),
        ("api/actions/<str:action_id>/approve", "/api/actions/{action_id}/approve"),
        ("api/rooms", "/api/rooms"),
        ("healthz", "/healthz"),
        ("rooms/<slug>/", "/rooms/{slug}/"),
        (r"^media/(?P<path>.*)$", "/media/{path}"),
    ],
)
def test_routes_are_named_as_the_http_conventions_write_them(route, template):
    assert telemetry.route_template(route) == template


def test_decision_links_never_show_their_token():
    assert telemetry.redact_path("/decide/abc.def-ghi/") == "/decide/[redacted]/"
    assert "abc.def" not in logs.redact('"GET /decide/abc.def-ghi/ HTTP/1.1" 200')


def _json_line(record: logging.LogRecord) -> dict:
    options = {k: v for k, v in logs.json_formatter().items() if k != "()"}
    formatter = structlog.stdlib.ProcessorFormatter(**options)
    line = formatter.format(record)
    assert "\n" not in line
    return json.loads(line)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "chat.services.requests", logging.ERROR, __file__, 1, message, args, None
    )
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_the_contract_keys_and_the_ids_of_the_work_at_hand():
    with logs.scope(request_id="r-1", room="triage"):
        line = _json_line(_record("request %s failed: %s", "r-1", "boom"))
    assert line["message"] == "request r-1 failed: boom"
    assert line["level"] == "ERROR"
    assert line["logger"] == "chat.services.requests"
    assert line["timestamp"].endswith("Z") and len(line["timestamp"]) == 24
    assert (line["request_id"], line["room"]) == ("r-1", "triage")
    # Bound only for the block.
    assert "request_id" not in _json_line(_record("later"))
    # Or given with the line.
    line = _json_line(_record("delivery gave up", delivery_id="d-1", secret="x"))
    assert line["delivery_id"] == "d-1" and "secret" not in line


def test_a_traceback_is_the_exc_info_of_its_one_line_and_keys_are_redacted(
    monkeypatch,
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-abcdefghijklmnop")
    try:
        raise ValueError("bad key sk-proj-abcdefghijklmnop")
    except ValueError:
        record = _record("could not call with %s", "sk-proj-abcdefghijklmnop")
        record.exc_info = sys.exc_info()
    line = _json_line(record)
    assert "Traceback" in line["exc_info"] and "ValueError" in line["exc_info"]
    assert "abcdefghijklmnop" not in json.dumps(line)
