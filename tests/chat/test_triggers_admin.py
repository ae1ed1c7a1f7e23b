"""Contract "Pages and admin": triggers listed at /admin/chat/trigger/ with their
counters, an action that disables the selected ones, and never a secret."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Trigger, User
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    fast_password_hashing,
    forget_throttle_counts,
)

pytestmark = pytest.mark.django_db


def _trigger(alice: User, name: str) -> Trigger:
    return services.trigger_create(
        room_slug="triage",
        user=alice,
        data={"source": "github", "prompt": "{{ issue.title }}", "name": name},
    )


def test_the_list_shows_the_columns_and_no_secret(alice: User, room, admin_client):
    trigger = _trigger(alice, "Repo issues")
    page = admin_client.get("/admin/chat/trigger/")
    assert page.status_code == 200
    text = page.content.decode()
    for heading in ["Room", "Source", "Name", "Enabled", "Last fired", "Fired"]:
        assert heading in text
    assert "Repo issues" in text and "Triage" in text
    assert trigger.secret not in text
    change = admin_client.get(f"/admin/chat/trigger/{trigger.pk}/change/")
    assert change.status_code == 200
    assert trigger.secret not in change.content.decode()


def test_the_disable_action_disables_the_selected_ones(alice: User, room, admin_client):
    one = _trigger(alice, "one")
    _trigger(alice, "two")
    response = admin_client.post(
        "/admin/chat/trigger/",
        {"action": "disable", "_selected_action": [one.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 disabled." in response.content.decode()
    assert dict(Trigger.objects.values_list("name", "enabled")) == {
        "one": False,
        "two": True,
    }
