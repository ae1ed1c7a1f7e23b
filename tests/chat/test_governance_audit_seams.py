"""Where governance meets the audit (PROTOCOL.md, "Audit export"): an escalation, a
grant and an expiry each write their one record, in the transaction of the change."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import services
from chat.models import Action, AuditRecord, Membership, PolicyRule, Room
from tests.chat.test_policies import approve, propose, rule
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


def records(room: Room, kind: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(room=room, kind=kind).order_by("seq"))


def test_an_escalation_is_one_escalated_record_by_the_system(room, alice, bob) -> None:
    Membership.objects.create(
        room=room, user=_user("dave"), role=Membership.Role.MEMBER
    )
    rule(room, tool="delete_issue", escalate_after=60, escalate_to=["dave"])
    action = propose(room, bob)
    Action.objects.filter(pk=action.pk).update(
        escalates_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.action_escalate_due() == 1
    assert services.action_escalate_due() == 0
    [record] = records(room, "escalated")
    assert (record.actor, record.via) == ("system", "system")
    assert record.data == {"escalate_to": ["dave"]}
    assert record.action_ref == action.pk


def test_a_grant_is_one_policy_granted_record_and_its_expiry_one_more(
    room, alice, bob
) -> None:
    action = propose(room, bob)
    granted = approve(alice, action, grant={"seconds": 600}).json()["grant"]
    [record] = records(room, "policy.granted")
    assert (record.actor, record.via) == ("alice", "api")
    assert record.data == {"seconds": 600}
    assert record.rule is not None and record.rule["id"] == granted["id"]
    assert not records(room, "policy.created")
    PolicyRule.objects.filter(pk=granted["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.policy_expire_due() == 1
    [expired] = records(room, "policy.expired")
    assert (expired.actor, expired.via) == ("system", "system")
    assert expired.rule is not None and expired.rule["expired"] is True
