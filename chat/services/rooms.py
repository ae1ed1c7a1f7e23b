"""Rooms and who is in them."""

import secrets
from collections.abc import Collection

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from chat.errors import Conflict, Forbidden, Invalid, NotFound
from chat.models import Action, Membership, Room, User
from chat.realtime import member_evict
from chat.text import single_line, storable
from chat.tools import packs_available

from .access import room_role
from .audit import audit_write
from .votes import votes_drop_stale_on_commit


def room_name_clean(name: str) -> str:
    """A room's name as stored; Invalid unless 1 to 120 characters on one line."""
    name = name.strip()
    if not name or len(name) > 120 or not storable(name):
        raise Invalid("A room needs a name of 1 to 120 characters.")
    if not single_line(name):
        # A newline in a name ends up in mail headers (BadHeaderError) and logs.
        raise Invalid("A room's name is one line, without control characters.")
    return name


def room_create(
    *, user: User, name: str, slug: str = "", via: str = Action.Via.API
) -> Room:
    """Create a room; its creator is its first approver."""
    name = room_name_clean(name)
    if not storable(slug):
        raise Invalid("The slug must contain letters or digits.")
    if slug and not slugify(slug):
        raise Invalid("The slug must contain letters or digits.")
    # A name in another script (or of symbols only) slugifies to nothing: such a
    # room still gets an address.
    slug = slugify(slug or name)[:60].strip("-_") or f"room-{secrets.token_hex(4)}"
    with transaction.atomic():
        if Room.objects.filter(slug=slug).exists():
            raise Conflict(f"A room with the slug {slug!r} already exists.")
        room = Room.objects.create(slug=slug, name=name, created_by=user)
        membership = Membership.objects.create(
            room=room, user=user, role=Membership.Role.APPROVER
        )
        member_audit(membership, kind="member.added", actor=user, via=via)
    return room


def room_update(
    *,
    room: Room,
    actor: User,
    linear_teams: list[str] | None = None,
    packs: list[str] | None = None,
) -> Room:
    """Set what the room's agent may touch, the Linear teams and the tool packs;
    approvers only. An empty list allows every team, every pack configured."""
    if room_role(room=room, user=actor) != Membership.Role.APPROVER:
        raise Forbidden("Only approvers of this room may change it.")
    changed = []
    if linear_teams is not None:
        teams = [t.strip() for t in linear_teams]
        if any(
            not t or len(t) > 60 or not storable(t) or not single_line(t) for t in teams
        ):
            raise Invalid(
                "linear_teams must be team keys of 1 to 60 characters, one line."
            )
        room.linear_teams = list(dict.fromkeys(teams))
        changed.append("linear_teams")
    if packs is not None:
        room.packs = packs_clean(packs)
        changed.append("packs")
    if changed:
        room.save(update_fields=changed)
    return room


def packs_clean(packs: object) -> list[str]:
    """The packs a room names, checked against those configured, without repeats."""
    if not isinstance(packs, list) or not all(isinstance(p, str) for p in packs):
        raise Invalid("packs: a list of pack names.")
    valid = packs_available()
    unknown = [p for p in dict.fromkeys(packs) if p not in valid]
    if unknown:
        raise Invalid(
            f"packs: unknown pack(s) {', '.join(map(repr, unknown))}; "
            f"the packs here are {', '.join(valid)}."
        )
    return list(dict.fromkeys(packs))


def member_add(
    *, room: Room, actor: User, username: str, role: str, via: str = Action.Via.API
) -> Membership:
    """Add someone to a room, or change their role; approvers only."""
    if room_role(room=room, user=actor) != Membership.Role.APPROVER:
        raise Forbidden("Only approvers of this room may add members.")
    if role not in Membership.Role.values:
        raise Invalid(f"role must be one of {', '.join(Membership.Role.values)}.")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        # 404 like any other thing that is not there (the body is well formed).
        raise NotFound(f"There is no user {username!r}.")
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            room=room, user=user, defaults={"role": role}
        )
        if created:
            member_audit(membership, kind="member.added", actor=actor, via=via)
        if not created and membership.role != role:
            if membership.role == Membership.Role.APPROVER:
                room_keeps_an_approver(room=room, leaving={user.pk})
            membership.role = role
            membership.save(update_fields=["role"])
            member_audit(membership, kind="member.role", actor=actor, via=via)
            member_changed(membership)
    return membership


def member_remove(
    *, room: Room, actor: User, username: str, via: str = Action.Via.API
) -> None:
    """Take someone out of a room; approvers only. Their open sockets close."""
    if room_role(room=room, user=actor) != Membership.Role.APPROVER:
        raise Forbidden("Only approvers of this room may remove members.")
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update()
            .filter(room=room, user__username=username)
            .first()
        )
        if membership is None:
            raise NotFound(f"{username!r} is not in this room.")
        if membership.role == Membership.Role.APPROVER:
            room_keeps_an_approver(room=room, leaving={membership.user_id})
        membership.delete()
        member_audit(membership, kind="member.removed", actor=actor, via=via)
        member_changed(membership)


def member_audit(
    membership: Membership, *, kind: str, actor: User | str, via: str
) -> None:
    """The audit record of a membership change (inside its transaction), by any
    route: the API, the room page, the admin."""
    audit_write(
        room=membership.room_id,
        kind=kind,
        actor=actor,
        via=via,
        data={"username": membership.user.get_username(), "role": membership.role},
    )


def member_changed(membership: Membership) -> None:
    """After a membership's deletion or role change (the API's, the admin's)."""
    member_left(room_id=membership.room_id, user_id=membership.user_id)


def member_left(*, room_id: int, user_id: int) -> None:
    """After `user_id` left a room or changed role there, by any route: close their
    sockets in the room on every web process (they reconnect under the new role, or
    get 4404), and, once the change commits, drop their votes on the room's pending
    actions that they may no longer vote on."""
    member_evict(room_id=room_id, user_id=user_id)
    votes_drop_stale_on_commit(user_ids=[user_id], room_id=room_id)


def user_deactivated(user: User) -> None:
    """Close a deactivated user's sockets in every room they are in, and drop their
    votes on pending actions (an inactive account may not vote)."""
    for room_id in Membership.objects.filter(user=user).values_list(
        "room_id", flat=True
    ):
        member_evict(room_id=room_id, user_id=user.pk)
    votes_drop_stale_on_commit(user_ids=[user.pk])


def user_saved(user: User) -> None:
    """After any save of a user (a form, the admin, `save()` in a shell): a
    deactivated one is handled as `user_deactivated` says; anyone else may have
    lost a say (superuser status), so their stale votes are dropped too."""
    if not user.is_active:
        user_deactivated(user)
    else:
        votes_drop_stale_on_commit(user_ids=[user.pk])


LAST_APPROVER = (
    "A room keeps at least one approver: make someone else an approver first."
)


def room_keeps_an_approver(
    *, room: Room, leaving: Collection[int], joining: Collection[int] = ()
) -> None:
    """Refuse (409) a change after which the room would have no approver.

    `leaving` are the users (ids) who stop being approvers (demoted or removed),
    `joining` those who become approvers in the same change. Call it inside the
    transaction that makes the change: the room's row lock makes two approvers who
    demote each other at once take turns, so the second sees the first's change.
    """
    if joining:
        return
    with transaction.atomic():
        Room.objects.select_for_update().filter(pk=room.pk).first()
        approvers = Membership.objects.filter(room=room, role=Membership.Role.APPROVER)
        if not approvers.exclude(user_id__in=leaving).exists():
            raise Conflict(LAST_APPROVER)
