"""The admin decides through the same votes as every interface, under the rule."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chat.models import Action, Membership, PolicyRule, Room, User
from tests.chat.test_admin import CHANGELIST, change_url, client_for, staff, texts
from tests.chat.test_policies import propose, rule
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture
def olga(room: Room) -> User:
    """Staff with the admin's view of actions, an approver of the room."""
    user = staff("olga", "view_action")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


def bulk_approve(user: User, *actions: Action):
    return client_for(user).post(
        CHANGELIST,
        {
            "action": "approve_selected",
            "_selected_action": [a.pk for a in actions],
            "index": 0,
            "post": "yes",  # past the confirmation page
        },
        follow=True,
    )


def test_bulk_approve_is_one_vote_under_a_two_approval_rule(room, bob, olga) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)

    messages = texts(bulk_approve(olga, action))

    action.refresh_from_db()
    assert action.status == "pending"
    assert [v.user.username for v in action.votes.all()] == ["olga"]
    assert any("1 of 2 approvals" in m for m in messages), messages


def test_bulk_approve_refuses_the_row_where_the_staff_user_may_not_vote(
    room, olga
) -> None:
    rule(room, tool="delete_issue", requester_may_approve=False)
    theirs = propose(room, olga)  # olga asked for it herself
    others = propose(room, _member(room, "pete"))

    messages = texts(bulk_approve(olga, theirs, others))

    theirs.refresh_from_db()
    others.refresh_from_db()
    assert (theirs.status, others.status) == ("pending", "approved")
    assert any("not allowed" in m and "other than the requester" in m for m in messages)


def test_change_page_lists_the_votes_and_the_rule(room, bob, alice, olga) -> None:
    rule(room, tool="delete_issue", approvals_required=2)
    action = propose(room, bob)
    client_for(olga).post(reverse("admin:chat_action_approve", args=[action.pk]))

    html = client_for(olga).get(change_url(action)).content.decode()

    assert 'class="chat-votes"' in html and "olga" in html
    assert "2 approval(s) from the room&#x27;s approvers" in html


def test_the_room_admin_edits_rules_validated_like_the_api(room) -> None:
    root = User.objects.create_superuser("root", "root@example.com", "x")
    url = reverse("admin:chat_room_change", args=[room.pk])
    form = {
        "slug": room.slug,
        "name": room.name,
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "policy_rules-TOTAL_FORMS": 1,
        "policy_rules-INITIAL_FORMS": 0,
        "policy_rules-0-tool": "drop_database",
        "policy_rules-0-arguments": "{}",
        "policy_rules-0-mode": "ask",
        "policy_rules-0-approvals_required": 1,
        "policy_rules-0-approvers": "[]",
        "policy_rules-0-requester_may_approve": "on",
        "policy_rules-0-delay": 0,
    }
    refused = client_for(root).post(url, form)
    assert refused.status_code == 200
    assert "unknown tool" in refused.content.decode()
    assert not PolicyRule.objects.exists()

    form["policy_rules-0-tool"] = "delete_issue"
    form["policy_rules-0-approvals_required"] = 2
    saved = client_for(root).post(url, form)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert PolicyRule.objects.get(room=room).approvals_required == 2


def _member(room: Room, name: str) -> User:
    user = _user(name)
    Membership.objects.create(room=room, user=user, role=Membership.Role.MEMBER)
    return user
