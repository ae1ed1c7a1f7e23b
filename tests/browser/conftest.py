"""A real Chromium (Debian's) driven by Playwright against the real processes of
`stack`: uvicorn, a Celery worker, the local OpenAI and Linear servers."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
    sync_playwright,
)

from tests.browser.chromium import launch_chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
# Real processes: a model call, a worker hop and a browser round trip, on a busy
# machine, can take longer than Playwright's 5 s default.
expect.set_options(timeout=15_000)

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}

# Set in every page before our script runs: notes whether a streaming answer was
# ever on screen with text, so a test can tell "streamed" from "appeared at once".
STREAM_WATCH = """
window.__sawStreaming = false;
new MutationObserver(() => {
  for (const node of document.querySelectorAll(".msg--streaming .msg__body")) {
    if (node.textContent.trim()) window.__sawStreaming = true;
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


# Module scope: only one sync Playwright may run in a thread at a time, and a test
# module that starts its own (test_admin_approve.py) must find none running.
@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API keeps an event loop running in this thread, so Django's
    # async-safety check would refuse the ORM calls that fixtures and tests make;
    # lifted for browser tests only (the processes they start keep it).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # A skip (no Chromium) must stop Playwright too: its event loop would otherwise
    # keep running in this thread and fail every later test's database access.
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Opens browser contexts (one per person) and closes them after the test, which
    fails if a page threw (the room's modules would otherwise fail silently)."""
    opened: list[BrowserContext] = []
    thrown: list[str] = []

    def open_context(**options: object) -> BrowserContext:
        context = browser.new_context(**{**DESKTOP, **options})
        context.set_default_timeout(20_000)
        context.add_init_script(STREAM_WATCH)
        context.on("page", lambda page: page.on("pageerror", _note(thrown, page)))
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()
    assert not thrown, f"uncaught errors in the page: {thrown}"


def _note(thrown: list[str], page: Page) -> Callable[[Exception], None]:
    return lambda error: thrown.append(f"{page.url}: {error}")


def log_in(context: BrowserContext, base_url: str, username: str) -> Page:
    """Logs `username` in through the real login form; returns the rooms page."""
    page = context.new_page()
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-pass")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your rooms")).to_be_visible()
    return page


def open_room(page: Page, base_url: str, slug: str) -> Page:
    """Opens a room and waits until its WebSocket is live (snapshot applied)."""
    page.goto(f"{base_url}/rooms/{slug}/")
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    return page


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=False)
