"""The admin's webhook page never shows a secret, the one replaced by a rotation
included."""

from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
)
from tests.chat.test_webhooks import _hook, allow_private

__all__ = ["allow_private"]


def test_the_admin_shows_neither_the_secret_nor_the_previous_one(
    room, alice, allow_private, admin_client
):
    hook = _hook(room, alice, "http://127.0.0.1:9/hook")
    rotated = api(alice).post(
        f"/api/rooms/{room.slug}/webhooks/{hook['id']}/rotate", {}, format="json"
    )
    assert rotated.status_code == 200
    page = admin_client.get(f"/admin/chat/webhook/{hook['id']}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "http://127.0.0.1:9/hook" in text
    assert hook["secret"] not in text and rotated.json()["secret"] not in text
    assert "Previous secret until" in text
