"""The README's tour, as a newcomer takes it: `python -m stack run` itself (what
`make run` runs) on a port that is not the default one, with SITE_URL unset, so the
runner derives it from the port. Bob asks in the Demo room; the mail for alice
reaches a real SMTP server (aiosmtpd); alice follows its link in Chromium, logs in
and approves; carol gives the second approval in the room; bob sees the issue
deleted. Then the long answer, reloaded in the middle of its stream.

Its screenshots (test-output/screenshots/tour-*.png) are the README's (docs/tour-*.png):
copy them there after a change to the pages."""

from __future__ import annotations

import email
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from stack.procs import free_port
from tests.browser.conftest import open_room, screenshot
from tests.browser.test_room_page import ask, final_answer, request_of, the_card
from tests.peers import Smtp
from tests.stack.test_runner import RunnerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    # `stack run` takes the stand-ins' usual ports when they look free: one runner at
    # a time on `-n 2` (tests/stack/test_runner.py is in the same group).
    pytest.mark.xdist_group("stack run"),
]

DECIDE_LINK = re.compile(r"https?://\S+/decide/\S+/")


@pytest.fixture
def tour_runner(tmp_path: Path, smtp: Smtp):
    """`python -m stack run` on a free port other than 8000, on a new database, with
    no API key (every stand-in), no SITE_URL, and mail sent to the SMTP peer."""
    env = dict(os.environ)
    for name in ("SITE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    port = free_port()
    assert port != 8000
    env.update(
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        BEAT_SCHEDULE_FILE=str(tmp_path / "beat-schedule"),
        WORKER_CONCURRENCY="4",
        # Empty, not absent: a developer's .env must not bring real keys in.
        OPENAI_API_KEY="",
        LINEAR_API_KEY="",
        GITHUB_TOKEN="",
        AGENT_MCP_SERVERS="",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp.port),
    )
    runner = RunnerProcess(env)
    try:
        runner.wait_healthy()
        yield runner
    finally:
        if runner.process.poll() is None:
            runner.interrupt()


def log_in_demo(context: BrowserContext, base: str, username: str) -> Page:
    """`username` logged in with the demo password, through the login form."""
    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    fill_login(page, username)
    expect(page.get_by_role("heading", name="Your rooms")).to_be_visible()
    return page


def fill_login(page: Page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Log in").click()


def mail_to(smtp: Smtp, address: str, timeout: float = 30) -> email.message.Message:
    """The first mail the SMTP peer received for `address`, waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for envelope in list(smtp.mails):
            if address in envelope.rcpt_tos:
                return email.message_from_bytes(envelope.content)
        time.sleep(0.2)
    raise AssertionError(f"no mail to {address} in {timeout} s")


def test_the_readme_tour_on_another_port_with_the_mail_and_its_link(
    tour_runner: RunnerProcess,
    smtp: Smtp,
    contexts: Callable[..., BrowserContext],
):
    base = f"http://127.0.0.1:{tour_runner.port}"
    output = tour_runner.output
    assert f"links       {base} (SITE_URL" in output, output
    for login in ("demo (staff", "alice and carol (approvers)", "bob (member)"):
        assert login in output, output
    for standin in ("OpenAI", "Linear", "GitHub", "MCP"):
        assert re.search(rf"^stack\s+\|\s+{standin}\s+http://", output, re.M), output

    # 1. A read runs at once.
    bob = open_room(log_in_demo(contexts(), base, "bob"), base, "demo")
    ask(bob, "find issues about login")
    found = request_of(bob, "find issues about login")
    expect(final_answer(bob, found)).to_contain_text("ENG-3 Login fails on Safari")

    # 2. A delete waits for two approvers, not bob; each is mailed a link.
    ask(bob, "delete ENG-11")
    deleting = request_of(bob, "delete ENG-11")
    card = the_card(bob, "pending", "delete_issue")
    expect(card).to_contain_text("Remove the legacy v1 webhooks")
    screenshot(bob, "tour-1-asked.png")
    mail = mail_to(smtp, "alice@example.com")
    assert "delete_issue" in mail["Subject"]
    body = mail.get_payload(decode=True).decode()
    [link] = set(DECIDE_LINK.findall(body))
    assert link.startswith(f"{base}/decide/"), link

    alice_context = contexts()
    alice = alice_context.new_page()
    alice.goto(link)
    expect(alice).to_have_url(re.compile(r"/accounts/login/\?next=/decide/"))
    fill_login(alice, "alice")
    expect(alice).to_have_url(link)
    expect(alice.locator(".decide__preview")).to_contain_text("ENG-11")
    # Her inbox, on the same port, leads to the same page.
    inbox = alice_context.new_page()
    inbox.goto(f"{base}/inbox/")
    inbox_link = inbox.locator("[data-action] a[href*='/decide/']")
    expect(inbox_link).to_have_count(1)
    assert inbox_link.get_attribute("href") == link
    inbox.close()
    alice.get_by_label("Reason").fill("Canceled long ago")
    screenshot(alice, "tour-2-mail-link.png")
    alice.get_by_role("button", name="Approve").click()
    expect(alice.locator(".flash")).to_contain_text("You approved delete_issue")
    expect(card).to_contain_text("1 of 2 approvals: alice")

    carol = open_room(log_in_demo(contexts(), base, "carol"), base, "demo")
    carol_card = the_card(carol, "pending", "delete_issue")
    expect(carol_card).to_contain_text("1 of 2 approvals: alice")
    screenshot(carol, "tour-3-second-approval.png")
    carol_card.get_by_role("button", name="Approve", exact=True).click()
    expect(final_answer(bob, deleting)).to_contain_text("I deleted ENG-11")
    the_card(bob, "succeeded", "delete_issue")
    screenshot(bob, "tour-4-done.png")

    # 3. A long answer, reloaded in the middle of its stream, ends whole.
    ask(bob, "count to 400")
    counting = request_of(bob, "count to 400")
    streaming = bob.locator(f".msg--streaming[data-request='{counting}']")
    expect(streaming).to_contain_text(re.compile(r"\b20 "))
    bob.reload()
    expect(bob.locator("#conn-status")).to_have_attribute("data-state", "live")
    answer = final_answer(bob, counting)
    expect(answer).to_contain_text("398 399 400", timeout=30_000)
    expect(answer).to_have_count(1)
