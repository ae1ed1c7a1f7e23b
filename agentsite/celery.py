import os
from logging.config import dictConfig
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    celeryd_init,
    setup_logging,
    worker_init,
    worker_process_init,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")

app = Celery("agentsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# With LOG_FORMAT=json every line is a JSON object: no banners, which Celery prints
# (not logs) as the worker and beat start. The worker takes `quiet` from the signal
# below; beat only from its constructor, which `celery beat` calls as `app.Beat`.
JSON_LOGS = os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"
if JSON_LOGS:
    _beat = app.Beat

    def _quiet_beat(*args: Any, **kwargs: Any) -> Any:
        return _beat(*args, **{**kwargs, "quiet": True})

    app.Beat = _quiet_beat  # type: ignore[misc,assignment]

    # What Celery's signal handlers print (not log) as JSON lines too.
    import celery.apps.worker

    from .logs import say_json

    celery.apps.worker.safe_say = say_json  # type: ignore[attr-defined]


@celeryd_init.connect
def quiet_worker(instance: Any, **kwargs: Any) -> None:
    if JSON_LOGS:
        instance.quiet = True


@setup_logging.connect
def use_django_logging(**kwargs: Any) -> None:
    """Workers and beat log as the web processes do (settings.LOGGING): connected,
    this signal stops Celery from installing handlers and formats of its own."""
    from django.conf import settings

    dictConfig(settings.LOGGING)


@worker_init.connect  # the worker's main process (the threads pool runs tasks there)
@worker_process_init.connect  # each child of a prefork pool
@beat_init.connect
def start_tracing(**kwargs: Any) -> None:
    """Traces from this process too, when the OTEL_* variables ask (see telemetry)."""
    from agentsite import telemetry

    telemetry.setup()
