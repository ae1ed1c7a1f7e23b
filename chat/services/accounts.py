"""Accounts: what a password change undoes (contract: "Limits")."""

from django.contrib.auth.hashers import get_hasher, identify_hasher

from chat.models import Membership, User
from chat.realtime import member_evict

from .tokens import token_revoke


def password_replaced(*, user: User, stored: str) -> bool:
    """Whether saving `user` replaces the password whose hash is `stored`.

    `set_password()` keeps the raw password in `_password` until `save()`: a new
    password (the forms, the admin, a shell), even the same one again. Without it a
    new hash is either one assigned directly, or Django's upgrade of an outdated hash
    at login (`check_password` clears `_password` so that "hash upgrades shouldn't be
    considered password changes"), told apart by the stored hash being outdated.
    """
    if user.password == stored:
        return False
    if getattr(user, "_password", None) is not None or not user.has_usable_password():
        return True
    try:
        old = identify_hasher(stored)
    except ValueError:
        return True
    preferred = get_hasher()
    outdated = old.algorithm != preferred.algorithm or preferred.must_update(stored)
    return not outdated


def password_changed(*, user: User) -> int:
    """After `user`'s password changed or was reset, by whatever route: their API
    tokens are revoked, and their open sockets closed on every web process (the
    eviction a removed member gets, in each of their rooms); how many tokens went.

    Sessions need nothing here: Django's session carries a hash of the password,
    and a session with another one is signed out (the form keeps the changer's own).
    """
    revoked = token_revoke(user=user, token=None)
    for room_id in Membership.objects.filter(user_id=user.pk).values_list(
        "room_id", flat=True
    ):
        member_evict(room_id=room_id, user_id=user.pk)
    return revoked
