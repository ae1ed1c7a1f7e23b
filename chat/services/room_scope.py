"""Actions and requests addressed through a room, as the room's socket does: the
services the REST API calls, with an id from another room answered as missing."""

from typing import Any

from chat.errors import NotFound
from chat.models import Action, Request, Room, User

from .access import id_or_none
from .actions import action_decide, action_retract
from .decide_all import DecidedAll, request_decide_all
from .requests import request_cancel


def action_decide_in_room(
    *,
    room: Room,
    action_id: str,
    user: User,
    decision: str,
    reason: str = "",
    arguments: dict[str, Any] | None = None,
    grant: object = None,
) -> Action:
    """`action_decide` on an action of `room`, voted from the room."""
    _check_action_in_room(room=room, action_id=action_id)
    return action_decide(
        action_id=action_id,
        user=user,
        decision=decision,
        reason=reason,
        arguments=arguments,
        via=Action.Via.ROOM,
        grant=grant,
    )


def action_retract_in_room(
    *, room: Room, action_id: str, user: User, reason: str = ""
) -> Action:
    """`action_retract` on an action of `room`, from the room."""
    _check_action_in_room(room=room, action_id=action_id)
    return action_retract(
        action_id=action_id, user=user, reason=reason, via=Action.Via.ROOM
    )


def request_cancel_in_room(*, room: Room, request_id: str, user: User) -> Request:
    """`request_cancel` on a request of `room`."""
    # pk=None (a malformed id) matches no row; the stubs refuse None.
    pk = id_or_none(request_id)
    if not Request.objects.filter(pk=pk, room=room).exists():  # type: ignore[misc]
        raise NotFound("No such request in this room.")
    return request_cancel(request_id=request_id, user=user, via=Action.Via.ROOM)


def request_decide_all_in_room(
    *, room: Room, request_id: str, user: User, decision: str, reason: str = ""
) -> DecidedAll:
    """`request_decide_all` on a request of `room`, voted from the room."""
    pk = id_or_none(request_id)
    if not Request.objects.filter(pk=pk, room=room).exists():  # type: ignore[misc]
        raise NotFound("No such request in this room.")
    return request_decide_all(
        request_id=request_id,
        user=user,
        decision=decision,
        reason=reason,
        via=Action.Via.ROOM,
    )


def _check_action_in_room(*, room: Room, action_id: str) -> None:
    # pk=None (a malformed id) matches no row; the stubs refuse None.
    pk = id_or_none(action_id)
    if not Action.objects.filter(pk=pk, room=room).exists():  # type: ignore[misc]
        raise NotFound("No such action in this room.")
