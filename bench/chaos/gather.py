"""What the checker reads from the database (Django set up on the run's database)."""

from __future__ import annotations

from .check import Gathered


def from_database() -> Gathered:
    """Actions, votes, requests (with what triggered them), room events, the audit,
    grants and webhook deliveries, as plain data."""
    from chat.models import (
        Action,
        AuditRecord,
        Delivery,
        PolicyRule,
        Request,
        Room,
        RoomEvent,
        Vote,
    )

    data = Gathered()
    for a in Action.objects.select_related("request__user"):
        data.actions.append(
            {
                "id": str(a.pk),
                "tool": a.tool,
                "status": a.status,
                "arguments": a.arguments,
                "requires_approval": a.requires_approval,
                "approvals_required": a.approvals_required,
                "requester_may_approve": a.requester_may_approve,
                "approvers": a.approvers,
                "ballot": a.ballot,
                "request": str(a.request_id),
                "requester": a.request.user.username,
                "created": a.created.isoformat(),
                "rule_id": (a.rule or {}).get("rule_id"),
            }
        )
    for v in Vote.objects.select_related("user"):
        data.votes.append(
            {
                "action": str(v.action_id),
                "user": v.user.username,
                "ballot": v.ballot,
                "decision": v.decision,
            }
        )
    for r in Request.objects.all():
        data.requests.append(
            {"id": str(r.pk), "status": r.status, "trigger": r.trigger}
        )
    for room in Room.objects.all():
        data.events[room.slug] = list(
            RoomEvent.objects.filter(room=room).values_list("seq", flat=True)
        )
        data.last_seq[room.slug] = room.last_seq
        data.audit[room.slug] = [
            {
                "seq": seq,
                "kind": kind,
                "action": None if action is None else str(action),
                "actor": actor,
                "decision": decision,
                "at": at.isoformat(),
            }
            for seq, kind, action, actor, decision, at in AuditRecord.objects.filter(
                room=room
            ).values_list("seq", "kind", "action_ref", "actor", "decision", "at")
        ]
        data.audit_seq[room.slug] = room.audit_seq
    for rule in PolicyRule.objects.filter(source_action__isnull=False):
        assert rule.expires_at is not None
        data.grants.append(
            {
                "id": str(rule.pk),
                "source_action": str(rule.source_action_id),
                "created": rule.created.isoformat(),
                "expires_at": rule.expires_at.isoformat(),
            }
        )
    for d in Delivery.objects.filter(channel="webhook"):
        data.deliveries.append(
            {"id": str(d.pk), "status": d.status, "event": d.event, "body": d.body}
        )
    return data
