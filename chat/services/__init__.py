"""The write path: every change to rooms, requests and actions goes through here.

The REST views, the WebSocket consumer, the admin and the worker all call these
functions, so each rule (who may decide, the first decision wins, what a cancel
stops) is written once. Lock order, to keep PostgreSQL free of deadlocks:
request row, then action rows, then the room row (taken by `event_emit`).
"""

from chat.errors import Conflict, Forbidden, Invalid, NotFound

from .access import can_decide, can_see, id_or_none, room_get_for_member, room_role
from .actions import (
    action_decide,
    action_expire_overdue,
    action_get,
    action_list,
)
from .events import (
    action_emit,
    enqueue_action,
    enqueue_step,
    message_emit,
    request_emit,
    tool_result_content,
    tool_result_emit,
)
from .requests import (
    request_advance,
    request_cancel,
    request_finish,
    request_get,
    request_start,
)
from .rooms import member_add, room_create

__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "action_decide",
    "action_emit",
    "action_expire_overdue",
    "action_get",
    "action_list",
    "can_decide",
    "can_see",
    "enqueue_action",
    "enqueue_step",
    "id_or_none",
    "member_add",
    "message_emit",
    "request_advance",
    "request_cancel",
    "request_emit",
    "request_finish",
    "request_get",
    "request_start",
    "room_create",
    "room_get_for_member",
    "room_role",
    "tool_result_content",
    "tool_result_emit",
]
