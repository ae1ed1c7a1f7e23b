"""An approver's edit onto a target the room's policy forbids, in a real browser
against real processes: refused, with the rule's reason on the card."""

import pytest
from playwright.sync_api import expect

from chat import services
from chat.models import Room, User
from tests.browser.conftest import PHONE, log_in, open_room, screenshot
from tests.browser.test_room_page import ask, the_card
from tests.plugins.stack import Stack, effects

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_an_edit_onto_a_forbidden_target_is_refused_with_its_reason_on_the_card(
    stack: Stack, room: Room, alice: User, contexts, linear_standin
):
    never = services.policy_create(
        room=room,
        actor=alice,
        data={"tool": "delete_issue", "arguments": {"id": "ENG-1"}, "mode": "never"},
    )
    base = stack.web()
    stack.worker()
    alice_page = open_room(log_in(contexts(), base, "alice"), base, room.slug)
    bob = open_room(log_in(contexts(**PHONE), base, "bob"), base, room.slug)

    ask(bob, "Please delete ENG-3")
    card = the_card(alice_page, "pending")
    card.get_by_role("button", name="Edit", exact=True).click()
    card.get_by_label("Arguments (JSON)").fill('{"id": " eng-1"}')
    card.get_by_role("button", name="Approve with edits").click()

    refusal = card.locator(".action__refusal")
    expect(refusal).to_contain_text("never allows delete_issue")
    expect(refusal).to_contain_text(f"rule {never.pk}")
    expect(refusal).to_have_attribute("role", "alert")
    screenshot(alice_page, "room-desktop-edit-refused.png")
    # Nothing changed: still pending, the model's arguments, the edit kept to fix.
    expect(card).to_have_attribute("data-status", "pending")
    expect(card.get_by_label("Arguments (JSON)")).to_have_value('{"id": " eng-1"}')
    expect(the_card(bob, "pending").locator(".action__args")).to_contain_text("ENG-3")
    expect(alice_page.locator(".notice--error")).to_have_count(0)
    assert effects(linear_standin, "issueDelete") == []

    card.get_by_label("Arguments (JSON)").fill('{"id": "ENG-4"}')
    card.get_by_role("button", name="Approve with edits").click()

    for page in (alice_page, bob):
        expect(the_card(page, "succeeded").locator(".action__refusal")).to_have_count(0)
    assert [d["identifier"] for d in effects(linear_standin, "issueDelete")] == [
        "ENG-4"
    ]
