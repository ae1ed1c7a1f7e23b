"""The room page in a real browser, against real processes: two people watch the
agent's turn, the approver decides in the page, and everything shows up once."""

import json
import re
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, WebSocketRoute, expect

from chat.models import Room
from tests.browser.conftest import PHONE, log_in, open_room, screenshot
from tests.plugins.stack import Stack, effects

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

HOSTILE_TITLE = (
    '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
)
HOSTILE_DESCRIPTION = (
    "[click](javascript:window.__pwned=3) ![x](http://evil.example/x.png)"
)


def ask(page: Page, text: str) -> None:
    page.get_by_label("Message to the agent").fill(text)
    page.get_by_role("button", name="Send", exact=True).click()


def request_of(page: Page, text: str) -> str:
    """The id of the request that the user message `text` started."""
    message = page.locator(".msg--user", has_text=text).last
    expect(message).to_have_attribute("data-request", re.compile(r"\S+"))
    return message.get_attribute("data-request")


def answers(page: Page, request_id: str) -> Locator:
    return page.locator(f".msg--assistant[data-request='{request_id}']")


def final_answer(page: Page, request_id: str) -> Locator:
    return page.locator(
        f".msg--assistant[data-request='{request_id}']:not(.msg--streaming)"
    )


def request_status(page: Page, request_id: str) -> Locator:
    return page.locator(f".msg--user[data-request='{request_id}'] .req-status")


def the_card(page: Page, status: str | None = None, tool: str = "") -> Locator:
    """The one action card (of `tool`, when given) on the page."""
    cards = page.locator(".action", has_text=tool)
    expect(cards).to_have_count(1)
    if status:
        expect(cards).to_have_attribute("data-status", status)
    return cards


def saw_streaming(page: Page) -> bool:
    return page.evaluate("window.__sawStreaming === true")


@pytest.fixture
def pages(
    stack: Stack, room: Room, contexts: Callable[..., BrowserContext], openai_standin
) -> tuple[Page, Page]:
    """alice (approver, desktop) and bob (member, phone) in the room."""
    openai_standin.control("config", {"token_delay": 0.03})
    base = stack.web()
    stack.worker()
    alice = open_room(log_in(contexts(), base, "alice"), base, room.slug)
    bob = open_room(log_in(contexts(**PHONE), base, "bob"), base, room.slug)
    expect(alice.locator("#presence-list")).to_contain_text("bob")
    return alice, bob


def test_approval_streams_to_both_pages_and_deletes_once(pages, linear_standin):
    alice, bob = pages

    ask(bob, "Please delete ENG-3")

    for page in (alice, bob):
        card = the_card(page, "pending")
        expect(card).to_contain_text("delete_issue")
        expect(card).to_contain_text("Login fails on Safari")
        expect(card.locator(".badge")).to_have_text("Pending approval")
    request_id = request_of(bob, "Please delete ENG-3")
    expect(request_status(bob, request_id)).to_have_text("Waiting for approval")
    expect(the_card(bob).get_by_role("button", name="Approve")).to_have_count(0)
    expect(the_card(bob).get_by_role("button", name="Deny")).to_have_count(0)
    screenshot(alice, "room-desktop-pending.png")
    screenshot(bob, "room-phone-pending-member.png")
    alice.set_viewport_size(PHONE["viewport"])
    approve = the_card(alice).get_by_role("button", name="Approve", exact=True)
    approve.scroll_into_view_if_needed()
    screenshot(alice, "room-phone-pending.png")
    alice.set_viewport_size({"width": 1280, "height": 800})
    assert effects(linear_standin, "issueDelete") == []

    the_card(alice).get_by_role("button", name="Approve", exact=True).click()

    for page in (alice, bob):
        card = the_card(page, "succeeded")
        expect(card.locator(".badge")).to_have_text("Succeeded")
        expect(card.locator(".action__decision")).to_contain_text("Approved by alice")
        expect(card.get_by_role("button")).to_have_count(0)
        expect(final_answer(page, request_id)).to_contain_text("I deleted ENG-3")
        expect(answers(page, request_id)).to_have_count(1)
        expect(request_status(page, request_id)).to_have_text("Done")
        assert saw_streaming(page), "the answer appeared at once instead of streaming"
    screenshot(alice, "room-desktop-done.png")
    deletes = effects(linear_standin, "issueDelete")
    assert len(deletes) == 1
    assert deletes[0]["identifier"] == "ENG-3"


def test_denial_with_reason_reaches_everyone_and_nothing_runs(pages, linear_standin):
    alice, bob = pages
    reason = "Customers still hit this; keep it open"

    ask(bob, "Please delete ENG-3")
    card = the_card(alice, "pending")
    card.get_by_role("button", name="Deny", exact=True).click()
    card.get_by_label("Why deny?").fill(reason)
    card.get_by_role("button", name="Confirm deny").click()

    request_id = request_of(bob, "Please delete ENG-3")
    for page in (alice, bob):
        card = the_card(page, "denied")
        expect(card.locator(".badge")).to_have_text("Denied")
        expect(card.locator(".action__decision")).to_contain_text("Denied by alice")
        expect(card.locator(".action__reason")).to_contain_text(reason)
        expect(final_answer(page, request_id)).to_contain_text(
            "Understood, I did not delete ENG-3"
        )
        expect(final_answer(page, request_id)).to_contain_text(reason)
    screenshot(bob, "room-phone-denied.png")
    assert effects(linear_standin, "issueDelete") == []


def test_reload_mid_stream_shows_the_answer_once(pages):
    alice, bob = pages
    expected = " ".join(str(k) for k in range(1, 201))

    ask(bob, "count to 200")
    request_id = request_of(bob, "count to 200")
    streaming = f".msg--streaming[data-request='{request_id}'] .msg__body"
    expect(bob.locator(streaming)).to_contain_text("1 2 3 4 5 6 7 8 9 10 ")
    expect(alice.locator(streaming)).to_contain_text("1 2 3 4 5 6 7 8 9 10 ")
    screenshot(alice, "room-desktop-streaming.png")
    screenshot(bob, "room-phone-streaming.png")

    bob.reload()
    expect(bob.locator("#conn-status")).to_have_attribute("data-state", "live")
    # The snapshot seeds the text so far, and the stream carries on from there.
    expect(bob.locator(streaming)).to_contain_text("1 2 3 4 5 6 7 8 9 10 ")
    seen = len(bob.locator(streaming).text_content())
    bob.wait_for_function(
        """([selector, seen]) => {
             const body = document.querySelector(selector);
             return body !== null && body.textContent.length > seen;
           }""",
        arg=[streaming, seen],
    )

    for page in (alice, bob):
        expect(final_answer(page, request_id)).to_have_count(1, timeout=30_000)
        expect(answers(page, request_id)).to_have_count(1)
        text = final_answer(page, request_id).locator(".msg__body").text_content()
        assert text.strip() == expected
        expect(request_status(page, request_id)).to_have_text("Done")


def test_reload_draws_decided_cards_and_statuses_before_the_socket(pages):
    alice, bob = pages
    ask(bob, "Please delete ENG-3")
    request_id = request_of(bob, "Please delete ENG-3")
    the_card(alice, "pending").get_by_role("button", name="Approve", exact=True).click()
    expect(request_status(bob, request_id)).to_have_text("Done")

    # With the socket refused, all the page shows comes from the snapshot it was
    # rendered with.
    bob.context.route_web_socket("**/ws/rooms/**", lambda route: route.close())
    bob.reload()
    card = the_card(bob, "succeeded", tool="delete_issue")
    expect(card.locator(".action__decision")).to_contain_text("Approved by alice")
    expect(final_answer(bob, request_id)).to_contain_text("I deleted ENG-3")
    expect(request_status(bob, request_id)).to_have_text("Done")
    expect(bob.locator("#conn-status")).not_to_have_attribute("data-state", "live")


def test_cancel_stops_the_stream_on_every_page(pages):
    alice, bob = pages

    ask(bob, "count to 200")
    request_id = request_of(bob, "count to 200")
    streaming = f".msg--streaming[data-request='{request_id}'] .msg__body"
    expect(alice.locator(streaming)).to_contain_text("1 2 3 4 5 ")
    expect(alice.locator(".msg__request").get_by_role("button")).to_have_count(1)
    bob.locator(".msg__request").get_by_role("button", name="Cancel").click()

    for page in (alice, bob):
        expect(request_status(page, request_id)).to_have_text("Cancelled")
        stopped = page.locator(f".msg--stopped[data-request='{request_id}']")
        expect(stopped).to_contain_text("stopped")
        expect(final_answer(page, request_id)).to_have_count(1)  # the stopped one
        expect(page.locator(".msg__request").get_by_role("button")).to_have_count(0)
    text = bob.locator(f".msg--stopped[data-request='{request_id}'] .msg__body")
    assert "200" not in text.text_content()


def test_edited_arguments_run_instead_of_the_proposal(pages, linear_standin):
    alice, bob = pages

    ask(bob, "delete ENG-3")
    card = the_card(alice, "pending")
    card.get_by_role("button", name="Edit", exact=True).click()
    card.get_by_label("Arguments (JSON)").fill('{"id": "ENG-4"')
    card.get_by_role("button", name="Approve with edits").click()
    expect(card.locator(".field-error")).to_contain_text("not valid JSON")
    # Arguments the tool refuses come back as an error frame: its reason on the
    # card, which stays pending with the form open.
    card.get_by_label("Arguments (JSON)").fill('{"identifier": "ENG-4"}')
    card.get_by_role("button", name="Approve with edits").click()
    expect(card.locator(".action__refusal")).to_contain_text("Invalid arguments")
    screenshot(alice, "room-desktop-error.png")
    expect(alice.locator(".notice--error")).to_have_count(0)
    expect(card).to_have_attribute("data-status", "pending")
    card.get_by_label("Arguments (JSON)").fill('{"id": "ENG-4"}')
    card.get_by_role("button", name="Approve with edits").click()

    request_id = request_of(bob, "delete ENG-3")
    for page in (alice, bob):
        card = the_card(page, "succeeded")
        edited = card.locator(".action__args--edited")
        expect(edited).to_contain_text("Arguments edited by alice")
        expect(edited.locator(".diff__side--before")).to_contain_text('"ENG-3"')
        expect(edited.locator(".diff__side--after")).to_contain_text('"ENG-4"')
        expect(final_answer(page, request_id)).to_contain_text(
            "with the arguments you edited"
        )
    screenshot(alice, "room-desktop-edited.png")
    deletes = effects(linear_standin, "issueDelete")
    assert [d["identifier"] for d in deletes] == ["ENG-4"]


def test_hostile_issue_text_stays_text(pages, linear_standin):
    alice, bob = pages
    issue = linear_standin.control(
        "issues",
        {"title": HOSTILE_TITLE, "description": HOSTILE_DESCRIPTION, "team": "ENG"},
    )

    ask(bob, f"show {issue['identifier']}")

    request_id = request_of(bob, f"show {issue['identifier']}")
    for page in (alice, bob):
        expect(request_status(page, request_id)).to_have_text("Done")
        card = the_card(page, "succeeded")
        expect(card).to_contain_text("get_issue")
        issue_rows = card.locator(".action__issue")
        expect(issue_rows).to_contain_text(HOSTILE_TITLE)
        expect(issue_rows).to_contain_text(HOSTILE_DESCRIPTION)
        expect(card.locator(".action__result pre")).to_contain_text(
            json.dumps(HOSTILE_TITLE)
        )
        # The demo model quotes the tool result (cut at 200 characters).
        answer = final_answer(page, request_id)
        expect(answer).to_contain_text("<script>window.__pwned=1</script>")
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("img").count() == 0
        # The one inline script is the page's snapshot, as data (json_script).
        inline = page.locator("script:not([src])")
        assert inline.count() == 1
        assert inline.get_attribute("type") == "application/json"
        assert page.locator("a[href^='javascript' i]").count() == 0
        assert page.locator("a[href*='evil.example']").count() == 0
    screenshot(bob, "room-phone-hostile.png")


MARKDOWN_CASES = [
    (
        "**bold** and *it* and `x<y`",
        "<p><strong>bold</strong> and <em>it</em> and <code>x&lt;y</code></p>",
    ),
    ("line one\nline two\n\nnext", "<p>line one<br>line two</p><p>next</p>"),
    (
        "- a\n- b\n\n1. one\n2. two",
        "<ul><li>a</li><li>b</li></ul><ol><li>one</li><li>two</li></ol>",
    ),
    (
        "```\n<b>not bold</b>\n```",
        '<pre class="md-code"><code>&lt;b&gt;not bold&lt;/b&gt;</code></pre>',
    ),
    (
        "[site](https://example.com/a)",
        '<p><a href="https://example.com/a" '
        'target="_blank" rel="noopener noreferrer nofollow">site</a></p>',
    ),
    (
        "[x](javascript:alert(1)) [y](data:text/html,hi)",
        "<p>[x](javascript:alert(1)) [y](data:text/html,hi)</p>",
    ),
    ("![alt](https://example.com/i.png)", "<p>![alt](https://example.com/i.png)</p>"),
    ("<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>"),
    ("delete_issue and snake_case_name", "<p>delete_issue and snake_case_name</p>"),
]


def test_markdown_renderer_is_small_and_safe(stack, room, contexts):
    base = stack.web()
    page = open_room(log_in(contexts(), base, "alice"), base, room.slug)

    for source, html in MARKDOWN_CASES:
        rendered = page.evaluate(
            """(source) => {
                 const box = document.createElement("div");
                 box.append(window.SafeMarkdown.render(source));
                 return box.innerHTML;
               }""",
            source,
        )
        assert rendered == html, source


class SocketSwitch:
    """Routes a page's WebSocket through Playwright so a test can cut it, keep it
    down for a while (refusing reconnects) and let the page come back by itself."""

    def __init__(self) -> None:
        self.up = True
        self.routes: list[WebSocketRoute] = []
        self.connects = 0

    def handle(self, route: WebSocketRoute) -> None:
        self.connects += 1
        if not self.up:
            route.close(code=1011, reason="test: network down")
            return
        route.connect_to_server()
        self.routes.append(route)

    def cut(self) -> None:
        self.up = False
        for route in self.routes:
            route.close(code=1012, reason="test: dropped")
        self.routes.clear()


def test_page_reconnects_and_catches_up_on_what_it_missed(
    stack, room, contexts, linear_standin
):
    base = stack.web()
    stack.worker()
    alice = open_room(log_in(contexts(), base, "alice"), base, room.slug)
    switch = SocketSwitch()
    bob_context = contexts(**PHONE)
    bob_context.route_web_socket("**/ws/rooms/**", switch.handle)
    bob = open_room(log_in(bob_context, base, "bob"), base, room.slug)

    ask(bob, "Please delete ENG-3")
    the_card(bob, "pending")
    request_id = request_of(bob, "Please delete ENG-3")
    switch.cut()
    expect(bob.locator("#conn-status")).to_have_attribute("data-state", "offline")

    # Everything below happens while bob's page is cut off.
    the_card(alice, "pending").get_by_role("button", name="Approve", exact=True).click()
    expect(final_answer(alice, request_id)).to_contain_text("I deleted ENG-3")
    expect(request_status(alice, request_id)).to_have_text("Done")
    # With the socket down, Send falls back to the REST API (with the CSRF token).
    ask(bob, "show ENG-2")
    expect(bob.get_by_label("Message to the agent")).to_have_value("")
    expect(alice.locator(".msg--user", has_text="show ENG-2")).to_have_count(1)
    # The page keeps trying while the socket is down (backoff from 0.5 s); the
    # route handler runs only while Playwright does, hence its own clock.
    for _ in range(60):
        if switch.connects >= 2:
            break
        bob.wait_for_timeout(250)
    connects_while_down = switch.connects
    switch.up = True

    expect(bob.locator("#conn-status")).to_have_attribute(
        "data-state", "live", timeout=30_000
    )
    # The fresh snapshot brings what the page missed: the card's new status (it
    # lists recent actions whatever their status), the answer and the new request.
    deleted = the_card(bob, "succeeded", tool="delete_issue")
    expect(deleted.locator(".badge")).to_have_text("Succeeded")
    expect(final_answer(bob, request_id)).to_contain_text("I deleted ENG-3")
    expect(answers(bob, request_id)).to_have_count(1)
    expect(bob.locator(".msg--tool")).to_have_count(2)
    expect(request_status(bob, request_id)).to_have_text("Done")
    expect(bob.locator(".msg--user")).to_have_count(2)
    show = request_of(bob, "show ENG-2")
    expect(final_answer(bob, show)).to_contain_text("Rate limit the public search")
    expect(answers(bob, show)).to_have_count(1)
    assert connects_while_down >= 2, "the page did not retry while the socket was down"
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_login_rooms_and_members_pages(stack, room, contexts):
    base = stack.web()
    page = contexts(**PHONE).new_page()
    page.goto(f"{base}/rooms/{room.slug}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_text("Demo mode")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".notice--error")).to_be_visible()
    screenshot(page, "login-phone.png")
    page.get_by_label("Password").fill("alice-pass")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")

    page.goto(f"{base}/")
    item = page.locator(".room-list__item", has_text="Triage")
    expect(item.locator(".role")).to_have_text("approver")
    page.get_by_label("Name").fill("Release review")
    page.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(re.compile(r"/rooms/release-review/$"))
    expect(page.locator(".room__meta .role")).to_have_text("approver")
    page.locator("details.members > summary").click()
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator(".flash")).to_contain_text("bob is now member here.")
    page.locator("details.members > summary").click()
    expect(page.locator(".members__list")).to_contain_text("bob")

    page.goto(f"{base}/")
    screenshot(page, "rooms-phone.png")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
