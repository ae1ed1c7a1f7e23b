"""Named people and a room: alice approves, bob is a member, mallory is outside."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # loaded as a plugin before Django is set up: import models lazily
    from django.contrib.auth.models import User

    from chat.models import Room


def _user(username: str) -> User:
    from django.contrib.auth.models import User

    return User.objects.create_user(username=username, password=f"{username}-pass")


@pytest.fixture
def alice(db) -> User:
    return _user("alice")


@pytest.fixture
def bob(db) -> User:
    return _user("bob")


@pytest.fixture
def mallory(db) -> User:
    return _user("mallory")


@pytest.fixture
def staff_decider(db) -> User:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username="sam", password="sam-pass", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="decide_action"))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def room(alice: User, bob: User) -> Room:
    from chat import services
    from chat.models import Membership

    room = services.room_create(user=alice, name="Triage", slug="triage")
    services.member_add(
        room=room, actor=alice, username="bob", role=Membership.Role.MEMBER
    )
    return room


def token_for(user: User) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key
