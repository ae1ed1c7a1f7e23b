"""Contract "Limits": repeated failed logins are refused for a while, whatever
X-Forwarded-For says; proxies are trusted only as configured (TRUSTED_PROXIES)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from tests.chat.test_api import forget_throttle_counts  # noqa: F401  (autouse)

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
