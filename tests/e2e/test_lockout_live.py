"""The lockout through a real web process: uvicorn must not take the client's
X-Forwarded-For as its address either (the Procfile's --no-proxy-headers)."""

import pytest
import requests

from tests.chat.test_api import forget_throttle_counts  # noqa: F401  (autouse)

pytestmark = pytest.mark.e2e


def test_rotating_forwarded_for_does_not_escape_the_lockout(stack, alice):
    web = stack.web(LOGIN_FAILURE_LIMIT="3", API_THROTTLE_ANON="1000/min")

    def token(password: str, n: int) -> requests.Response:
        return requests.post(
            f"{web}/api/auth/token",
            json={"username": "alice", "password": password},
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
            timeout=10,
        )

    assert [token("wrong", n).status_code for n in range(3)] == [400, 400, 400]
    refused = token("alice-pass", 99)
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.json()["detail"]
