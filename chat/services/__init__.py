"""The write path: every change to rooms, requests, actions and messages.

The REST views, the WebSocket consumer, the admin and the worker all call these
functions, so each rule (who may decide, the first decision wins, what a cancel
stops, who holds a step's lease) is written once. Every write of a request, its
actions or its messages holds the request's row lock, taken by `locks.request_lock`;
lock order, to keep PostgreSQL free of deadlocks: request row, then action rows,
then the room row (taken by `event_emit`).

A service says in its own body what its change announces: the room's event
(`action_emit`, `request_emit`, `message_emit`: one stored event each, published
after the commit) and, where approvers outside the room hear of it, the outbox rows
(`action_notify`, `request_notify`), written in the same transaction and sent after
it. The payloads are the domain's (chat.payloads); nothing here imports the API.
"""

from chat.errors import Conflict, Forbidden, Invalid, NotFound

from .access import (
    can_create_room,
    can_decide,
    can_see,
    id_or_none,
    is_active_member,
    room_get_for_member,
    room_role,
)
from .actions import (
    action_decide,
    action_expire_overdue,
    action_get,
    action_grant,
    action_list,
    action_retract,
)
from .bots import room_bot
from .decide_all import DecidedAll, request_decide_all
from .escalation import action_escalate, action_escalate_due
from .events import (
    action_emit,
    message_emit,
    request_emit,
    tool_result_content,
    tool_result_emit,
)
from .execution import (
    action_abandon,
    action_claim,
    action_finish,
    action_gave_up,
    action_release,
    action_renew,
    action_sending,
)
from .grants import policy_expire, policy_expire_due
from .locks import action_lock, request_lock
from .notify import (
    action_notify,
    action_remind_due,
    deliveries_lost,
    delivery_claim,
    delivery_record,
    delivery_resend,
    request_notify,
)
from .policies import (
    policy_changed,
    policy_create,
    policy_delete,
    policy_deleted,
    policy_list,
    policy_names_target,
    policy_update,
    rule_clean,
    rule_resolve,
)
from .requests import (
    request_advance,
    request_cancel,
    request_finish,
    request_get,
    request_start,
    request_start_triggered,
)
from .room_scope import (
    action_decide_in_room,
    action_retract_in_room,
    request_cancel_in_room,
    request_decide_all_in_room,
)
from .rooms import (
    LAST_APPROVER,
    member_add,
    member_changed,
    member_left,
    member_remove,
    packs_clean,
    room_create,
    room_keeps_an_approver,
    room_update,
    user_deactivated,
    user_saved,
)
from .schedules import (
    schedule_create,
    schedule_delete,
    schedule_get,
    schedule_list,
    schedule_update,
    schedules_disable,
    schedules_fire,
)
from .sweep import sweep
from .tokens import token_authenticate, token_issue, token_revoke
from .tools import mcp_listing_store, mcp_pin_accept, request_notice
from .triggers import (
    trigger_create,
    trigger_delete,
    trigger_deliver,
    trigger_deliveries_forget,
    trigger_get,
    trigger_list,
    trigger_update,
    triggers_disable,
)
from .turns import (
    calls_within_cap,
    step_claim,
    step_end,
    step_gave_up,
    step_record,
    step_release,
    step_renew,
)
from .votes import votes_drop_stale
from .webhooks import webhook_create, webhook_delete, webhook_list, webhook_rotate

__all__ = [
    "LAST_APPROVER",
    "DecidedAll",
    "action_escalate",
    "action_escalate_due",
    "action_grant",
    "policy_changed",
    "policy_deleted",
    "policy_expire",
    "policy_expire_due",
    "request_decide_all",
    "mcp_listing_store",
    "mcp_pin_accept",
    "request_notice",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "action_abandon",
    "action_claim",
    "action_decide",
    "action_decide_in_room",
    "action_emit",
    "action_expire_overdue",
    "action_finish",
    "action_gave_up",
    "action_get",
    "action_list",
    "action_lock",
    "action_notify",
    "action_release",
    "action_sending",
    "action_remind_due",
    "action_retract",
    "action_retract_in_room",
    "action_renew",
    "calls_within_cap",
    "can_create_room",
    "can_decide",
    "can_see",
    "deliveries_lost",
    "delivery_claim",
    "delivery_record",
    "delivery_resend",
    "id_or_none",
    "is_active_member",
    "member_add",
    "member_changed",
    "member_left",
    "member_remove",
    "message_emit",
    "packs_clean",
    "policy_create",
    "policy_delete",
    "policy_list",
    "policy_names_target",
    "policy_update",
    "request_advance",
    "request_cancel",
    "request_cancel_in_room",
    "request_decide_all_in_room",
    "request_emit",
    "request_finish",
    "request_get",
    "request_lock",
    "request_notify",
    "request_start",
    "request_start_triggered",
    "room_bot",
    "room_create",
    "room_get_for_member",
    "room_keeps_an_approver",
    "room_role",
    "room_update",
    "rule_clean",
    "rule_resolve",
    "step_claim",
    "step_end",
    "step_gave_up",
    "step_record",
    "step_release",
    "step_renew",
    "schedule_create",
    "schedule_delete",
    "schedule_get",
    "schedule_list",
    "schedule_update",
    "schedules_disable",
    "schedules_fire",
    "sweep",
    "token_authenticate",
    "token_issue",
    "token_revoke",
    "tool_result_content",
    "trigger_create",
    "trigger_deliver",
    "trigger_deliveries_forget",
    "trigger_delete",
    "trigger_get",
    "trigger_list",
    "trigger_update",
    "triggers_disable",
    "tool_result_emit",
    "webhook_create",
    "webhook_delete",
    "webhook_list",
    "webhook_rotate",
    "user_deactivated",
    "user_saved",
    "votes_drop_stale",
]
