"""Logging for every process: plain text, or with `LOG_FORMAT=json` one JSON object
per line (contract, "Logs"), rendered by structlog from the standard library's
records, so Django's, Celery's, uvicorn's and our own loggers all come out alike.

The ids of what a process works on (`request_id`, `room`, `action_id`,
`delivery_id`) are bound in context variables (`bind`, `scope`) by the task that
works on it, or passed with `extra=` on a line; the current span's `trace_id` and
`span_id` are added when tracing is on.
"""

import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from opentelemetry import trace

IDS = ("request_id", "room", "action_id", "delivery_id")
# Variables whose values are credentials, by the name's ending.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|DSN)$")
# Key-shaped words (OpenAI's `sk-…`), and the signed decision links' tokens.
_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_*\-]{6,}")
_DECIDE_LINK = re.compile(r"(/decide/)[^/\s\"?]+")


def bind(**ids: object) -> None:
    """Name what this task works on in every line it logs from now on."""
    structlog.contextvars.bind_contextvars(
        **{key: str(value) for key, value in ids.items() if value}
    )


@contextmanager
def scope(**ids: object) -> Iterator[None]:
    """`bind` for the length of a block, then back to what was bound before (a
    thread of the worker's pool runs one task after another)."""
    before = structlog.contextvars.get_contextvars()
    bind(**ids)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**before)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets or _secrets():
        text = text.replace(secret, "[redacted]")
    text = _DECIDE_LINK.sub(r"\1[redacted]", text)
    return _KEY_SHAPED.sub("[redacted]", text)


def _secrets(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    return tuple(
        value
        for name, value in environ.items()
        if _SECRET_NAME.search(name) and len(value) >= 8
    )


class Redact(logging.Filter):
    """No credential in a line: the environment's secrets, key-shaped words and
    decision links' tokens are replaced in the message (whatever the format)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = _secrets()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# structlog processors, over the event dict of one standard-library record ----------


def _record_fields(
    logger: object, method: str, event: dict[str, Any]
) -> dict[str, Any]:
    record: logging.LogRecord = event["_record"]
    created = datetime.fromtimestamp(record.created, UTC)
    event["timestamp"] = created.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    event["level"] = record.levelname
    event["logger"] = record.name
    return event


def _trace_ids(logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def _message(logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["message"] = str(event.pop("event", ""))
    info = event.pop("exc_info", None)
    if isinstance(info, tuple) and info[0] is not None:
        event["exc_info"] = "".join(traceback.format_exception(*info)).rstrip()
    elif isinstance(info, BaseException):
        event["exc_info"] = "".join(traceback.format_exception(info)).rstrip()
    event.pop("stack_info", None)
    secrets = _secrets()
    for key in ("message", "exc_info"):
        if isinstance(event.get(key), str):
            event[key] = redact(event[key], secrets)
    return event


def say_json(message: str, f: Any = sys.__stderr__) -> None:
    """Celery's `safe_say` (what its signal handlers print, "worker: Warm shutdown")
    as a JSON line: written at once with os.write, as the original, since a signal
    handler must not wait for the logging module's locks."""
    line = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "level": "WARNING",
        "logger": "celery.apps.worker",
        "message": str(message),
    }
    stream: Any = f if f is not None else sys.__stderr__
    os.write(stream.fileno(), (json.dumps(line) + "\n").encode())


def json_formatter() -> dict[str, Any]:
    """The `formatters` entry of LOGGING for `LOG_FORMAT=json`."""
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [
            structlog.contextvars.merge_contextvars,
            # `extra={"request_id": ...}` of a line.
            structlog.stdlib.ExtraAdder(allow=IDS),
            _record_fields,
            _trace_ids,
        ],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _message,
            structlog.processors.JSONRenderer(),
        ],
    }


def config(*, fmt: str, level: str) -> dict[str, Any]:
    """The LOGGING dictionary of settings.py for `LOG_FORMAT` `text` or `json`."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": fmt,
        "filters": ["redact"],
    }
    if fmt == "json":
        # Python's warnings (Celery's SecurityWarning) as lines of their own.
        logging.captureWarnings(True)
    quiet = {"level": "WARNING"}
    # uvicorn configures its loggers before Django's settings load. For JSON they are
    # named here, to write through our handler (its access log included); as text
    # they keep uvicorn's own format ("INFO:     Started server process ...").
    uvicorn = {"handlers": ["console"], "level": level, "propagate": False}
    uvicorns = (
        {name: uvicorn for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}
        if fmt == "json"
        else {}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": Redact}},
        "formatters": {
            "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": json_formatter(),
        },
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # httpx logs every request line at INFO; one line per model call is noise.
            "httpx": quiet,
            "httpx2": quiet,
            "openai": quiet,
            "mcp": quiet,
            **uvicorns,
        },
    }
