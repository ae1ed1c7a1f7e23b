"""The audit records of the governance changes (issue 30 meets the audit): a grant,
a rule's expiry and a policy change through the API each write their `policy.*`
record beside their `policy` event, and the sweep's escalation its `escalated`
record, once. (Merged in h-chaosx: h-govcore's `policy_changed` and escalation
wrote events only, h-govaudit's records came from its own `policy_audit`.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import services
from chat.models import Action, AuditRecord, PolicyRule, Room, User
from tests.chat.test_api import api
from tests.chat.test_policies import approve, propose, rule

pytestmark = pytest.mark.django_db


def records(room: Room) -> list[tuple[str, str, str]]:
    """The room's records after its members' (the fixtures add them)."""
    return list(
        AuditRecord.objects.filter(room=room)
        .exclude(kind__startswith="member.")
        .order_by("seq")
        .values_list("kind", "actor", "via")
    )


def test_a_grant_and_its_expiry_are_audited(room: Room, alice: User, bob: User) -> None:
    action = propose(room, bob)
    granted = approve(alice, action, grant={"seconds": 60}).json()["grant"]
    assert records(room) == [
        ("vote", "alice", "api"),
        ("approved", "alice", "api"),
        ("policy.granted", "alice", "api"),
    ]
    record = AuditRecord.objects.get(room=room, kind="policy.granted")
    assert record.action_ref == action.pk and record.rule["id"] == granted["id"]
    # The contract's audit table: `policy.granted` data `{seconds}`.
    assert record.data == {"seconds": 60}
    PolicyRule.objects.filter(pk=granted["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.sweep()["rules_expired"] == 1
    assert services.sweep()["rules_expired"] == 0
    assert records(room)[3:] == [("policy.expired", "system", "system")]


def test_api_policy_changes_are_audited_once_each(room: Room, alice: User) -> None:
    path = f"/api/rooms/{room.slug}/policies"
    made = api(alice).post(path, {"tool": "add_comment", "mode": "ask"}, format="json")
    assert made.status_code == 201, made.content
    rule_id = made.json()["id"]
    assert api(alice).delete(f"{path}/{rule_id}").status_code == 204
    assert records(room) == [
        ("policy.created", "alice", "api"),
        ("policy.deleted", "alice", "api"),
    ]
    # The deleted rule's record keeps its id.
    deleted = AuditRecord.objects.get(room=room, kind="policy.deleted")
    assert deleted.rule["id"] == rule_id


def test_an_escalation_is_audited_once(room: Room, alice: User, bob: User) -> None:
    rule(room, tool="delete_issue", escalate_after=60, escalate_to=["alice"])
    action = propose(room, bob)
    Action.objects.filter(pk=action.pk).update(
        escalates_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.action_escalate_due() == 1
    assert services.action_escalate_due() == 0
    [record] = AuditRecord.objects.filter(room=room, kind="escalated")
    assert (record.actor, record.via, record.action_ref) == (
        "system",
        "system",
        action.pk,
    )
    assert record.data == {"escalate_to": ["alice"]}
