"""The audit trail: one append-only record per governance change of a room.

`audit_write` is called inside the transaction of the change it reports (a vote, a
decision, an expiry, a policy or membership change), so records and actions never
disagree: a change that rolls back leaves no record, and a change made once (under
its row lock, after its status check) is recorded once. Each record takes the
room's next `audit_seq` with an UPDATE of the room's row, whose lock is held until
the commit: records of a room commit in seq order, gap-free, and a reader paging by
seq (`audit_page`) never skips one that commits later. The room's row is the last
lock of every write path (as for events), so this adds no lock-order edge.

Export (`audit_export`): JSON lines or CSV, as PROTOCOL.md ("Audit export") shows
them, for the REST call and the admin alike.
"""

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from chat.errors import Invalid
from chat.models import Action, AuditRecord, PolicyRule, Room, User

from .access import room_get_for_approver

KINDS = (
    "vote",
    "approved",
    "denied",
    "auto",
    "never",
    "expired",
    "cancelled",
    "retracted",
    "escalated",
    "policy.created",
    "policy.updated",
    "policy.deleted",
    "policy.granted",
    "policy.expired",
    "member.added",
    "member.removed",
    "member.role",
)
CSV_COLUMNS = (
    "id",
    "at",
    "kind",
    "actor",
    "via",
    "request",
    "action",
    "tool",
    "arguments",
    "preview",
    "decision",
    "reason",
    "rule",
    "data",
)
FORMATS = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}
LIMIT_DEFAULT, LIMIT_MAX = 1000, 5000
ID = re.compile(r"([0-9]{1,18})-([0-9]{1,18})")
# Spreadsheets run a cell that starts with one of these as a formula ("CSV
# injection"); such a text cell (a reason, a username) gets a leading apostrophe,
# OWASP's advice. The JSON columns stay valid JSON: a JSON value starting with one
# of these is a number, which a spreadsheet reads as a number.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
JSON_COLUMNS = ("arguments", "preview", "data")


def audit_write(
    *,
    room: Room | int,
    kind: str,
    actor: User | str | None,
    via: str,
    request: Any = None,
    action: Action | None = None,
    decision: str | None = None,
    reason: str = "",
    rule: PolicyRule | Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    ballot_start: datetime | None = None,
) -> AuditRecord:
    """Append a record to the room's audit trail; call it inside the transaction
    of the change it reports (it takes the room's row lock until the commit).

    `actor`: the user, or "policy" / "system" (None: "system"). `request`: a
    request or its id; defaults to the action's. `action` is recorded as it is
    now (id, tool, arguments, preview). `rule`: the rule row, or the rule as the
    caller already shaped it (the `policy` event's). A vote's `ballot_start`
    defaults to when the action's current ballot opened.
    """
    [record] = audit_save(
        audit_record(
            room=room,
            kind=kind,
            actor=actor,
            via=via,
            request=request,
            action=action,
            decision=decision,
            reason=reason,
            rule=rule,
            data=data,
            ballot_start=ballot_start,
        )
    )
    return record


def audit_record(
    *,
    room: Room | int,
    kind: str,
    actor: User | str | None,
    via: str,
    request: Any = None,
    action: Action | None = None,
    decision: str | None = None,
    reason: str = "",
    rule: PolicyRule | Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    ballot_start: datetime | None = None,
) -> AuditRecord:
    """A record as `audit_write` takes it, unsaved: `audit_save` several at once
    (a vote and the decision it made) in two queries."""
    assert kind in KINDS, kind
    if request is None and action is not None:
        request = action.request_id
    if kind == "vote" and ballot_start is None and action is not None:
        ballot_start = action.ballot_started or action.created
    return AuditRecord(
        room_id=room if isinstance(room, int) else room.pk,
        kind=kind,
        actor=_actor(actor),
        via=via,
        request_ref=getattr(request, "pk", request),
        action_ref=action.pk if action is not None else None,
        tool=action.tool if action is not None else "",
        arguments=_json(action.arguments) if action is not None else None,
        preview=_json(action.preview) if action is not None else None,
        decision=decision or "",
        reason=reason or "",
        rule=_rule(rule),
        data=_json(dict(data or {})),
        ballot_start=ballot_start,
    )


def audit_save(*records: AuditRecord) -> list[AuditRecord]:
    """Store records of one room, in order, under its next seqs (inside the
    transaction of their change)."""
    assert transaction.get_connection().in_atomic_block, "audit needs atomic()"
    room_id = records[0].room_id
    assert all(r.room_id == room_id for r in records)
    last = _next_seq(room_id, len(records))
    # After the room's lock: `at` follows seq, as readers page by seq.
    now = timezone.now()
    for offset, record in enumerate(records):
        record.seq, record.at = last - len(records) + 1 + offset, now
    return AuditRecord.objects.bulk_create(records)


def _actor(actor: User | str | None) -> str:
    if actor is None:
        return "system"
    return actor if isinstance(actor, str) else actor.get_username()


def _json(value: Any) -> Any:
    # Datetimes and UUIDs as the events store them.
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def rule_snapshot(rule: PolicyRule) -> dict[str, Any]:
    """A rule as `GET /api/rooms/<slug>/policies` lists it."""
    snapshot: dict[str, Any] = {"id": str(rule.pk)}
    snapshot.update({f: getattr(rule, f) for f in PolicyRule.FIELDS})
    snapshot["created"] = rule.created
    return _json(snapshot)  # type: ignore[no-any-return]


def _rule(rule: PolicyRule | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    if isinstance(rule, PolicyRule):
        return rule_snapshot(rule)
    return _json(dict(rule))  # type: ignore[no-any-return]


def _next_seq(room_id: int, count: int = 1) -> int:
    # As chat.realtime._next_seq: one UPDATE ... RETURNING, holding the row lock;
    # the last of `count` seqs.
    table, column = Room._meta.db_table, Room._meta.get_field("audit_seq").column
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET {quote(column)} = {quote(column)} + %s "
            f"WHERE {quote(Room._meta.pk.column)} = %s RETURNING {quote(column)}",
            [count, room_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Room.DoesNotExist(f"No room {room_id}.")
    return int(row[0])


# Reading ---------------------------------------------------------------------------


def room_for_governance(*, slug: str, user: User) -> Room:
    """The room, for its audit and stats: approvers and holders of
    `chat.decide_action`; members 403, outsiders (and unknown rooms) 404."""
    return room_get_for_approver(slug=slug, user=user, what="read its audit and stats")


def audit_cursor(*, room: Room, after: str | None) -> int:
    """The seq a page starts after; Invalid for an id that is not one of this
    room's records (malformed, another room's, or never written)."""
    if after is None:
        return 0
    match = ID.fullmatch(after)
    if match is None or int(match[1]) != room.pk or int(match[2]) < 1:
        raise Invalid("after: the id of one of this room's audit records.")
    seq = int(match[2])
    if seq > room.audit_seq:
        raise Invalid("after: the id of one of this room's audit records.")
    return seq


def audit_limit(value: str | None) -> int:
    if value is None:
        return LIMIT_DEFAULT
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 1 <= int(value) <= LIMIT_MAX:
        raise Invalid(f"limit: an integer from 1 to {LIMIT_MAX}.")
    return int(value)


def audit_format(value: str | None) -> str:
    if value is None:
        return "jsonl"
    if value not in FORMATS:
        raise Invalid("format: jsonl or csv.")
    return value


def audit_page(*, room_id: int, after: int, limit: int) -> list[AuditRecord]:
    """The room's records after seq `after`, oldest first."""
    records = AuditRecord.objects.filter(room_id=room_id, seq__gt=after)
    return list(records.order_by("seq")[:limit])


def audit_entry(record: AuditRecord) -> dict[str, Any]:
    """A record as the export shows it (PROTOCOL.md, "Audit export")."""
    action = None
    if record.action_ref is not None:
        action = {
            "id": str(record.action_ref),
            "tool": record.tool,
            "arguments": record.arguments,
            "preview": record.preview,
        }
    return {
        "id": record.public_id,
        "at": record.at.isoformat(),
        "kind": record.kind,
        "actor": record.actor,
        "via": record.via,
        "request": str(record.request_ref) if record.request_ref else None,
        "action": action,
        "decision": record.decision or None,
        "reason": record.reason,
        "rule": record.rule,
        "data": record.data,
    }


def audit_export(
    records: Iterable[AuditRecord], fmt: str, *, header: bool = True
) -> Iterator[str]:
    """The records as JSON lines or CSV (a header row first, unless `header` is
    false: a later chunk of the same export), line by line."""
    if fmt == "csv":
        if header:
            yield _csv_row(CSV_COLUMNS)
        for record in records:
            yield _csv_row(_csv_cells(audit_entry(record)))
        return
    for record in records:
        yield json.dumps(audit_entry(record), ensure_ascii=False) + "\n"


def _csv_cells(entry: dict[str, Any]) -> list[str]:
    action = entry["action"] or {}
    rule = entry["rule"]
    values: dict[str, Any] = {
        **entry,
        "action": action.get("id"),
        "tool": action.get("tool"),
        "arguments": _text(action.get("arguments")) if action else None,
        "preview": _text(action.get("preview")) if action else None,
        "rule": rule.get("id") if isinstance(rule, dict) else None,
        "data": _text(entry["data"]),
    }
    return [
        "" if values[c] is None else _defused(c, str(values[c])) for c in CSV_COLUMNS
    ]


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _defused(column: str, cell: str) -> str:
    if column in JSON_COLUMNS or not cell.startswith(FORMULA_START):
        return cell
    return "'" + cell


def _csv_row(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "KINDS",
    "audit_cursor",
    "audit_entry",
    "audit_export",
    "audit_format",
    "audit_limit",
    "audit_page",
    "audit_record",
    "audit_save",
    "audit_write",
    "room_for_governance",
    "rule_snapshot",
]
