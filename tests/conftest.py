"""Fixtures every test package may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.redis import redis_answers

# Django's own hashers after ours: hashes a test makes with one of them still verify.
QUICK_HASHERS = [
    "tests.hashers.QuickPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]


@pytest.fixture(scope="session", autouse=True)
def _quick_password_hashing() -> Iterator[None]:
    """Every password hashed or checked in this process costs little (a test that
    is about rehashing sets the hashers it needs)."""
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=QUICK_HASHERS):
        yield


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis of this test run, which `python -m stack test` made sure answers."""
    from django.conf import settings

    url = settings.REDIS_URL
    assert redis_answers(url, timeout=2), (
        f"No Redis answers at {url}: run the tests with `make test` or "
        "`python -m stack test`, which start one when needed."
    )
    return url


# The Celery messages a test enqueued, over every queue (tests/chat/queues.py).
from tests.chat.queues import task_queue  # noqa: E402, F401

# Real peers of the outbox: an HTTP receiver and an SMTP server (tests/peers.py).
from tests.peers import receiver, smtp  # noqa: E402, F401
