"""An outage of Redis or the database answers 503 with Retry-After, never a 500."""

import copy
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client

from stack.procs import free_port
from tests.plugins.people import token_for


def dead_redis() -> str:
    """A Redis URL where nothing listens: connections are refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


def test_the_api_answers_503_while_redis_is_unreachable(alice, settings) -> None:
    token = token_for(alice)
    settings.CACHES = {
        "default": {
            "BACKEND": "chat.cache.SharedRedisCache",
            "LOCATION": dead_redis(),
            "KEY_PREFIX": "outage-test",
        }
    }

    response = Client().get("/api/rooms", HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {
        "detail": "Temporarily unavailable: try again in a few seconds."
    }


@pytest.fixture
def database_gone(transactional_db) -> Iterator[None]:
    """The test database's connection pointed at one that cannot be opened (on
    PostgreSQL through a new pool, which gives up after 2 s instead of 30)."""
    saved = copy.deepcopy(connection.settings_dict)
    _close(connection)
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-dir/agentsite.sqlite3"
    else:
        connection.settings_dict["NAME"] = "agentsite_no_such_database"
        options = connection.settings_dict.get("OPTIONS", {})
        if isinstance(options.get("pool"), dict):
            pool = {**options["pool"], "timeout": 2}
            connection.settings_dict["OPTIONS"] = {**options, "pool": pool}
    yield
    _close(connection)
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


def _close(connection) -> None:
    connection.close()
    if hasattr(connection, "close_pool"):  # PostgreSQL's psycopg pool
        connection.close_pool()


def test_pages_and_the_api_answer_503_while_the_database_is_unreachable(
    database_gone,
) -> None:
    client = Client(raise_request_exception=False)

    # Logging in reads the user from the database.
    api = client.post(
        "/api/auth/token",
        {"username": "alice", "password": "demo"},
        content_type="application/json",
    )
    page = client.get("/inbox/", HTTP_COOKIE="sessionid=" + "a" * 32)

    assert api.status_code == 503, api.content
    assert api.json()["detail"].startswith("Temporarily unavailable")
    assert page.status_code == 503, page.content
    assert page.headers["Content-Type"].startswith("text/plain")
    assert page.headers["Retry-After"] == "5"


def test_other_errors_are_not_called_outages(alice) -> None:
    """A missing room is still a 404: the middleware only takes outages."""
    response = Client().get(
        "/api/rooms/no-such-room", HTTP_AUTHORIZATION=f"Token {token_for(alice)}"
    )
    assert response.status_code == 404
