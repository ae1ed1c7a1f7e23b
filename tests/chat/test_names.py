"""Contract "Limits": room names and other single-line names carry no control
characters (400 over REST, a form error in the admin)."""

from __future__ import annotations

import pytest
from django.test import Client

from chat.models import Room, User
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    refusal,
)

pytestmark = pytest.mark.django_db

BAD_NAMES = [
    "Tri\nage",
    "Tri\rage",
    "Tri\tage",
    "Tri\x1bage",
    "Tri\x85age",
    "Tri\u2028age",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_room_name_with_a_control_character_gets_400(alice: User, name: str):
    response = api(alice).post("/api/rooms", {"name": name}, format="json")
    assert "one line" in refusal(response, 400).lower()
    assert not Room.objects.exists()


def test_a_room_name_with_spaces_and_other_scripts_is_fine(alice: User):
    response = api(alice).post("/api/rooms", {"name": "Équipe · 試験"}, format="json")
    assert response.status_code == 201, response.content


def test_the_admin_refuses_a_room_name_with_a_newline(admin_user: User):
    client = Client()
    client.force_login(admin_user)
    body = {
        "name": "Tri\nage",
        "slug": "triage",
        "linear_teams": "[]",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "policy_rules-TOTAL_FORMS": "0",
        "policy_rules-INITIAL_FORMS": "0",
    }
    response = client.post("/admin/chat/room/add/", body)
    assert response.status_code == 200
    assert "one line" in response.content.decode()
    assert not Room.objects.exists()
    # The same form with a one-line name saves.
    saved = client.post("/admin/chat/room/add/", {**body, "name": "Triage"})
    assert saved.status_code == 302
    assert Room.objects.get().name == "Triage"


def test_a_team_key_with_a_newline_gets_400(alice: User, room: Room):
    response = api(alice).patch(
        f"/api/rooms/{room.slug}", {"linear_teams": ["ENG\nX"]}, format="json"
    )
    refusal(response, 400)


def test_mail_for_a_room_named_before_the_rule_goes_out_on_one_line(
    room: Room, alice: User, bob: User, smtp, django_capture_on_commit_callbacks
):
    from tests.chat.test_notify import _becomes_pending, _send_all

    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    Room.objects.filter(pk=room.pk).update(name="Tri\nage")
    room.refresh_from_db()  # the action is made with this object, as its room
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    [mail] = smtp.mails
    assert "Subject: [Tri age] delete_issue waits" in mail.content.decode()
