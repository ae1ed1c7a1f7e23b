"""API tokens: hashed at rest, expiring, revocable (by the caller or in the admin)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from chat.models import ApiToken, Room
from tests.chat.test_api import forget_throttle_counts  # noqa: F401  (autouse)
from tests.chat.test_consumer import refused

pytestmark = pytest.mark.django_db(transaction=True)


def _login(username: str = "alice") -> str:
    body = {"username": username, "password": f"{username}-pass"}
    response = APIClient().post("/api/auth/token", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["expires_at"]
    return str(response.json()["token"])


def _with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_the_database_holds_no_usable_key(alice: User) -> None:
    key = _login()
    with connection.cursor() as cursor:
        cursor.execute("SELECT digest, prefix FROM chat_apitoken")
        rows = cursor.fetchall()
    assert len(rows) == 1
    assert key not in rows[0][0] and len(rows[0][1]) < len(key)
    assert _with(key).get("/api/rooms").status_code == 200


def test_delete_revokes_the_callers_token_only(alice: User, room: Room) -> None:
    kept, revoked = _login(), _login()
    assert _with(revoked).delete("/api/auth/token").status_code == 204
    assert _with(revoked).get("/api/rooms").status_code == 401
    assert _with(kept).get("/api/rooms").status_code == 200
    # A revoked token no longer opens a socket either.
    headers = [(b"authorization", f"Token {revoked}".encode())]
    assert asyncio.run(refused(headers, "/ws/rooms/triage/")) == 4401


def test_an_expired_token_gets_401(alice: User) -> None:
    key = _login()
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _with(key).get("/api/rooms").status_code == 401


def test_the_admin_lists_tokens_and_its_delete_revokes(
    alice: User, admin_user: User
) -> None:
    key = _login()
    token = ApiToken.objects.get()
    staff = Client()
    staff.force_login(admin_user)
    page = staff.get("/admin/chat/apitoken/")
    assert page.status_code == 200 and token.prefix in page.content.decode()
    assert key not in page.content.decode()
    deleted = staff.post(f"/admin/chat/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert _with(key).get("/api/rooms").status_code == 401
