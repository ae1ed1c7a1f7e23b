"""Governance under a kill (PROTOCOL.md, "Governance", "Audit export"): the sweep
that escalates actions or reports expired grants dies by SIGKILL in the middle of
its batch, inside a transaction or right after one commits; the beat's sweep on a
real worker then finishes the batch. Audit records, room events, webhooks and the
rows themselves must still agree, each change reported exactly once."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat import services
from chat.models import (
    Action,
    AuditRecord,
    Delivery,
    Membership,
    PolicyRule,
    Request,
    RoomEvent,
)
from tests.e2e.test_agent import pending
from tests.plugins.people import _user
from tests.plugins.stack import die_in_child, effects, reached, wait_for

pytestmark = pytest.mark.e2e
S = Request.Status
MILLISECOND = timedelta(milliseconds=1)

# Run by a child process: the sweep, as beat's task runs it, killed by SIGKILL at
# its second claim (argv[1]: the start of the claim's UPDATE) either at once, inside
# the claim's transaction ("in_transaction"), or the moment that transaction has
# committed ("at_commit": its first on-commit callback, before the enqueues that
# follow). Django's execute wrapper (public instrumentation) sees the UPDATE;
# nothing of our code is changed.
DIE_IN_THE_SWEEP = """
import os, signal, sys
import django
django.setup()
from django.db import connection, transaction
from chat import services

claim, when = sys.argv[1], sys.argv[2]
seen = 0

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def kill_at_the_second_claim(execute, sql, params, many, context):
    global seen
    result = execute(sql, params, many, context)
    if sql.startswith(claim):
        seen += 1
        if seen == 2:
            die() if when == "in_transaction" else transaction.on_commit(die)
    return result

with connection.execute_wrapper(kill_at_the_second_claim):
    services.sweep()
print("survived the sweep")
"""
ESCALATION = 'UPDATE "chat_action" SET "escalated_at"'
EXPIRY = 'UPDATE "chat_policyrule" SET "expiry_reported_at"'
KILLS = ["in_transaction", "at_commit"]


@pytest.fixture
def private_ok(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True


def sweep_killed(stack, claim: str, when: str) -> None:
    die_in_child(stack, DIE_IN_THE_SWEEP, claim, when)


def records(kind: str, room) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(room=room, kind=kind).order_by("seq"))


def hooks(receiver, type_: str) -> list[dict]:
    bodies = [json.loads(hit.body) for hit in receiver.hits]
    return [body for body in bodies if body["type"] == type_]


@pytest.mark.parametrize("when", KILLS)
def test_a_sweep_killed_mid_escalation_escalates_each_action_once(
    stack, room, alice, bob, linear_standin, private_ok, receiver, when
):
    """Invariant: after a sweep dies in the middle of a batch of escalations, every
    action past its escalates_at escalates exactly once: one `escalated_at`, one
    `escalated` audit record saying the same (system, when, to whom), one `action`
    event, one webhook; none is lost, and the escalated user may decide it."""
    dave = _user("dave")
    dave.email = "dave@example.com"
    dave.save(update_fields=["email"])
    Membership.objects.create(room=room, user=dave, role=Membership.Role.MEMBER)
    services.webhook_create(
        room_slug=room.slug, user=alice, url=receiver.url, events=["action.escalated"]
    )
    PolicyRule.objects.create(
        room=room,
        tool="delete_issue",
        mode="ask",
        escalate_after=1,
        escalate_to=["dave"],
    )
    stack.worker(WEBHOOK_ALLOW_PRIVATE="1")
    request = services.request_start(
        room=room, user=bob, text="delete ENG-1 ENG-2 ENG-3 ENG-4"
    )
    actions = pending(request, 4)
    last_due = max(a.escalates_at for a in actions)
    wait_for(lambda: timezone.now() > last_due, what="every escalates_at to pass")

    sweep_killed(stack, ESCALATION, when)
    # What the kill left: the escalations committed before it, each with its record.
    done = Action.objects.filter(request=request, escalated_at__isnull=False)
    assert done.count() == (1 if when == "in_transaction" else 2)
    for action in Action.objects.filter(request=request):
        expected = 1 if action.escalated_at else 0
        escalated = AuditRecord.objects.filter(kind="escalated", action_ref=action.pk)
        assert escalated.count() == expected

    stack.beat()
    wait_for(lambda: done.count() == 4, timeout=30, what="the rest to escalate")
    wait_for(
        lambda: len(hooks(receiver, "action.escalated")) >= 4,
        timeout=30,
        what="the webhooks",
    )

    actions = list(Action.objects.filter(request=request))
    escalated = {r.action_ref: r for r in records("escalated", room)}
    assert len(escalated) == len(records("escalated", room)) == 4
    events = [
        e.payload
        for e in RoomEvent.objects.filter(room=room, type="action").order_by("seq")
    ]
    for action in actions:
        record = escalated[action.pk]
        assert (record.actor, record.via) == ("system", "system")
        assert record.data == {"escalate_to": ["dave"]}
        assert record.request_ref == request.pk and record.tool == "delete_issue"
        assert action.escalated_at <= record.at
        assert record.at - action.escalated_at < timedelta(seconds=2)
        shown = [e for e in events if e["id"] == str(action.pk) and e["escalated_at"]]
        assert len(shown) == 1, shown
        # The event's time is the action's, to the millisecond JSON keeps.
        at = parse_datetime(shown[0]["escalated_at"])
        assert at is not None and abs(at - action.escalated_at) < MILLISECOND
        assert "dave" in shown[0]["eligible"]
    said = hooks(receiver, "action.escalated")
    assert sorted(h["action"]["id"] for h in said) == sorted(str(a.pk) for a in actions)
    assert all(h["escalated_to"] == ["dave"] for h in said)
    mails = Delivery.objects.filter(event="action.escalated", channel="email")
    assert sorted(mails.values_list("to", flat=True)) == ["dave@example.com"] * 4

    for action in actions:
        decided = services.action_decide(
            action_id=str(action.pk), user=dave, decision="approve"
        )
        assert decided.status in {"approved", "executing", "succeeded"}
    reached(request, S.COMPLETED, timeout=40)
    assert len(effects(linear_standin, "issueDelete")) == 4
    approved = records("approved", room)
    assert sorted(r.action_ref for r in approved) == sorted(a.pk for a in actions)
    assert {r.actor for r in approved} == {"dave"}
    assert len(records("escalated", room)) == 4


@pytest.mark.parametrize("when", KILLS)
def test_a_sweep_killed_mid_expiry_reports_each_grant_expired_once(
    stack, room, alice, bob, linear_standin, private_ok, receiver, when
):
    """Invariant: after a sweep dies in the middle of reporting expired grants, each
    grant's expiry is reported exactly once (one `policy` event, one
    `policy.expired` audit record, one `policy.changed` webhook, all naming the
    rule), the audit's granted and expired records match the rules one to one, and
    an expired grant lets nothing through."""
    services.webhook_create(
        room_slug=room.slug, user=alice, url=receiver.url, events=["policy.changed"]
    )
    stack.worker(WEBHOOK_ALLOW_PRIVATE="1")
    request = services.request_start(
        room=room, user=bob, text="delete ENG-1 ENG-2 ENG-3"
    )
    for action in pending(request, 3):
        services.action_decide(
            action_id=str(action.pk),
            user=alice,
            decision="approve",
            grant={"seconds": 1},
        )
    reached(request, S.COMPLETED, timeout=40)
    rules = list(PolicyRule.objects.filter(room=room))
    assert len(rules) == 3
    last = max(r.expires_at for r in rules)
    wait_for(lambda: timezone.now() > last, what="every grant to expire")

    sweep_killed(stack, EXPIRY, when)
    reported = PolicyRule.objects.filter(room=room, expiry_reported_at__isnull=False)
    assert reported.count() == (1 if when == "in_transaction" else 2)
    expired_ids = {r.rule["id"] for r in records("policy.expired", room)}
    assert expired_ids == {str(pk) for pk in reported.values_list("pk", flat=True)}

    stack.beat()
    wait_for(lambda: reported.count() == 3, timeout=30, what="the rest to expire")
    wait_for(
        lambda: len(hooks(receiver, "policy.changed")) >= 6,
        timeout=30,
        what="the webhooks",
    )

    ids = sorted(str(r.pk) for r in rules)
    for change in ("granted", "expired"):
        audited = records(f"policy.{change}", room)
        assert sorted(r.rule["id"] for r in audited) == ids, change
        events = [
            e.payload
            for e in RoomEvent.objects.filter(room=room, type="policy").order_by("seq")
            if e.payload["change"] == change
        ]
        assert sorted(e["rule"]["id"] for e in events) == ids, change
        said = [h["policy"] for h in hooks(receiver, "policy.changed")]
        assert sorted(p["rule"]["id"] for p in said if p["change"] == change) == ids
    for record in records("policy.expired", room):
        assert (record.actor, record.via) == ("system", "system")
        assert record.rule["expired"] is True
    for rule in PolicyRule.objects.filter(room=room):
        assert rule.expires_at <= rule.expiry_reported_at

    again = services.request_start(room=room, user=bob, text="delete ENG-1")
    [action] = pending(again)
    assert action.rule is None and action.requires_approval
    assert len(effects(linear_standin, "issueDelete")) == 3
