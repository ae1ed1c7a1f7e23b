"""Contract "Limits": repeated failed logins are refused for a while, whatever
X-Forwarded-For says; proxies are trusted only as configured (TRUSTED_PROXIES)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from chat.models import User
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    fast_password_hashing,
    forget_throttle_counts,
)

LIMIT = 3


@pytest.fixture(autouse=True)
def small_limit(settings) -> None:
    settings.LOGIN_FAILURE_LIMIT = LIMIT


def _token(password: str, **headers: str):
    body = {"username": "alice", "password": password}
    return APIClient().post("/api/auth/token", body, format="json", **headers)


def _form(path: str, password: str, **headers: str):
    body = {"username": "alice", "password": password}
    return Client().post(path, body, **headers)


@pytest.mark.django_db
def test_token_endpoint_locks_out_even_with_a_new_forwarded_for(alice: User) -> None:
    for n in range(LIMIT):
        response = _token("wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        assert response.status_code == 400
    refused = _token("alice-pass", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.json()["detail"]
    assert "token" not in refused.json()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_forms_lock_out(alice: User, path: str) -> None:
    for n in range(LIMIT):
        assert (
            _form(path, "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code == 200
        )
    assert _form(path, "alice-pass").status_code == 429
    # Another user from another address is not locked out by alice's.
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert other.get(path).status_code == 200


@pytest.mark.django_db
def test_a_trusted_proxy_hands_the_client_address_over(alice: User, settings) -> None:
    settings.TRUSTED_PROXIES = 1
    for _ in range(LIMIT):
        _token("wrong", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert _token("alice-pass", HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    # A client behind the same proxy, at another address, still logs in.
    assert _token("alice-pass", HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 200
    # The client's own claim sits left of what the proxy appended: not trusted.
    spoofed = "203.0.113.6, 203.0.113.5"
    assert _token("alice-pass", HTTP_X_FORWARDED_FOR=spoofed).status_code == 429


def test_drf_counts_no_client_sent_proxy_hops(settings) -> None:
    from rest_framework.settings import api_settings

    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0
    assert api_settings.NUM_PROXIES == 0


@pytest.mark.django_db
def test_an_ipv6_client_is_locked_out_by_its_64(alice: User) -> None:
    # One subscriber holds the whole /64: a new address in it is the same client.
    for n in range(LIMIT):
        client = Client(REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}")
        assert client.post("/accounts/login/", _body("wrong")).status_code == 200
    same_64 = Client(REMOTE_ADDR="2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert same_64.post("/accounts/login/", _body("alice-pass")).status_code == 429
    other_64 = Client(REMOTE_ADDR="2001:db8:1:3::1")
    assert other_64.post("/accounts/login/", _body("alice-pass")).status_code == 302


@pytest.mark.django_db
def test_every_spelling_of_a_username_counts_toward_one_lockout(alice: User) -> None:
    # Fullwidth letters and upper case name the same user: NFKC, case folded.
    for name in ("ａｌｉｃｅ", "ALICE", "Ａlice")[:LIMIT]:
        body = {"username": name, "password": "wrong"}
        response = APIClient().post("/api/auth/token", body, format="json")
        assert response.status_code == 400
    assert _token("alice-pass").status_code == 429


def _body(password: str) -> dict[str, str]:
    return {"username": "alice", "password": password}


def _change(client: Client, path: str, old: str) -> int:
    new = "a-long-new-password-17"
    body = {"old_password": old, "new_password1": new, "new_password2": new}
    return client.post(path, body).status_code


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/accounts/password_change/", "/admin/password_change/"]
)
def test_password_change_is_under_the_lockout(admin_user: User, path: str) -> None:
    client = Client()
    client.force_login(admin_user)
    for _ in range(LIMIT):
        assert _change(client, path, "wrong") == 200
    # Guessing the old password with a stolen session ends like guessing at login.
    assert _change(client, path, "password") == 429
    admin_user.refresh_from_db()
    assert admin_user.check_password("password")


@pytest.mark.django_db
def test_password_reset_is_throttled(alice: User, settings) -> None:
    from django.core import mail

    settings.EMAIL_HOST = "127.0.0.1"  # the test run's mail backend keeps the mails
    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    body = {"email": "alice@example.com"}
    for _ in range(LIMIT):
        assert Client().post("/accounts/password_reset/", body).status_code == 302
    refused = Client().post("/accounts/password_reset/", body)
    assert refused.status_code == 429
    assert len(mail.outbox) == LIMIT


@pytest.mark.django_db
def test_password_reset_is_not_offered_without_a_mail_server(settings) -> None:
    # The console backend would print the reset link into the web process's log.
    settings.EMAIL_HOST = ""
    assert Client().get("/accounts/password_reset/").status_code == 404
    settings.EMAIL_HOST = "127.0.0.1"
    assert Client().get("/accounts/password_reset/").status_code == 200
