"""Governance in the room page (PROTOCOL.md, "Governance", "Pages"), in a real
browser against real processes: Approve all / Deny all and what they refused, a
grant counting down in the policy panel until it expires, an escalation on the
card, and the Decision stats panel with its two audit downloads."""

import csv
import io
import json
import re
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, expect

from chat import services
from chat.models import Action, Membership, PolicyRule, Room, User
from tests.browser.conftest import PHONE, log_in, open_room, screenshot
from tests.browser.test_room_page import ask, request_of
from tests.chat.test_api import pending_action
from tests.plugins.people import _user
from tests.plugins.stack import Stack, effects

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def carol(room: Room, alice: User) -> User:
    """carol, an approver of the room besides alice."""
    person = _user("carol")
    services.member_add(
        room=room, actor=alice, username="carol", role=Membership.Role.APPROVER
    )
    return person


def open_as(
    contexts: Callable[..., BrowserContext],
    base: str,
    room: Room,
    username: str,
    **options: object,
) -> Page:
    return open_room(log_in(contexts(**options), base, username), base, room.slug)


def card_of(page: Page, issue: str, status: str | None = None):
    """The action card whose arguments name `issue`."""
    card = page.locator(".action", has_text=f'"{issue}"')
    expect(card).to_have_count(1)
    if status:
        expect(card).to_have_attribute("data-status", status)
    return card


def test_approve_all_votes_on_mine_and_says_what_was_refused_then_deny_all(
    stack: Stack, room, alice, carol, contexts, linear_standin
):
    # ENG-5 is carol's alone: alice's Approve all is refused on it.
    services.policy_create(
        room=room,
        actor=alice,
        data={
            "tool": "delete_issue",
            "arguments": {"id": "ENG-5"},
            "approvers": ["carol"],
        },
    )
    base = stack.web()
    stack.worker()
    alice_page = open_as(contexts, base, room, "alice")
    bob = open_as(contexts, base, room, "bob", **PHONE)

    ask(bob, "delete ENG-3 ENG-4 ENG-5")
    request_id = request_of(bob, "delete ENG-3 ENG-4 ENG-5")
    for issue in ("ENG-3", "ENG-4", "ENG-5"):
        card_of(alice_page, issue, "pending")
    bar = alice_page.locator(f".batch[data-request='{request_id}']")
    expect(bar).to_contain_text("2 actions wait for your vote")
    # bob may vote on none of them: no bar for him.
    expect(bob.locator(".batch")).to_have_count(0)
    screenshot(alice_page, "room-desktop-approve-all.png")

    bar.get_by_role("button", name="Approve all").click()

    expect(bar.locator(".batch__result")).to_have_text(
        "Approved 2 actions. Not yours to decide: 1."
    )
    expect(bar.get_by_role("button")).to_have_count(0)
    for issue in ("ENG-3", "ENG-4"):
        card_of(alice_page, issue, "succeeded")
    card_of(alice_page, "ENG-5", "pending")
    expect(alice_page.locator("#timeline-live")).to_contain_text(
        "Approved 2 actions. Not yours to decide: 1."
    )
    assert len(effects(linear_standin, "issueDelete")) == 2

    [eng5] = Action.objects.filter(request_id=request_id, status="pending")
    services.action_decide(action_id=str(eng5.pk), user=carol, decision="deny")
    card_of(alice_page, "ENG-5", "denied")

    ask(bob, "delete ENG-6 ENG-7")
    second = request_of(bob, "delete ENG-6 ENG-7")
    bar = alice_page.locator(f".batch[data-request='{second}']")
    bar.get_by_role("button", name="Deny all").click()
    reason = bar.get_by_label("Why deny them all?")
    expect(reason).to_be_focused()
    reason.fill("Not this sprint")
    bar.get_by_role("button", name="Confirm deny all").click()

    expect(bar.locator(".batch__result")).to_have_text("Denied 2 actions.")
    for issue in ("ENG-6", "ENG-7"):
        card = card_of(alice_page, issue, "denied")
        expect(card.locator(".action__reason-text")).to_have_text("Not this sprint")
        expect(card_of(bob, issue, "denied")).to_contain_text("Denied by alice")
    assert len(effects(linear_standin, "issueDelete")) == 2


def test_a_grant_counts_down_in_the_policy_panel_until_it_expires(
    stack: Stack, room, alice, contexts, linear_standin
):
    base = stack.web()
    stack.worker()
    alice_page = open_as(contexts, base, room, "alice")
    bob = open_as(contexts, base, room, "bob", **PHONE)
    panels = [page.locator("#policy") for page in (alice_page, bob)]
    for panel in panels:
        panel.locator("summary").click()
        expect(panel.locator("#policy-status")).to_contain_text("No rules")

    ask(bob, "comment on ENG-5: looking into it")
    card = card_of(alice_page, "ENG-5", "pending")
    expect(card_of(bob, "ENG-5").get_by_role("button")).to_have_count(0)
    card.get_by_role("button", name="Approve and allow for 1 hour").click()

    card_of(alice_page, "ENG-5", "succeeded")
    # Both panels follow the `policy` event (the slow re-read is 20 s away).
    for panel in panels:
        rule = panel.locator(".policy__rule")
        expect(rule).to_have_count(1, timeout=10_000)
        expect(rule).to_contain_text(
            'add_comment with id = "ENG-5" runs without approval'
        )
        expect(rule.locator(".policy__granted")).to_have_text("Granted by alice")
        expect(rule.locator(".policy__expires")).to_have_text(
            re.compile(r"^Expires in (60:00|59:[0-5]\d)$")
        )
    countdown = panels[0].locator(".policy__expires")
    first = countdown.text_content()
    expect(countdown).not_to_have_text(first)  # it counts every second
    screenshot(alice_page, "room-desktop-grant.png")
    [grant] = PolicyRule.objects.filter(room=room, source_action__isnull=False)
    assert grant.created_by == alice

    # Revoked early: it runs out in three seconds, and says so when it has.
    services.policy_update(
        room=room,
        actor=alice,
        rule_id=str(grant.pk),
        data={"expires_at": (timezone.now() + timedelta(seconds=3)).isoformat()},
    )
    for panel in panels:
        expect(panel.locator(".policy__expires")).to_have_text(
            re.compile(r"^Expires in 0:0[0-3]$")
        )
    for panel in panels:
        expect(panel.locator(".policy__expired")).to_have_text("Expired")
    while not services.policy_expire_due():  # the sweep's report, once
        time.sleep(0.2)
    for panel in panels:
        expect(panel.locator(".policy__rule")).to_have_count(1)
        expect(panel.locator(".policy__expired")).to_have_text("Expired")
    assert len(effects(linear_standin, "commentCreate")) == 1


def test_an_escalation_counts_down_on_the_card_then_says_to_whom(
    stack: Stack, room, alice, carol, contexts, linear_standin
):
    services.policy_create(
        room=room,
        actor=alice,
        data={
            "tool": "add_comment",
            "approvers": ["alice"],
            "escalate_after": 8,
            "escalate_to": ["carol"],
        },
    )
    base = stack.web()
    stack.worker()
    carol_page = open_as(contexts, base, room, "carol")
    panel = carol_page.locator("#policy")
    panel.locator("summary").click()
    expect(panel.locator(".policy__escalates")).to_have_text(
        "Escalates to carol after 8 s"
    )

    bob = open_as(contexts, base, room, "bob", **PHONE)
    ask(bob, "comment on ENG-4: on it")
    card = card_of(carol_page, "ENG-4", "pending")
    expect(card.locator(".action__escalation")).to_have_text(
        re.compile(r"^Escalates to carol in 0:0\d$")
    )
    expect(card.get_by_role("button", name="Approve", exact=True)).to_have_count(0)

    [action] = Action.objects.filter(room=room, tool="add_comment")
    assert action.escalates_at is not None
    while timezone.now() < action.escalates_at:
        time.sleep(0.2)
    assert services.action_escalate_due() == 1  # what the sweep does every few seconds

    expect(card.locator(".action__escalation")).to_have_text("Escalated to carol")
    expect(card_of(bob, "ENG-4").locator(".action__escalation")).to_have_text(
        "Escalated to carol"
    )
    screenshot(carol_page, "room-desktop-escalated.png")
    card.get_by_role("button", name="Approve", exact=True).click()
    card_of(carol_page, "ENG-4", "succeeded")
    assert len(effects(linear_standin, "commentCreate")) == 1


def test_decision_stats_flag_a_rubber_stamp_and_the_audit_downloads(
    stack: Stack, room, alice, bob, contexts, settings
):
    # Ten quick approvals and no denial: a rubber stamp. No worker: nothing runs,
    # and each approved request stays queued (past bob's usual limit of five).
    settings.AGENT_MAX_ACTIVE_PER_USER = 20
    for call in range(10):
        action = pending_action(room, bob, call=f"call_{call}")
        services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    base = stack.web()
    alice_page = open_as(contexts, base, room, "alice")
    bob_page = open_as(contexts, base, room, "bob", **PHONE)
    expect(bob_page.locator("#stats")).to_have_count(0)  # approvers only

    panel = alice_page.locator("#stats")
    panel.get_by_text("Decision stats").click()
    approvers = panel.get_by_role("table", name="Approvers, last 30 days")
    row = approvers.get_by_role("row", name=re.compile(r"^alice"))
    expect(row).to_contain_text("10")
    expect(row).to_contain_text("Rubber stamp")
    tools = panel.get_by_role("table", name="Tools, last 30 days")
    expect(tools.get_by_role("row", name=re.compile(r"^delete_issue"))).to_contain_text(
        "10"
    )
    screenshot(alice_page, "room-desktop-stats.png")

    with alice_page.expect_download() as download:
        panel.get_by_role("link", name="Download audit (CSV)").click()
    text = download.value.path().read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert next(csv.reader(io.StringIO(text)))[:3] == ["id", "at", "kind"]
    assert [r["actor"] for r in rows if r["kind"] == "vote"] == ["alice"] * 10

    with alice_page.expect_download() as download:
        panel.get_by_role("link", name="Download audit (JSONL)").click()
    assert download.value.suggested_filename == "audit-triage.jsonl"
    records = [
        json.loads(line)
        for line in download.value.path().read_text(encoding="utf-8").splitlines()
    ]
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert sum(r["kind"] == "approved" for r in records) == 10
