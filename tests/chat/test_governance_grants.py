"""Grants and expiring rules, and policy changes as events (PROTOCOL.md,
"Governance"): a grant approves and allows the same call for a while; a rule stops
matching at its expires_at and the sweep reports the expiry once; every change of a
policy, by any path, is a durable `policy` event and a `policy.changed` webhook."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from chat import services
from chat.models import (
    Action,
    Delivery,
    PolicyRule,
    Room,
    RoomEvent,
    User,
    Vote,
    Webhook,
)
from tests.chat.test_api import api, refusal
from tests.chat.test_policies import approve, propose, rule

pytestmark = pytest.mark.django_db


def policy_events(room: Room) -> list[dict]:
    return [
        e.payload
        for e in RoomEvent.objects.filter(room=room, type="policy").order_by("seq")
    ]


def later(seconds: int = 3600) -> str:
    return (timezone.now() + timedelta(seconds=seconds)).isoformat()


# Rule fields --------------------------------------------------------------------


def test_rules_show_who_made_them_and_when_they_expire(room, alice) -> None:
    created = api(alice).post(
        f"/api/rooms/{room.slug}/policies",
        {"tool": "delete_issue", "mode": "auto", "expires_at": later()},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["created_by"] == "alice" and body["source_action"] is None
    assert body["expired"] is False and body["expires_at"] and body["created"]
    listed = api(alice).get(f"/api/rooms/{room.slug}/policies").json()
    assert listed == [body]


@pytest.mark.parametrize(
    "field",
    [
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"expires_at": "tomorrow"},
        {"expires_at": 5},
        {"expired": False},
        {"created_by": "alice"},
        {"created": "2030-01-01T00:00:00Z"},
        {"source_action": None},
        {"id": "x"},
    ],
)
def test_a_past_expiry_or_a_read_only_field_gets_400(room, alice, field) -> None:
    body = {"tool": "delete_issue", **field}
    refusal(
        api(alice).post(f"/api/rooms/{room.slug}/policies", body, format="json"), 400
    )
    assert not PolicyRule.objects.exists()


def test_tools_name_their_target(alice) -> None:
    tools = {t["name"]: t for t in api(alice).get("/api/tools").json()}
    assert tools["delete_issue"]["target"] == "id"
    assert all("target" in t for t in tools.values())


def test_an_expired_rule_matches_nothing_from_expires_at_on(room, alice, bob) -> None:
    allow = rule(room, tool="delete_issue", mode="auto", expires_at=later())
    assert propose(room, bob).status == Action.Status.EXECUTING
    # Past its expires_at, before any sweep reported it: it matches nothing.
    PolicyRule.objects.filter(pk=allow.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert propose(room, bob).status == Action.Status.PENDING
    listed = api(alice).get(f"/api/rooms/{room.slug}/policies").json()
    assert listed[0]["expired"] is True


# Grants -------------------------------------------------------------------------


def test_a_grant_approves_and_allows_the_same_call_until_it_expires(
    room, alice, bob
) -> None:
    Webhook.objects.create(room=room, url="https://93.184.215.14/hook")
    action = propose(room, bob)
    response = approve(alice, action, grant={"seconds": 600}, reason="fine")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["status"] == "approved" and answer["id"] == str(action.pk)
    grant = answer["grant"]
    assert grant["tool"] == "delete_issue" and grant["arguments"] == {"id": "ENG-3"}
    assert grant["mode"] == "auto" and grant["created_by"] == "alice"
    assert grant["source_action"] == str(action.pk) and grant["expired"] is False
    [event] = policy_events(room)
    assert event["change"] == "granted" and event["actor"] == "alice"
    assert event["action"] == str(action.pk) and event["rule"] == grant
    [hook] = Delivery.objects.filter(event="policy.changed")
    assert json.loads(hook.body)["policy"] == event
    # The same call runs at once now; another target still asks.
    assert propose(room, bob).status == Action.Status.EXECUTING
    assert propose(room, bob, id="ENG-4").status == Action.Status.PENDING
    PolicyRule.objects.filter(pk=grant["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert propose(room, bob).status == Action.Status.PENDING


@pytest.mark.parametrize(
    "fields",
    [{"approvals_required": 2}, {"requester_may_approve": False}, {"delay": 30}],
)
def test_a_grant_never_lowers_a_bar(room, alice, bob, fields) -> None:
    rule(room, tool="delete_issue", **fields)
    action = propose(room, bob)
    refusal(approve(alice, action, grant={"seconds": 60}), 403)
    assert not Vote.objects.exists()
    assert PolicyRule.objects.count() == 1 and not policy_events(room)


def test_only_who_may_change_the_policy_may_grant(room, alice, bob) -> None:
    rule(room, tool="delete_issue", approvers=["bob"])
    action = propose(room, alice)
    refusal(approve(bob, action, grant={"seconds": 60}), 403)
    assert not Vote.objects.exists() and PolicyRule.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"grant": {}},
        {"grant": {"seconds": 0}},
        {"grant": {"seconds": 86401}},
        {"grant": {"seconds": "60"}},
        {"grant": {"seconds": 1.5}},
        {"grant": {"seconds": True}},
        {"grant": 60},
        {"grant": {"seconds": 60}, "arguments": {"id": "ENG-4"}},
    ],
)
def test_a_bad_grant_gets_400_and_records_nothing(room, alice, bob, body) -> None:
    action = propose(room, bob)
    refusal(approve(alice, action, **body), 400)
    assert not Vote.objects.exists() and not PolicyRule.objects.exists()


def test_a_grant_on_a_deny_or_a_tool_without_target_gets_400(room, alice, bob) -> None:
    action = propose(room, bob)
    denied = api(alice).post(
        f"/api/actions/{action.pk}/deny", {"grant": {"seconds": 60}}, format="json"
    )
    refusal(denied, 400)
    assert not PolicyRule.objects.exists() and not Vote.objects.exists()
    other = propose(room, bob, "create_issue", title="New")  # target: null
    assert other.status == Action.Status.PENDING
    refusal(approve(alice, other, grant={"seconds": 60}), 400)
    assert not PolicyRule.objects.exists() and not Vote.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_decide_frame_grants_too(room, alice, bob) -> None:
    from tests.chat.test_consumer import connect, receive_until, run, token_headers

    action = propose(room, bob)
    headers = token_headers(alice)

    async def scenario():
        ws, _ = await connect(headers)
        await ws.send_json_to(
            {
                "type": "decide",
                "action": str(action.pk),
                "decision": "approve",
                "grant": {"seconds": 120},
            }
        )
        frames = await receive_until(ws, lambda f: f["type"] == "policy")
        await ws.send_json_to(
            {
                "type": "decide",
                "action": str(action.pk),
                "decision": "deny",
                "grant": {"seconds": 120},
            }
        )
        error = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1], error[-1]

    policy, error = run(scenario())
    assert policy["policy"]["change"] == "granted"
    assert policy["policy"]["rule"]["source_action"] == str(action.pk)
    assert error["frame"] == "decide"
    [granted] = PolicyRule.objects.all()
    assert granted.created_by == alice


# Policy changes are events ----------------------------------------------------------


def test_every_api_change_is_a_policy_event_and_a_webhook(room, alice) -> None:
    Webhook.objects.create(
        room=room, url="https://93.184.215.14/hook", events=["policy.changed"]
    )
    base = f"/api/rooms/{room.slug}/policies"
    created = api(alice).post(base, {"tool": "delete_issue"}, format="json").json()
    api(alice).patch(f"{base}/{created['id']}", {"delay": 5}, format="json")
    assert api(alice).delete(f"{base}/{created['id']}").status_code == 204
    events = policy_events(room)
    assert [e["change"] for e in events] == ["created", "updated", "deleted"]
    assert {e["actor"] for e in events} == {"alice"}
    assert events[1]["rule"]["delay"] == 5 and events[2]["rule"]["delay"] == 5
    assert events[2]["rule"]["id"] == created["id"]
    hooks = Delivery.objects.filter(event="policy.changed").order_by("created")
    assert [json.loads(h.body)["policy"]["change"] for h in hooks] == [
        "created",
        "updated",
        "deleted",
    ]
    page = api(alice).get(f"/api/rooms/{room.slug}/events").json()["events"]
    assert [e["policy"]["change"] for e in page if e["type"] == "policy"] == [
        "created",
        "updated",
        "deleted",
    ]


def test_a_refused_change_makes_no_event(room, alice, bob) -> None:
    base = f"/api/rooms/{room.slug}/policies"
    refusal(api(bob).post(base, {"tool": "delete_issue"}, format="json"), 403)
    refusal(
        api(alice).post(base, {"tool": "delete_issue", "delay": -1}, format="json"), 400
    )
    assert not policy_events(room)


def test_the_admin_inline_changes_are_policy_events(room) -> None:
    kept = rule(room, tool="delete_issue")
    root = User.objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.force_login(root)
    form = {
        "slug": room.slug,
        "name": room.name,
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "policy_rules-TOTAL_FORMS": 2,
        "policy_rules-INITIAL_FORMS": 1,
        "policy_rules-0-id": str(kept.pk),
        "policy_rules-0-room": str(room.pk),
        "policy_rules-0-tool": "delete_issue",
        "policy_rules-0-arguments": "{}",
        "policy_rules-0-mode": "ask",
        "policy_rules-0-approvals_required": 1,
        "policy_rules-0-approvers": "[]",
        "policy_rules-0-requester_may_approve": "on",
        "policy_rules-0-delay": 0,
        "policy_rules-0-escalate_to": "[]",
        "policy_rules-0-DELETE": "on",
        "policy_rules-1-tool": "create_issue",
        "policy_rules-1-arguments": "{}",
        "policy_rules-1-mode": "ask",
        "policy_rules-1-approvals_required": 1,
        "policy_rules-1-approvers": "[]",
        "policy_rules-1-requester_may_approve": "on",
        "policy_rules-1-delay": 0,
        "policy_rules-1-escalate_after": 30,
        "policy_rules-1-escalate_to": '["alice"]',
    }
    saved = client.post(f"/admin/chat/room/{room.pk}/change/", form)
    assert saved.status_code == 302, saved.content.decode()[:3000]
    assert not PolicyRule.objects.filter(pk=kept.pk).exists()
    events = policy_events(room)
    assert [e["change"] for e in events] == ["deleted", "created"]
    assert {e["actor"] for e in events} == {"root"}
    [made] = PolicyRule.objects.all()
    assert made.created_by == root and made.escalate_to == ["alice"]


# Expiry -------------------------------------------------------------------------------


def test_the_sweep_reports_an_expiry_once(room, alice, bob) -> None:
    Webhook.objects.create(room=room, url="https://93.184.215.14/hook")
    action = propose(room, bob)
    granted = approve(alice, action, grant={"seconds": 60}).json()["grant"]
    assert services.sweep()["rules_expired"] == 0
    PolicyRule.objects.filter(pk=granted["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.sweep()["rules_expired"] == 1
    assert services.sweep()["rules_expired"] == 0
    events = policy_events(room)
    assert [e["change"] for e in events] == ["granted", "expired"]
    assert events[1]["actor"] == "system" and events[1]["action"] is None
    assert events[1]["rule"]["expired"] is True
    assert Delivery.objects.filter(event="policy.changed").count() == 2
    # Revived by a PATCH into the future, it is reported again when it next expires.
    patched = api(alice).patch(
        f"/api/rooms/{room.slug}/policies/{granted['id']}",
        {"expires_at": later(60)},
        format="json",
    )
    assert patched.status_code == 200 and patched.json()["expired"] is False
    PolicyRule.objects.filter(pk=granted["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.policy_expire_due() == 1


def test_a_crash_before_the_commit_leaves_the_expiry_to_the_next_sweep(room) -> None:
    expiring = rule(room, tool="delete_issue", mode="auto", expires_at=timezone.now())

    class Crash(Exception):
        pass

    with pytest.raises(Crash), transaction.atomic():
        assert services.policy_expire(rule_id=expiring.pk)
        raise Crash
    assert not policy_events(room)
    assert services.policy_expire_due() == 1
    assert services.policy_expire_due() == 0
    assert [e["change"] for e in policy_events(room)] == ["expired"]


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_report_an_expiry_once(room) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    for tool in ("delete_issue", "create_issue", "update_issue"):
        rule(room, tool=tool, mode="auto", expires_at=timezone.now())

    def sweep(_: int) -> int:
        try:
            return services.policy_expire_due()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert sum(pool.map(sweep, range(2))) == 3
    assert [e["change"] for e in policy_events(room)] == ["expired"] * 3


def test_webhooks_accept_the_new_events_and_get_them_by_default(room, alice) -> None:
    base = f"/api/rooms/{room.slug}/webhooks"
    chosen = api(alice).post(
        base,
        {
            "url": "https://93.184.215.14/a",
            "events": ["action.escalated", "policy.changed"],
        },
        format="json",
    )
    assert chosen.status_code == 201, chosen.content
    every = api(alice).post(base, {"url": "https://93.184.215.14/b"}, format="json")
    assert {"action.escalated", "policy.changed"} <= set(every.json()["events"])


def test_the_schema_documents_grants_and_the_new_rule_fields(alice) -> None:
    schema = api(alice).get("/api/schema?format=json").json()
    approve_op = schema["paths"]["/api/actions/{action_id}/approve"]["post"]
    assert "`grant`" in approve_op["responses"]["200"]["description"]
    grant_in = schema["components"]["schemas"]["GrantInRequest"]["properties"]
    assert grant_in["seconds"]["minimum"] == 1
    assert grant_in["seconds"]["maximum"] == 86400
    rule = schema["components"]["schemas"]["PolicyRule"]["properties"]
    for name in ("escalate_after", "escalate_to", "expires_at", "expired"):
        assert name in rule
    for name in ("created_by", "source_action"):
        assert name in rule
    action = schema["components"]["schemas"]["Action"]["properties"]
    for name in ("escalate_to", "escalates_at", "escalated_at"):
        assert name in action
