"""What a newcomer reads, in a real Chromium against the real processes: a message
over the limit is refused visibly and never cut; the inbox names rooms and says
when things expire in the reader's terms; a finished card labels its preview; a
member who may not vote on a decision link is told so; the admin's confirmation
is readable."""

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import BrowserContext, expect

from chat.links import decide_token
from chat.models import Action, Request, Room, User
from tests.browser.conftest import log_in, open_room, screenshot
from tests.browser.test_room_page import the_card
from tests.plugins.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def an_action(room: Room, user: User, **fields: object) -> Action:
    request = Request.objects.create(
        room=room, user=user, step=1, status=Request.Status.AWAITING_APPROVAL
    )
    values: dict[str, object] = {
        "tool": "delete_issue",
        "arguments": {"id": "ENG-3"},
        "requires_approval": True,
        "status": Action.Status.PENDING,
        "preview": {"identifier": "ENG-3", "title": "Flaky login", "state": "Todo"},
        **fields,
    }
    return Action.objects.create(
        request=request,
        room=room,
        step=0,
        tool_call_id=f"c{Action.objects.count()}",
        **values,
    )


def test_a_message_over_the_limit_is_refused_visibly_and_never_cut(
    stack: Stack, room: Room, alice, contexts: Callable[..., BrowserContext]
):
    base = stack.web()
    page = open_room(log_in(contexts(), base, "alice"), base, room.slug)
    box = page.get_by_label("Message to the agent")
    send = page.get_by_role("button", name="Send", exact=True)
    counter = page.locator("#composer-count")

    box.fill("a" * 9_500)
    expect(counter).to_have_text("9,500 / 10,000 · 500 left")
    expect(send).to_be_enabled()

    # A long paste: nothing trims it, and sending is off while it is too long.
    box.fill("")
    box.focus()
    page.keyboard.insert_text("b" * 12_000)
    assert box.evaluate("(node) => node.value.length") == 12_000
    expect(counter).to_have_text("12,000 / 10,000 · 2,000 too many: shorten it to send")
    expect(send).to_be_disabled()
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#timeline-live")).to_contain_text(
        "Messages are limited to 10,000 characters; this one is 2,000 over."
    )
    screenshot(page, "room-over-the-limit.png")

    page.keyboard.press("Enter")  # Enter sends, or says why it cannot
    expect(page.locator(".notice")).to_contain_text(
        "Messages are limited to 10,000 characters; this one has 12,000. "
        "Nothing was sent."
    )
    assert box.evaluate("(node) => node.value.length") == 12_000
    assert not Request.objects.exists()

    # Shortened: it may go, whole.
    box.fill("c" * 10_000)
    expect(send).to_be_enabled()
    expect(box).not_to_have_attribute("aria-invalid", "true")
    send.click()
    expect(page.locator(".msg--user")).to_have_count(1)
    assert len(Request.objects.get().messages.get(role="user").content) == 10_000


def test_the_inbox_names_rooms_and_says_when_things_expire_in_local_time(
    stack: Stack, room: Room, alice, bob, contexts: Callable[..., BrowserContext]
):
    base = stack.web()
    soon = an_action(room, bob, expires_at=timezone.now() + timedelta(hours=23))
    page = log_in(contexts(timezone_id="Asia/Tokyo"), base, "alice")
    page.goto(f"{base}/inbox/")
    row = page.locator(f'[data-action="{soon.pk}"]')
    expect(row).to_contain_text("in Triage")
    expect(row).not_to_contain_text("triage")
    when = row.locator("time")
    expect(when).to_have_text("in 23 h")
    assert when.get_attribute("datetime").startswith(soon.expires_at.isoformat()[:16])
    # The absolute time, in the reader's zone (Tokyo is UTC+9).
    local = timezone.localtime(soon.expires_at, timezone.get_fixed_timezone(9 * 60))
    clock = rf"\b{local.hour % 12 or 12}:{local:%M}\b"
    expect(when).to_have_attribute("title", re.compile(clock))

    # A row the page's poll adds later reads the same way.
    later = an_action(room, bob, expires_at=timezone.now() + timedelta(minutes=50))
    row = page.locator(f'[data-action="{later.pk}"]')
    expect(row).to_contain_text("in Triage · expires in 50 min")
    screenshot(page, "inbox-relative.png")


def test_a_finished_card_labels_its_preview_and_empty_lists_read_none(
    stack: Stack, room: Room, alice, bob, contexts: Callable[..., BrowserContext]
):
    base = stack.web()
    an_action(
        room,
        bob,
        tool="github_create_issue",
        arguments={"title": "Flaky login", "labels": []},
        preview={"creates": "Flaky login", "repository": "acme/web", "labels": []},
        status=Action.Status.SUCCEEDED,
        decided_by=alice,
        decided_at=timezone.now(),
        decided_via=Action.Via.ROOM,
        result={"number": 7},
    )
    page = open_room(log_in(contexts(), base, "alice"), base, room.slug)
    card = the_card(page, "succeeded")
    box = card.locator(".action__preview-box")
    expect(box.locator(".label")).to_have_text("Before")
    expect(box.locator("dt")).to_have_text(["Creates", "Repository", "Labels"])
    expect(box.locator("dd")).to_have_text(["Flaky login", "acme/web", "none"])


def test_a_member_who_may_not_vote_is_told_so_and_finds_the_room(
    stack: Stack, room: Room, alice, bob, mallory, contexts
):
    base = stack.web()
    action = an_action(room, alice)
    link = f"{base}/decide/{decide_token(action.pk)}/"

    page = log_in(contexts(), base, "bob")
    response = page.goto(link)
    assert response is not None and response.status == 404
    expect(
        page.get_by_role("heading", name="You can't decide this action")
    ).to_be_visible()
    expect(page.locator("[data-refusal]")).to_have_text(
        "Only approvers of this room may decide its actions."
    )
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    screenshot(page, "decide-member.png")
    page.get_by_role("link", name="Open Triage").click()
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    expect(the_card(page, "pending")).to_contain_text("delete_issue")

    # Someone outside the room learns nothing, not even that it exists.
    outsider = log_in(contexts(), base, "mallory")
    response = outsider.goto(link)
    assert response is not None and response.status == 404
    expect(outsider.locator("body")).not_to_contain_text("delete_issue")


def _luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in re.findall(r"\d+", rgb)[:3]]
    linear = [
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_admins_approve_confirmation_is_readable(
    stack: Stack, room: Room, bob, staff_decider, contexts
):
    base = stack.web()
    action = an_action(room, bob)
    page = contexts().new_page()
    page.goto(f"{base}/admin/login/?next=/admin/chat/action/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill("sam-pass")
    page.get_by_role("button", name="Log in").click()
    page.locator(f'input[name="_selected_action"][value="{action.pk}"]').check()
    page.locator('select[name="action"]').select_option("approve_selected")
    page.get_by_role("button", name="Go").click()
    heading = page.locator(".approve-row h2")
    expect(heading).to_have_text("delete_issue in Triage · pending")
    colours = heading.evaluate(
        "(node) => [...node.querySelectorAll('*'), node].map((n) => ["
        " getComputedStyle(n).color, getComputedStyle(node).backgroundColor])"
    )
    for colour, background in colours:
        assert contrast(colour, background) >= 4.5, (colour, background)
    # The call's JSON is laid out by the admin's stylesheet (a file: the CSP
    # refuses inline styles), wrapped rather than cut.
    arguments = page.locator(".approve-row pre.chat-json").first
    expect(arguments).to_have_css("white-space", "pre-wrap")
    page.screenshot(path="test-output/screenshots/admin-approve-selected.png")
    expect(page.get_by_role("button", name="Approve 1 action")).to_be_visible()
