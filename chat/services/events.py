"""What the room hears of a change: durable events, and tool results for the model."""

import json
from typing import Any

from chat.eligibility import Ballots
from chat.models import Action, Message, Request
from chat.realtime import event_emit
from chat.serializers import ActionSerializer, MessageSerializer, request_event

from .notify import action_notify, request_notify


def message_emit(message: Message) -> None:
    event_emit(
        room_id=message.room_id, type="message", payload=MessageSerializer(message).data
    )


def action_emit(action: Action, ballots: Ballots | None = None) -> None:
    """The room's `action` event, and the outbox rows it calls for. `ballots`: the
    action's votes and voters as the caller already read them."""
    context = {"ballots": ballots} if ballots is not None else {}
    payload = ActionSerializer(action, context=context).data
    event_emit(room_id=action.room_id, type="action", payload=payload)
    # Approvers outside the room hear of it too (email, webhooks): same transaction.
    action_notify(action, payload)


def request_emit(request: Request) -> None:
    event_emit(room_id=request.room_id, type="request", payload=request_event(request))
    request_notify(request)


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
    )
    message_emit(message)
    return message
