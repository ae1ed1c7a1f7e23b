"""What the room hears of a change: durable events, and tool results for the model.

Each `*_emit` stores one room event (published after the commit) and returns its
payload, built by the domain (chat.payloads). It announces nothing else: a service
whose change approvers outside the room hear of says so itself, with the payload,
through the outbox (`notify.action_notify`, `notify.request_notify`).
"""

import json
from typing import Any

from chat.eligibility import Ballots
from chat.models import Action, Message, Request
from chat.payloads import (
    ActionPayload,
    MessagePayload,
    RequestPayload,
    action_payload,
    message_payload,
    request_payload,
)
from chat.realtime import event_emit


def message_emit(message: Message) -> MessagePayload:
    """The room's `message` event."""
    payload = message_payload(message)
    event_emit(room_id=message.room_id, type="message", payload=payload)
    return payload


def action_emit(action: Action, ballots: Ballots | None = None) -> ActionPayload:
    """The room's `action` event. `ballots`: the action's votes and voters as the
    caller already read them (saves reading them again)."""
    payload = action_payload(action, ballots)
    event_emit(room_id=action.room_id, type="action", payload=payload)
    return payload


def request_emit(request: Request) -> RequestPayload:
    """The room's `request` event."""
    payload = request_payload(request)
    event_emit(room_id=request.room_id, type="request", payload=payload)
    return payload


def tool_result_content(action: Action) -> str:
    """What the model reads as the result of its tool call."""
    body: dict[str, Any] = {"tool": action.tool, "status": action.status}
    if action.status == Action.Status.SUCCEEDED:
        body["result"] = action.result
    elif action.status == Action.Status.FAILED:
        body["error"] = action.error
    elif action.status == Action.Status.DENIED and (
        action.decided_via == Action.Via.POLICY
    ):
        body.update(
            denied=True,
            reason=action.reason,
            note="The room's approval policy does not allow this call; it did not run.",
        )
    elif action.status == Action.Status.DENIED:
        body.update(
            denied=True,
            reason=action.reason or "(no reason given)",
            note=f"{action.decided_by} denied this action; it did not run.",
        )
    elif action.status == Action.Status.EXPIRED:
        body["note"] = (
            "Nobody approved this action in time; it expired and did not run."
        )
    if action.edited:
        # The status above is that of the edited call: what ran (or would have).
        body["edited"] = {
            "proposed": action.proposed_arguments,
            "ran_with": action.arguments,
        }
        body["edited_note"] = (
            "A person edited your call's arguments; the status above is for the "
            "edited call, with the arguments in ran_with, not the ones you proposed."
        )
    if action.retractions:
        body["retracted"] = [
            {"by": r["username"], "reason": r["reason"] or "(no reason given)"}
            for r in action.retractions
        ]
        body["retraction_note"] = (
            "An approval of this call was taken back during its grace period before "
            "it ran; the status above is how it finally ended."
        )
    return json.dumps(body, ensure_ascii=False, default=str)


def tool_result_emit(action: Action) -> Message:
    message = Message.objects.create(
        room_id=action.room_id,
        request_id=action.request_id,
        role=Message.Role.TOOL,
        content=tool_result_content(action),
        tool_call_id=action.tool_call_id,
        action=action,
    )
    message_emit(message)
    return message
