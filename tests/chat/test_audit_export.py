"""GET /api/rooms/<slug>/audit (PROTOCOL.md, "Audit export"): who may read it, its
two formats, its paging (also while records are written), and the admin's view."""

from __future__ import annotations

import csv
import io
import json
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from chat.models import AuditRecord, Room, User
from chat.services.audit import CSV_COLUMNS, audit_write
from tests.chat.test_api import api, refusal

pytestmark = pytest.mark.django_db


def url(room: Room, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/rooms/{room.slug}/audit" + (f"?{query}" if query else "")


def body(response: Any) -> str:
    assert response.status_code == 200, response.content
    return b"".join(response).decode()  # the async stream, consumed as WSGI would


def lines(response: Any) -> list[dict]:
    return [json.loads(line) for line in body(response).splitlines()]


def write(room: Room, n: int, **fields: Any) -> None:
    for _ in range(n):
        with transaction.atomic():
            audit_write(
                room=room, kind="member.role", actor="alice", via="api", **fields
            )


# Who may read it ---------------------------------------------------------------------


def test_approvers_and_deciders_read_members_get_403_outsiders_404(
    room: Room, alice: User, bob: User, mallory: User, staff_decider: User
) -> None:
    assert api(alice).get(url(room)).status_code == 200
    assert api(staff_decider).get(url(room)).status_code == 200
    refusal(api(bob).get(url(room)), 403)
    refusal(api(mallory).get(url(room)), 404)
    refusal(api(alice).get("/api/rooms/nowhere/audit"), 404)
    assert api().get(url(room)).status_code == 401


# Formats -----------------------------------------------------------------------------


def test_jsonl_is_the_default_one_record_per_line(room: Room, alice: User) -> None:
    response = api(alice).get(url(room))
    assert response["Content-Type"] == "application/x-ndjson"
    download = 'attachment; filename="audit-triage.jsonl"'
    assert response["Content-Disposition"] == download
    first, second = lines(response)
    assert first == {
        "id": first["id"],
        "at": first["at"],
        "kind": "member.added",
        "actor": "alice",
        "via": "api",
        "request": None,
        "action": None,
        "decision": None,
        "reason": "",
        "rule": None,
        "data": {"username": "alice", "role": "approver"},
    }
    assert isinstance(first["id"], str) and first["id"] != second["id"]


def test_format_wins_over_accept_and_drf_does_not_take_it(
    room: Room, alice: User
) -> None:
    client = api(alice)
    as_csv = client.get(url(room, format="csv"), HTTP_ACCEPT="application/json")
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert body(as_csv).splitlines()[0] == ",".join(CSV_COLUMNS)
    as_jsonl = client.get(url(room, format="jsonl"), HTTP_ACCEPT="text/csv")
    assert as_jsonl["Content-Type"] == "application/x-ndjson"
    refusal(client.get(url(room, format="xml")), 400)
    refusal(client.get(url(room, format="json")), 400)


def test_csv_columns_nulls_json_text_and_formula_cells(
    room: Room, alice: User, bob: User
) -> None:
    from tests.chat.test_policies import propose

    action = propose(room, bob)
    with transaction.atomic():
        audit_write(
            room=room,
            kind="vote",
            actor=alice,
            via="api",
            action=action,
            decision="deny",
            reason='=HYPERLINK("http://evil")',
        )
    response = api(alice).get(url(room, format="csv"))
    rows = list(csv.DictReader(io.StringIO(body(response))))
    vote = rows[-1]
    assert list(vote) == list(CSV_COLUMNS)
    assert vote["action"] == str(action.pk) and vote["tool"] == "delete_issue"
    assert json.loads(vote["arguments"]) == {"id": "ENG-3"}
    assert json.loads(vote["preview"])["identifier"] == "ENG-3"
    assert json.loads(vote["data"]) == {}
    assert vote["request"] == str(action.request_id)
    assert vote["rule"] == ""  # null
    assert vote["decision"] == "deny"
    # A cell a spreadsheet would run as a formula is text there.
    assert vote["reason"] == '\'=HYPERLINK("http://evil")'
    member = rows[0]
    assert (member["action"], member["decision"], member["request"]) == ("", "", "")


# Paging ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 5001},
        {"limit": "ten"},
        {"after": "x"},
        {"after": "1-"},
        {"after": "99999-1"},
        {"limit": "\u0663"},  # an Arabic-Indic 3: not an integer in JSON's sense
        {"after": "\u0661-\u0661"},
    ],
)
def test_bad_paging_parameters_are_400(room: Room, alice: User, query: dict) -> None:
    refusal(api(alice).get(url(room, **query)), 400)


def test_a_cursor_of_another_room_or_never_written_is_400(
    room: Room, alice: User
) -> None:
    from chat.services import room_create

    other = room_create(user=alice, name="Ops", slug="ops")
    [theirs] = lines(api(alice).get(url(other)))
    refusal(api(alice).get(url(room, after=theirs["id"])), 400)
    refusal(api(alice).get(url(room, after=f"{room.pk}-999")), 400)


def test_pages_follow_on_without_skips_or_repeats_while_records_are_added(
    room: Room, alice: User
) -> None:
    write(room, 3)
    client = api(alice)
    seen: list[dict] = []
    after = None
    for _ in range(20):
        page = lines(
            client.get(url(room, limit=2, **({"after": after} if after else {})))
        )
        seen += page
        write(room, 1)  # more arrive between pages
        if len(page) < 2:
            break
        after = page[-1]["id"]
    else:
        pytest.fail("the pages never ended")
    written = AuditRecord.objects.filter(room=room).order_by("seq")
    # Everything up to the last page, each once, in order; `at` never goes back.
    assert [r["id"] for r in seen] == [r.public_id for r in written][: len(seen)]
    assert len(seen) >= 5
    assert [r["at"] for r in seen] == sorted(r["at"] for r in seen)


def test_limit_defaults_to_1000_and_the_stream_reads_in_chunks(
    room: Room, alice: User
) -> None:
    AuditRecord.objects.bulk_create(
        AuditRecord(
            room=room,
            seq=seq,
            at=room.created,
            kind="member.role",
            actor="alice",
            via="api",
        )
        for seq in range(3, 1203)
    )
    Room.objects.filter(pk=room.pk).update(audit_seq=1202)
    page = lines(api(alice).get(url(room)))
    assert len(page) == 1000
    assert [r["id"] for r in page] == [f"{room.pk}-{seq}" for seq in range(1, 1001)]
    rest = lines(api(alice).get(url(room, after=page[-1]["id"], limit=5000)))
    assert len(rest) == 202


@pytest.mark.django_db(transaction=True)
def test_a_record_committed_late_is_not_skipped(room: Room, alice: User) -> None:
    """PostgreSQL: two writers at once. The one that began first holds the room's
    row lock with its record uncommitted; the second waits for it, so no later seq
    commits first and a reader's cursor never passes a record still to come."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    token_client = api(alice)
    first_written, release = threading.Event(), threading.Event()
    second_done = threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                audit_write(room=room.pk, kind="vote", actor="carol", via="api")
                first_written.set()
                release.wait(10)
        finally:
            connection.close()

    def second() -> None:
        try:
            first_written.wait(10)
            with transaction.atomic():
                audit_write(room=room.pk, kind="vote", actor="dave", via="api")
            second_done.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert first_written.wait(10)
    # The second writer waits on the room's row lock: nothing committed past us.
    assert not second_done.wait(0.5)
    page = lines(token_client.get(url(room)))
    assert [r["actor"] for r in page] == ["alice", "alice"]
    release.set()
    for thread in threads:
        thread.join(10)
    assert second_done.is_set()
    rest = lines(token_client.get(url(room, after=page[-1]["id"])))
    assert [r["actor"] for r in rest] == ["carol", "dave"]


@pytest.mark.django_db(transaction=True)
def test_paging_while_three_writers_add_records_never_skips_or_repeats(
    room: Room, alice: User
) -> None:
    """PostgreSQL: writers in their own transactions (each holding its record a
    moment before committing) while a reader pages; together the pages are every
    record once, in order."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    import time

    client = api(alice)
    writing = threading.Event()
    writing.set()

    def writer(name: str) -> None:
        try:
            for _ in range(15):
                with transaction.atomic():
                    audit_write(room=room.pk, kind="vote", actor=name, via="api")
                    time.sleep(0.005)  # committed after later-started peers try
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    seen: list[dict] = []
    after: str | None = None
    while True:
        done = not any(t.is_alive() for t in threads)
        query = {"limit": 4, **({"after": after} if after else {})}
        page = lines(client.get(url(room, **query)))
        seen += page
        if page:
            after = page[-1]["id"]
        if done and len(page) < 4:
            break
    written = list(AuditRecord.objects.filter(room=room).order_by("seq"))
    assert len(written) == 2 + 45
    assert [r["id"] for r in seen] == [r.public_id for r in written]
    assert [r["at"] for r in seen] == sorted(r["at"] for r in seen)


# The admin ---------------------------------------------------------------------------


def test_the_admin_lists_filters_and_exports_records_read_only(
    room: Room, alice: User, staff_decider: User
) -> None:
    write(room, 1, reason="third")
    client = Client()
    client.force_login(staff_decider)
    changelist = reverse("admin:chat_auditrecord_changelist")
    listed = client.get(changelist, {"kind": "member.role"})
    assert listed.status_code == 200
    assert [r.reason for r in listed.context["cl"].result_list] == ["third"]
    record = AuditRecord.objects.get(room=room, reason="third")
    assert client.get(reverse("admin:chat_auditrecord_add")).status_code == 403
    change = reverse("admin:chat_auditrecord_change", args=[record.pk])
    assert client.get(change).status_code == 200  # a read-only view
    assert client.post(change, {"reason": "edited"}).status_code == 403
    delete = reverse("admin:chat_auditrecord_delete", args=[record.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    everyone = list(AuditRecord.objects.filter(room=room).values_list("pk", flat=True))
    for fmt in ("csv", "jsonl"):
        exported = client.post(
            changelist,
            {"action": f"export_{fmt}", "_selected_action": everyone, "index": 0},
        )
        assert exported.status_code == 200
        from_api = body(api(alice).get(url(room, format=fmt)))
        assert exported.content.decode() == from_api
    AuditRecord.objects.get(pk=record.pk)  # still there, unchanged
    assert AuditRecord.objects.get(pk=record.pk).reason == "third"
