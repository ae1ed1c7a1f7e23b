"""Who may see and do what in a room."""

import uuid

from chat.errors import Forbidden, NotFound
from chat.models import Membership, Room, User


def room_role(*, room: Room, user: User) -> str | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(room=room, user=user)
        .values_list("role", flat=True)
        .first()
    )


def room_get_for_member(*, slug: str, user: User) -> Room:
    """The room if `user` belongs to it; outsiders cannot tell it from a missing one."""
    room = (
        Room.objects.filter(slug=slug, memberships__user=user).first()
        if user.is_authenticated
        else None
    )
    if room is None:
        raise NotFound("No such room.")
    return room


def is_active_member(*, room: Room, user: User) -> bool:
    """Whether `user` is still in `room` and still active (a socket outlives both)."""
    return Membership.objects.filter(
        room=room, user=user, user__is_active=True
    ).exists()


def can_create_room(*, user: User) -> bool:
    # Whoever creates a room approves in it; a permission keeps that to trusted users.
    return user.has_perm("chat.add_room")


def can_decide(*, room: Room, user: User) -> bool:
    """Authority over the room (cancel any request, change its policy, webhooks).
    Not who may vote on an action: that is `chat.eligibility`, under its rule."""
    if user.has_perm("chat.decide_action"):
        return True
    return room_role(room=room, user=user) == Membership.Role.APPROVER


def can_see(*, room: Room, user: User) -> bool:
    return room_role(room=room, user=user) is not None or user.has_perm(
        "chat.decide_action"
    )


def id_or_none(value: object) -> uuid.UUID | None:
    """A request or action id as given by a client; None when it cannot be one."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def room_get_for_approver(*, slug: str, user: User, what: str) -> Room:
    """The room, for what only its approvers and holders of `chat.decide_action`
    may manage or read (`what`: "manage its triggers", ...): members 403; outsiders
    and unknown rooms 404, which they cannot tell apart."""
    room = Room.objects.filter(slug=slug).first() if user.is_authenticated else None
    if room is None:
        raise NotFound("No such room.")
    if user.has_perm("chat.decide_action"):
        return room
    # can_see and can_decide in one read of the role.
    role = room_role(room=room, user=user)
    if role is None:
        raise NotFound("No such room.")
    if role != Membership.Role.APPROVER:
        raise Forbidden(f"Only approvers of this room may {what}.")
    return room
