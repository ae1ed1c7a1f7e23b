"""Approval policies in the room page, in a real browser against real processes: a
quorum of two approvers, the policy panel, and retracting an approval during its
rule's delay."""

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from chat import services
from chat.models import Membership, Room, User
from tests.browser.conftest import PHONE, log_in, open_room, screenshot
from tests.browser.test_room_page import ask, request_of, request_status, the_card
from tests.plugins.people import _user
from tests.plugins.stack import Stack, effects

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def approvers(room: Room, alice: User) -> list[User]:
    """carol and dave, approvers of the room besides alice."""
    people = [_user("carol"), _user("dave")]
    for person in people:
        services.member_add(
            room=room,
            actor=alice,
            username=person.username,
            role=Membership.Role.APPROVER,
        )
    return people


def open_as(
    contexts: Callable[..., BrowserContext],
    base: str,
    room: Room,
    username: str,
    **options: object,
) -> Page:
    return open_room(log_in(contexts(**options), base, username), base, room.slug)


def test_two_approvals_needed_and_the_requester_may_not_vote(
    stack: Stack, room, alice, approvers, contexts, linear_standin
):
    services.policy_create(
        room=room,
        actor=alice,
        data={
            "tool": "delete_issue",
            "mode": "ask",
            "approvals_required": 2,
            "requester_may_approve": False,
        },
    )
    base = stack.web()
    stack.worker()
    alice_page = open_as(contexts, base, room, "alice")
    carol = open_as(contexts, base, room, "carol")
    dave = open_as(contexts, base, room, "dave", **PHONE)

    ask(alice_page, "Please delete ENG-3")

    for page in (alice_page, carol, dave):
        card = the_card(page, "pending")
        expect(card.locator(".action__tally")).to_have_text("0 of 2 approvals")
        expect(card.locator(".action__waiting")).to_have_text(
            "Waiting for: carol, dave"
        )
        expect(card.locator(".action__expires")).to_contain_text("Expires in")
    card = the_card(alice_page)
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    expect(card.get_by_role("button", name="Deny")).to_have_count(0)

    the_card(carol).get_by_role("button", name="Approve", exact=True).click()

    for page in (alice_page, carol, dave):
        card = the_card(page, "pending")
        expect(card.locator(".action__tally")).to_have_text("1 of 2 approvals: carol")
        expect(card.locator(".action__waiting")).to_have_text("Waiting for: dave")
    expect(the_card(carol).get_by_role("button", name="Approve")).to_have_count(0)
    assert effects(linear_standin, "issueDelete") == []
    screenshot(dave, "room-phone-quorum.png")

    the_card(dave).get_by_role("button", name="Approve", exact=True).click()

    request_id = request_of(alice_page, "Please delete ENG-3")
    for page in (alice_page, carol, dave):
        card = the_card(page, "succeeded")
        expect(card.locator(".action__tally")).to_have_text(
            "2 of 2 approvals: carol, dave"
        )
        expect(card.get_by_role("button")).to_have_count(0)
        expect(request_status(page, request_id)).to_have_text("Done")
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_policy_panel_rules_added_by_an_approver_are_read_by_members(
    stack: Stack, room, contexts
):
    base = stack.web()
    alice = open_as(contexts, base, room, "alice")
    bob = open_as(contexts, base, room, "bob", **PHONE)

    panel = alice.locator("#policy")
    panel.locator("summary").click()
    expect(panel.locator("#policy-status")).to_contain_text("No rules")
    expect(panel.get_by_label("Tool")).to_contain_text("delete_issue")
    panel.get_by_label("Tool").select_option("delete_issue")
    panel.get_by_label("Approvals required").fill("2")
    panel.get_by_label("Named approvers").fill("alice, nobody")
    panel.get_by_role("button", name="Add rule").click()
    # The server's refusal, in its words.
    expect(panel.locator("#policy-error")).to_contain_text("nobody")
    panel.get_by_label("Named approvers").fill("")
    panel.get_by_label("Requester may approve").uncheck()
    panel.get_by_label("Delay before it runs").fill("30")
    panel.get_by_role("button", name="Add rule").click()
    rule = panel.locator(".policy__rule")
    expect(rule).to_have_count(1)
    expect(rule).to_contain_text(
        "delete_issue asks for approval; 2 approvals from the room's approvers; "
        "not by the requester; starts 30 s after approval"
    )
    expect(panel.locator("#policy-error")).to_be_hidden()
    screenshot(alice, "room-desktop-policy.png")

    member_panel = bob.locator("#policy")
    member_panel.locator("summary").click()
    member_rule = member_panel.locator(".policy__rule")
    expect(member_rule).to_have_count(1)
    expect(member_rule).to_contain_text("delete_issue asks for approval")
    expect(member_panel.locator("form")).to_have_count(0)
    expect(member_panel.get_by_role("button")).to_have_count(0)
    screenshot(bob, "room-phone-policy-member.png")

    rule.get_by_role("button", name="Delete").click()
    expect(panel.locator(".policy__rule")).to_have_count(0)
    expect(panel.locator("#policy-status")).to_contain_text("No rules")
    assert not services.policy_list(room=room)


def test_retract_during_the_delay_puts_the_action_back_to_pending(
    stack: Stack, room, alice, contexts, linear_standin
):
    services.policy_create(
        room=room,
        actor=alice,
        data={"tool": "delete_issue", "mode": "ask", "delay": 30},
    )
    base = stack.web()
    stack.worker()
    alice_page = open_as(contexts, base, room, "alice")
    bob = open_as(contexts, base, room, "bob", **PHONE)

    ask(bob, "Please delete ENG-3")
    the_card(alice_page, "pending").get_by_role(
        "button", name="Approve", exact=True
    ).click()

    countdown = re.compile(r"^Runs in \d+ s$")
    for page in (alice_page, bob):
        card = the_card(page, "approved")
        expect(card.locator(".action__tally")).to_have_text("1 of 1 approvals: alice")
        expect(card.locator(".action__countdown")).to_have_text(countdown)
    first = the_card(alice_page).locator(".action__countdown").text_content()
    expect(the_card(alice_page).locator(".action__countdown")).not_to_have_text(first)
    expect(the_card(bob).get_by_role("button", name="Retract")).to_have_count(0)
    screenshot(alice_page, "room-desktop-countdown.png")

    the_card(alice_page).get_by_role("button", name="Retract").click()

    for page in (alice_page, bob):
        card = the_card(page, "pending")
        expect(card.locator(".action__tally")).to_have_text("0 of 1 approvals")
        expect(card.locator(".action__retraction")).to_contain_text(
            "Approval retracted by alice"
        )
        expect(card.locator(".action__countdown")).to_have_count(0)
    expect(
        the_card(alice_page).get_by_role("button", name="Approve", exact=True)
    ).to_be_visible()
    assert effects(linear_standin, "issueDelete") == []
