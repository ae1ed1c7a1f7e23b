"""Named people and a room: alice approves, bob is a member, mallory is outside."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # loaded as a plugin before Django is set up: import models lazily
    from chat.models import Room, User


_HASHES: dict[str, str] = {}


def _user(username: str) -> User:
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from chat.models import User

    # Hashing is slow on purpose; hash each test password once per session, with
    # the hasher the web processes verify logins with (whatever a test overrides).
    password = f"{username}-pass"
    if password not in _HASHES:
        # Few iterations: the hash says how many, so every process verifies it fast.
        hasher = PBKDF2PasswordHasher()
        _HASHES[password] = hasher.encode(password, hasher.salt(), iterations=1000)
    return User.objects.create(username=username, password=_HASHES[password])


def _may_create_rooms(user: User) -> User:
    from django.contrib.auth.models import Permission

    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="chat", codename="add_room")
    )
    return user


@pytest.fixture
def alice(db) -> User:
    return _may_create_rooms(_user("alice"))


@pytest.fixture
def bob(db) -> User:
    return _may_create_rooms(_user("bob"))


@pytest.fixture
def mallory(db) -> User:
    return _user("mallory")


@pytest.fixture
def staff_decider(db) -> User:
    from django.contrib.auth.models import Permission

    from chat.models import User

    user = _user("sam")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
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
    from chat.services import token_issue

    return token_issue(user=user)[1]
