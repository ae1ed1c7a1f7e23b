"""The decision link and the inbox in a real Chromium against real processes: an
anonymous visitor of `decide_url` logs in and approves; the inbox, open meanwhile,
shows the action and then drops it (and the header's count with it)."""

import re

import pytest
from playwright.sync_api import expect

from chat import services
from chat.links import decide_token
from chat.models import Action, Request
from tests.browser.conftest import screenshot
from tests.e2e.test_agent import pending
from tests.plugins.stack import reached

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_an_anonymous_visitor_of_the_link_logs_in_and_approves(
    stack, room, alice, bob, contexts, linear_standin
):
    base = stack.web()
    stack.worker()
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    [action] = pending(request)
    link = f"{base}/decide/{decide_token(action.pk)}/"

    context = contexts()
    page = context.new_page()
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/decide/"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-pass")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(link)
    expect(page.get_by_role("heading", name="delete_issue")).to_be_visible()
    expect(page.locator(".decide__preview")).to_contain_text("ENG-3")

    inbox = context.new_page()
    inbox.goto(f"{base}/inbox/")
    expect(inbox.locator(f'[data-action="{action.pk}"]')).to_be_visible()
    expect(inbox.locator("[data-inbox-count]")).to_have_text("1")
    screenshot(inbox, "inbox.png")

    page.get_by_label("Reason").fill("fine by me")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash")).to_contain_text("You approved delete_issue")
    screenshot(page, "decide.png")

    # The inbox page, left open, follows the API and drops the action.
    expect(inbox.locator(f'[data-action="{action.pk}"]')).to_have_count(0)
    expect(inbox.locator("[data-inbox-count]")).to_be_hidden()
    expect(inbox.locator("[data-inbox-empty]")).to_be_visible()

    reached(request, Request.Status.COMPLETED)
    action.refresh_from_db()
    assert (action.decided_by, action.decided_via) == (alice, Action.Via.LINK)
    assert action.reason == "fine by me"
