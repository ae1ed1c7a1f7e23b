"""Workers log through Django's LOGGING; Sentry only when SENTRY_DSN is set."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# settings.LOGGING's "plain" format, not Celery's "[date: LEVEL/Process]".
DJANGO_FORMAT = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO celery\.\S+ ", re.M
)

SENTRY_STATE = """
import sys, django
django.setup()
loaded = "sentry_sdk" in sys.modules
if loaded:
    import sentry_sdk
    client = sentry_sdk.get_client()
    names = sorted(client.integrations)
    print(loaded, client.is_active(), "django" in names, "celery" in names)
else:
    print(loaded)
"""


@pytest.mark.e2e
def test_a_worker_logs_in_the_format_of_django_logging(stack):
    worker = stack.worker()
    assert DJANGO_FORMAT.search(worker.output()), worker.output()[-2000:]


def sentry_state(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    done = subprocess.run(
        [sys.executable, "-c", SENTRY_STATE],
        cwd=ROOT,
        env={**environ, "DJANGO_SETTINGS_MODULE": "agentsite.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_sentry_is_not_even_imported_without_a_dsn():
    assert sentry_state() == "False"


@pytest.mark.slow  # a Python process that imports Sentry's integrations
def test_sentry_reports_django_and_celery_with_a_dsn():
    dsn = "http://public@127.0.0.1:9/1"
    assert sentry_state(SENTRY_DSN=dsn) == "True True True True"
