"""The approval's span: emitted once, by the process that decides, when an action
leaves `pending` (contract, "Traces" 7). A wait of days holds nothing open: the span
is started back at the moment the action began to wait."""

from datetime import datetime

from django.db import transaction
from django.utils.dateparse import parse_datetime

from agentsite import telemetry
from chat.models import Action

DECISIONS: dict[str, str] = {
    Action.Status.APPROVED: "approved",
    Action.Status.DENIED: "denied",
    Action.Status.EXPIRED: "expired",
    Action.Status.CANCELLED: "cancelled",
}


def approval_traced(action: Action) -> None:
    """Record the `approval {tool}` span of `action`, decided just now (its new
    status set, inside the caller's transaction, before it saves the row).

    The span's context replaces the proposing step's on the row (which is kept under
    "proposed"): the tool call it releases, now or after a delay or a restart, is
    sent under it. It is ended (and
    so exported) when the decision commits.
    """
    if not telemetry.enabled():
        return
    # A decision after a retraction: still under the proposing step, kept aside.
    proposing = action.trace_context.get("proposed") or action.trace_context
    span, stored = telemetry.approval_span(
        headers=proposing,
        tool=action.tool,
        started=_pending_since(action),
        attributes={
            **telemetry.turn_attributes(
                request_id=action.request_id,
                room=action.room.slug,
                action_id=action.pk,
            ),
            "gen_ai.tool.name": action.tool,
            "gen_ai.tool.call.id": action.tool_call_id,
            "agentsite.approval.decision": DECISIONS.get(action.status, action.status),
            "agentsite.approval.decided_via": action.decided_via or "",
        },
    )
    action.trace_context = {**stored, "proposed": proposing}
    transaction.on_commit(span.end)


def _pending_since(action: Action) -> datetime:
    """When it began to wait: its creation, or its last retraction."""
    if action.retractions:
        at = parse_datetime(str(action.retractions[-1].get("at", "")))
        if at is not None:
            return at
    return action.created
