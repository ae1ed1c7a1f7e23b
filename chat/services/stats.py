"""Decision analytics of a room (PROTOCOL.md, "Decision analytics").

Votes are counted from the audit's `vote` records (every vote cast, also one an
edit or a retract later cleared, or a removal dropped), each with the start of the
ballot it was cast in; tools from each action's current state. Three queries
whatever the room holds: the votes, the current approvers, the tools' counts.
"""

import re
from datetime import timedelta
from statistics import median
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from chat.errors import Invalid
from chat.models import Action, AuditRecord, Membership, Room

DAYS_DEFAULT, DAYS_MAX = 30, 365
# `rubber_stamp`: many approvals, no denial, each decided in seconds.
RUBBER_STAMP_APPROVALS = 10
RUBBER_STAMP_SECONDS = 5
APPROVED_LIKE = (
    Action.Status.APPROVED,
    Action.Status.EXECUTING,
    Action.Status.SUCCEEDED,
    Action.Status.FAILED,
)


def stats_days(value: str | None) -> int:
    if value is None:
        return DAYS_DEFAULT
    if not re.fullmatch(r"[0-9]{1,3}", value) or not 1 <= int(value) <= DAYS_MAX:
        raise Invalid(f"days: an integer from 1 to {DAYS_MAX}.")
    return int(value)


def room_stats(*, room: Room, days: int) -> dict[str, Any]:
    """The room's stats over the last `days` days."""
    until = timezone.now()
    since = until - timedelta(days=days)
    return {
        "room": room.slug,
        "days": days,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "approvers": _approvers(room, since),
        "tools": _tools(room, since),
    }


def _approvers(room: Room, since: Any) -> list[dict[str, Any]]:
    votes = AuditRecord.objects.filter(room=room, kind="vote", at__gte=since)
    tally: dict[str, dict[str, Any]] = {}
    seconds: dict[str, list[float]] = {}
    for actor, decision, at, start in votes.values_list(
        "actor", "decision", "at", "ballot_start"
    ):
        entry = tally.setdefault(actor, _zero(actor))
        entry["votes"] += 1
        entry["approvals" if decision == "approve" else "denials"] += 1
        if start is not None:
            seconds.setdefault(actor, []).append(max(0.0, (at - start).total_seconds()))
    current = Membership.objects.filter(
        room=room, role=Membership.Role.APPROVER
    ).values_list("user__username", flat=True)
    for username in current:
        tally.setdefault(username, _zero(username))
    for actor, entry in tally.items():
        if seconds.get(actor):
            entry["median_seconds_to_vote"] = round(median(seconds[actor]), 3)
        entry["rubber_stamp"] = (
            entry["approvals"] >= RUBBER_STAMP_APPROVALS
            and entry["denials"] == 0
            and entry["median_seconds_to_vote"] is not None
            and entry["median_seconds_to_vote"] < RUBBER_STAMP_SECONDS
        )
    return [tally[name] for name in sorted(tally)]


def _zero(username: str) -> dict[str, Any]:
    return {
        "username": username,
        "votes": 0,
        "approvals": 0,
        "denials": 0,
        "median_seconds_to_vote": None,
        "rubber_stamp": False,
    }


def _tools(room: Room, since: Any) -> list[dict[str, Any]]:
    by_policy = Q(decided_via=Action.Via.POLICY)
    denied = Q(status=Action.Status.DENIED)
    rows = (
        Action.objects.filter(room=room, created__gte=since)
        .values("tool")
        .annotate(
            proposed=Count("pk"),
            approved=Count(
                "pk", filter=Q(status__in=APPROVED_LIKE, requires_approval=True)
            ),
            denied=Count("pk", filter=denied & ~by_policy),
            expired=Count("pk", filter=Q(status=Action.Status.EXPIRED)),
            auto=Count("pk", filter=Q(requires_approval=False) & ~denied),
            never=Count("pk", filter=denied & by_policy),
        )
        .order_by("tool")
    )
    return [dict(row) for row in rows]


__all__ = ["room_stats", "stats_days"]
