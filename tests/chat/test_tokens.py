"""API tokens: hashed at rest, expiring, revocable (by the caller or in the admin)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from chat.models import ApiToken, Room, User
from tests.chat.test_api import forget_throttle_counts  # noqa: F401  (autouse)
from tests.chat.test_consumer import closed_with, connect, refused

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


# A password change, by any route (contract: "Limits") ---------------------------------

NEW_PASSWORD = "a-long-new-password-17"


def _by_the_form(user: User, admin: User) -> None:
    client = Client()
    # As stored now: a session carries a hash of the password (the login rehashed).
    client.force_login(User.objects.get(pk=user.pk))
    body = {
        "old_password": f"{user.username}-pass",
        "new_password1": NEW_PASSWORD,
        "new_password2": NEW_PASSWORD,
    }
    response = client.post("/accounts/password_change/", body)
    assert response["Location"] == "/accounts/password_change/done/"


def _in_the_admin(user: User, admin: User) -> None:
    client = Client()
    client.force_login(admin)
    body = {
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "usable_password": "true",
    }
    response = client.post(f"/admin/chat/user/{user.pk}/password/", body)
    assert response["Location"] == f"/admin/chat/user/{user.pk}/change/"


def _in_a_shell(user: User, admin: User) -> None:
    user = User.objects.get(pk=user.pk)
    user.set_password(NEW_PASSWORD)
    user.save()


@pytest.mark.parametrize("change", [_by_the_form, _in_the_admin, _in_a_shell])
def test_a_password_change_revokes_tokens_and_closes_sockets(
    alice: User, room: Room, admin_user: User, change
) -> None:
    key = _login()
    headers = [(b"authorization", f"Token {key}".encode())]

    async def scenario() -> int | None:
        ws, _ = await connect(headers)
        await database_sync_to_async(change)(alice, admin_user)
        return await closed_with(ws, timeout=2)

    assert asyncio.run(scenario()) == 4403
    assert _with(key).get("/api/rooms").status_code == 401
    assert asyncio.run(refused(headers)) == 4401
    assert _with(_login_with(NEW_PASSWORD)).get("/api/rooms").status_code == 200


def _login_with(password: str) -> str:
    body = {"username": "alice", "password": password}
    response = APIClient().post("/api/auth/token", body, format="json")
    assert response.status_code == 200, response.content
    return str(response.json()["token"])


def test_other_saves_of_the_user_keep_tokens(alice: User, settings) -> None:
    # A login rehashes an outdated hash (the test users' hash has few iterations,
    # Django's hasher wants more) and saves last_login; a profile edit saves the
    # row: none changes the password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    kept = _login()
    _login()
    user = User.objects.get(pk=alice.pk)
    assert user.password != alice.password  # rehashed
    user.email = "alice@example.com"
    user.save()
    assert _with(kept).get("/api/rooms").status_code == 200


@pytest.mark.parametrize("how", ["a hash assigned", "an unusable password"])
def test_a_hash_set_in_a_shell_without_set_password_also_revokes(
    alice: User, how: str
) -> None:
    from django.contrib.auth.hashers import make_password

    key = _login()
    user = User.objects.get(pk=alice.pk)
    if how == "a hash assigned":
        user.password = make_password(NEW_PASSWORD)
    else:
        user.set_unusable_password()
    user.save()
    assert _with(key).get("/api/rooms").status_code == 401
