"""Accessibility in a real Chromium against the real processes: axe-core finds no
serious or critical violation on the login page, the room, the inbox and the
decision page; asking, approving, retracting and denying work with the keyboard
alone, with focus visible; and the room's live region says each update once."""

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from chat import services
from chat.links import decide_token
from chat.models import Action, Room
from tests.browser.conftest import log_in, open_room
from tests.browser.test_room_page import the_card
from tests.e2e.test_agent import pending
from tests.plugins.stack import Stack, effects

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

# Everything the room's live region is told, kept before the page's scripts run.
SAID = """
window.__said = [];
new MutationObserver((changes) => {
  for (const change of changes) {
    if (!change.target.closest || !change.target.closest("#timeline-live")) continue;
    for (const node of change.addedNodes) window.__said.push(node.textContent);
  }
}).observe(document, {subtree: true, childList: true});
"""


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    # axe is injected as an inline script: the context that runs it bypasses the
    # CSP (a test tool, not the page's own code).
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']}))"
        ".violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5)}))"
    )
    return [
        f"{page.url}: {v['id']} ({v['impact']}): {v['help']} at {v['nodes']}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_nothing_serious_on_login_room_inbox_and_decision_pages(
    stack: Stack, room: Room, alice, bob, contexts, linear_standin
):
    base = stack.web()
    stack.worker()
    request = services.request_start(room=room, user=bob, text="Please delete ENG-3")
    [action] = pending(request)
    context = contexts(bypass_csp=True)
    found: list[str] = []

    login = context.new_page()
    login.goto(f"{base}/accounts/login/")
    found += serious_violations(login)

    page = log_in(context, base, "alice")
    found += serious_violations(page)  # the rooms list, for good measure

    open_room(page, base, room.slug)
    expect(the_card(page, "pending").get_by_role("button", name="Deny")).to_be_visible()
    found += serious_violations(page)

    page.goto(f"{base}/inbox/")
    expect(page.locator(f'[data-action="{action.pk}"]')).to_be_visible()
    found += serious_violations(page)

    page.goto(f"{base}/decide/{decide_token(action.pk)}/")
    expect(page.get_by_role("button", name="Approve")).to_be_visible()
    found += serious_violations(page)

    # The page a member who may not vote gets from the same link.
    member = log_in(contexts(bypass_csp=True), base, "bob")
    member.goto(f"{base}/decide/{decide_token(action.pk)}/")
    expect(
        member.get_by_role("heading", name="You can't decide this action")
    ).to_be_visible()
    found += serious_violations(member)

    assert found == []


def test_axe_finds_nothing_serious_in_the_governance_controls(
    stack: Stack, room: Room, alice, bob, contexts, linear_standin
):
    """Approve all / Deny all and the grant button, a grant counting down and an
    escalating rule in the policy panel, the Decision stats panel."""
    services.policy_create(
        room=room,
        actor=alice,
        data={"tool": "delete_issue", "escalate_after": 600, "escalate_to": ["bob"]},
    )
    base = stack.web()
    stack.worker()
    granted = services.request_start(room=room, user=bob, text="comment on ENG-5: hi")
    [comment] = pending(granted)
    services.action_decide(
        action_id=str(comment.pk), user=alice, decision="approve", grant={"seconds": 60}
    )
    request = services.request_start(room=room, user=bob, text="delete ENG-3 ENG-4")
    pending(request, count=2)
    page = open_room(log_in(contexts(bypass_csp=True), base, "alice"), base, room.slug)
    bar = page.locator(".batch")
    expect(bar.get_by_role("button", name="Approve all")).to_be_visible()
    expect(
        page.get_by_role("button", name="Approve and allow for 1 hour")
    ).to_have_count(2)
    expect(page.locator(".action__escalation").first).to_contain_text(
        "Escalates to bob"
    )
    page.locator("#policy summary").click()
    expect(page.locator(".policy__expires")).to_contain_text("Expires in")
    page.locator("#stats summary").click()
    expect(page.get_by_role("table", name="Approvers, last 30 days")).to_be_visible()
    found = serious_violations(page)
    bar.get_by_role("button", name="Deny all").click()
    expect(bar.get_by_label("Why deny them all?")).to_be_focused()
    found += serious_violations(page)
    assert found == []


def tab_to(page: Page, target: Locator, limit: int = 120) -> None:
    """Presses Tab until `target` has focus (failing after `limit` presses), and
    checks that focus is visible on it."""
    target.wait_for()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("(node) => node === document.activeElement"):
            break
    else:
        raise AssertionError(f"Tab never reached {target}")
    assert_focus_visible(target)


def assert_focus_visible(target: Locator) -> None:
    style = target.evaluate(
        "(node) => { const s = getComputedStyle(node);"
        " return {focus: node.matches(':focus-visible'), outline: s.outlineStyle,"
        " width: s.outlineWidth, shadow: s.boxShadow}; }"
    )
    assert style["focus"], style
    assert style["outline"] != "none" and style["width"] != "0px", style


def focused(page: Page) -> str:
    return page.evaluate(
        "(() => { const n = document.activeElement;"
        " return n ? (n.textContent || n.id || n.tagName).trim() : ''; })()"
    )


def test_keyboard_alone_asks_approves_retracts_and_denies(
    stack: Stack,
    room: Room,
    alice,
    contexts: Callable[..., BrowserContext],
    linear_standin,
    openai_standin,
):
    services.policy_create(
        room=room,
        actor=alice,
        data={"tool": "delete_issue", "mode": "ask", "delay": 60},
    )
    openai_standin.control("config", {"token_delay": 0.02})
    base = stack.web()
    stack.worker()
    context = contexts()
    context.add_init_script(SAID)
    page = open_room(log_in(context, base, "alice"), base, room.slug)

    # Ask: Tab from the top of the page to the message box, type, Enter.
    page.locator("body").focus()
    box = page.get_by_label("Message to the agent")
    tab_to(page, box)
    page.keyboard.type("Please delete ENG-3")
    page.keyboard.press("Enter")
    card = the_card(page, "pending")
    expect(page.locator("#timeline-live")).to_contain_text(
        "Action delete_issue waits for your approval."
    )

    # Approve: Tab to the card's button, Enter. Focus stays on the card, on its
    # Retract button once the approval waits out the rule's delay.
    tab_to(page, card.get_by_role("button", name="Approve", exact=True))
    page.keyboard.press("Enter")
    retract = the_card(page, "approved").get_by_role("button", name="Retract")
    expect(retract).to_be_focused()
    assert_focus_visible(retract)

    # Retract: Enter on the focused button puts it back to pending.
    page.keyboard.press("Enter")
    card = the_card(page, "pending")
    expect(card.locator(".action__retraction")).to_contain_text("retracted by alice")
    expect(page.locator("#timeline-live")).to_contain_text(
        "Action delete_issue: approved by alice."
    )

    # Deny: Tab to Deny, Enter opens the reason (focused), type, Enter confirms.
    tab_to(page, card.get_by_role("button", name="Deny"))
    page.keyboard.press(" ")
    reason = card.get_by_label("Why deny? The agent is told this reason.")
    expect(reason).to_be_focused()
    page.keyboard.type("Not this week")
    page.keyboard.press("Enter")
    card = the_card(page, "denied")
    expect(card.locator(".action__reason-text")).to_have_text("Not this week")
    expect(page.locator(".msg--assistant:not(.msg--streaming)")).to_have_count(1)
    assert effects(linear_standin, "issueDelete") == []
    assert Action.objects.get().status == Action.Status.DENIED

    # The live region said the answer once, whole, however many deltas streamed.
    expect(page.locator("#timeline-live")).to_contain_text("Agent:")
    said = page.evaluate("window.__said")
    answers = [line for line in said if line.startswith("Agent:")]
    assert len(answers) == 1, said
    assert said.count("The agent is answering…") == 1, said
    assert not any(line.startswith("alice:") for line in said), said
