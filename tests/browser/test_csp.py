"""The Content-Security-Policy holds on every page people use: nothing it refuses
(no inline script or style, nothing from elsewhere) and no console error."""

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.conftest import log_in, open_room

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

# Every violation the page reports, kept before any of its own scripts run.
VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def watched(page: Page) -> list[str]:
    errors: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text}")

    page.on("console", note)
    return errors


def assert_clean(page: Page, errors: list[str]) -> None:
    header = page.context.request.get(page.url).headers["content-security-policy"]
    assert "script-src 'self'" in header, header
    assert page.evaluate("window.__csp") == [], page.url
    assert errors == []


def test_room_rooms_login_inbox_and_admin_pages_break_no_csp_rule(
    stack, room, alice, contexts
):
    alice.is_staff = alice.is_superuser = True
    alice.save(update_fields=["is_staff", "is_superuser"])
    base = stack.web()
    context = contexts()
    context.add_init_script(VIOLATIONS)

    login = context.new_page()
    errors = watched(login)
    login.goto(f"{base}/accounts/login/")
    assert_clean(login, errors)

    page = log_in(context, base, "alice")
    errors = watched(page)
    page.reload()
    expect(page.get_by_role("heading", name="Your rooms")).to_be_visible()
    assert_clean(page, errors)

    # The room: its modules, the vendored markdown libraries, the WebSocket.
    open_room(page, base, room.slug)
    assert_clean(page, errors)

    # The inbox (its header count polls the API) and the admin pages.
    for path in (
        "/inbox/",
        "/admin/",
        "/admin/chat/action/",
        "/admin/chat/room/",
        "/api/docs",
    ):
        page.goto(f"{base}{path}")
        page.wait_for_load_state("networkidle")
        assert_clean(page, errors)
    expect(page.locator(".swagger-ui")).to_be_visible()
