"""Triggers and schedules in the room page, in a real Chromium against the real web
process (contract: "Triggers and schedules", "Pages and admin"): an approver adds a
trigger and sees its secret once, copies its URL, and a signed delivery to that URL
shows a request "via GitHub trigger" on every page without a reload; schedules are
added, disabled, enabled and deleted; a member's page has neither panel; and the
demo's step: an issue created in the Demo room comes back "via Linear trigger"."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from playwright.sync_api import Locator, Page, expect

from chat.models import Schedule, Trigger, User
from tests.browser.conftest import PHONE, log_in, open_room, screenshot
from tests.browser.test_accessibility import serious_violations
from tests.browser.test_csp import VIOLATIONS, watched
from tests.browser.test_room_page import ask, final_answer, request_of, the_card
from tests.plugins.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def panel(page: Page, name: str) -> Locator:
    """The Triggers or Schedules panel, opened."""
    heading = page.get_by_role("heading", name=name, exact=True)
    expect(heading).to_be_visible()
    root = page.locator(f"#{name.lower()}")
    if root.get_attribute("open") is None:
        heading.click()
    expect(root.locator(".auto__status")).not_to_have_text("Loading…")
    return root


def deliver_github(url: str, secret: str, event: str, body: dict) -> tuple[int, dict]:
    """A delivery as GitHub sends one: the raw body signed with HMAC-SHA256."""
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        url,
        data=raw,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
            "User-Agent": "GitHub-Hookshot/test",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_trigger_shows_its_secret_once_and_its_deliveries_post_labelled_requests(
    stack: Stack, room, contexts
):
    base = stack.web()
    context = contexts()
    context.add_init_script(VIOLATIONS)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    alice = log_in(context, base, "alice")
    errors = watched(alice)
    open_room(alice, base, room.slug)
    bob = open_room(log_in(contexts(**PHONE), base, "bob"), base, room.slug)

    triggers = panel(alice, "Triggers")
    expect(triggers.locator(".auto__status")).to_contain_text("No triggers")
    # The server's refusal, in its words, beside the form.
    triggers.get_by_label("Prompt").fill("Look at {{ issue title }}")
    triggers.get_by_role("button", name="Add trigger").click()
    expect(triggers.locator("#trigger-error")).to_contain_text("{{")
    assert not Trigger.objects.exists()

    triggers.get_by_label("Source").select_option("github")
    triggers.get_by_label("Name").fill("New issues")
    triggers.get_by_label("Events").fill("issues.opened")
    triggers.get_by_label("Prompt").fill("Triage {{ issue.title }} ({{ $event }})")
    triggers.get_by_role("button", name="Add trigger").click()
    item = triggers.locator(".auto__item")
    expect(item).to_have_count(1)
    expect(triggers.locator("#trigger-error")).to_be_hidden()
    for text in ("GitHub", "New issues", "Enabled", "Events: issues.opened"):
        expect(item).to_contain_text(text)
    secret_box = item.locator(".auto__secret")
    expect(secret_box).to_contain_text("shown once")
    secret = item.locator(".auto__secret-value").text_content() or ""
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    screenshot(alice, "room-desktop-trigger-secret.png")

    item.get_by_role("button", name="Copy URL").click()
    expect(triggers.locator(".auto__status")).to_have_text("Copied the URL.")
    url = alice.evaluate("navigator.clipboard.readText()")
    trigger = Trigger.objects.get()
    assert url == item.locator(".auto__url").text_content()
    assert urlsplit(url).path == f"/hooks/{trigger.pk}"

    # The sender's own secret (Linear shows one for a webhook made in its settings).
    item.get_by_role("button", name="Set secret").click()
    item.get_by_label("Signing secret from GitHub").fill("short")
    item.get_by_role("button", name="Save secret").click()
    expect(item.locator(".auto__secret-form .field-error")).to_contain_text("16")
    secret = "a-secret-github-was-given-" + uuid.uuid4().hex
    item.get_by_label("Signing secret from GitHub").fill(secret)
    item.get_by_role("button", name="Save secret").click()
    expect(item.locator(".auto__secret-form")).to_have_count(0)
    expect(item.locator(".auto__secret")).to_have_count(0)  # the old one is void
    expect(triggers.locator(".auto__status")).to_contain_text("Saved the signing")
    trigger.refresh_from_db()
    assert trigger.secret == secret

    # A real signed delivery, to the copied URL's path on this test's web process.
    hook = base + urlsplit(url).path
    status, answer = deliver_github(
        hook, secret, "issues", {"action": "opened", "issue": {"title": "Login fails"}}
    )
    assert status == 202, answer
    for page in (alice, bob):
        message = page.locator(".msg--user", has_text="Triage Login fails")
        expect(message).to_contain_text("(issues.opened)")
        expect(message.locator(".msg__via")).to_have_text("via GitHub trigger")
        expect(message.locator(".msg__author")).to_have_text(f"{room.slug}-bot")
    screenshot(bob, "room-phone-via-trigger.png")

    # The member's page: no panel, no secret, and the label after a reload too.
    for name in ("Triggers", "Schedules"):
        expect(bob.get_by_role("heading", name=name)).to_have_count(0)
    assert secret not in bob.content()
    bob.reload()
    expect(bob.locator(".msg__via")).to_have_text("via GitHub trigger")

    item.get_by_role("button", name="Disable").click()
    expect(item).to_contain_text("Disabled")
    expect(item.get_by_role("button", name="Enable")).to_be_visible()
    trigger.refresh_from_db()
    assert trigger.enabled is False
    status, answer = deliver_github(
        hook, secret, "issues", {"action": "opened", "issue": {"title": "Ignored"}}
    )
    assert (status, answer) == (202, {"ignored": "disabled"})
    item.get_by_role("button", name="Enable").click()
    expect(item.get_by_role("button", name="Disable")).to_be_visible()
    expect(item).to_contain_text("Fired 1 time")

    assert alice.evaluate("window.__csp") == []
    # Shown once: a reload has no secret anywhere on the page.
    alice.reload()
    triggers = panel(alice, "Triggers")
    item = triggers.locator(".auto__item")
    expect(item).to_have_count(1)
    expect(item.locator(".auto__secret")).to_have_count(0)
    assert secret not in alice.content()
    expect(alice.locator(".msg__via")).to_have_text("via GitHub trigger")
    assert alice.evaluate("window.__csp") == []
    # Chromium logs the refused POST above as an error; nothing else.
    assert [e for e in errors if "status of 400" not in e] == []

    item.get_by_role("button", name="Delete").click()
    expect(triggers.locator(".auto__item")).to_have_count(0)
    expect(triggers.locator(".auto__status")).to_contain_text("No triggers")
    assert not Trigger.objects.exists()
    status, _ = deliver_github(hook, secret, "issues", {"action": "opened"})
    assert status == 404


def test_schedules_are_added_disabled_enabled_and_deleted(stack: Stack, room, contexts):
    base = stack.web()
    # axe is injected as an inline script: this context bypasses the CSP (the test
    # above keeps it).
    alice = open_room(log_in(contexts(bypass_csp=True), base, "alice"), base, room.slug)

    schedules = panel(alice, "Schedules")
    expect(schedules.locator(".auto__status")).to_contain_text("No schedules")
    schedules.get_by_label("Cron").fill("61 * * * *")
    schedules.get_by_label("Time zone").fill("Europe/Paris")
    schedules.get_by_label("Prompt").fill("List the issues opened today.")
    schedules.get_by_role("button", name="Add schedule").click()
    expect(schedules.locator("#schedule-error")).to_be_visible()
    assert not Schedule.objects.exists()

    schedules.get_by_label("Cron").fill("*/5 * * * *")
    schedules.get_by_label("Name").fill("Every five minutes")
    schedules.get_by_role("button", name="Add schedule").click()
    item = schedules.locator(".auto__item")
    expect(item).to_have_count(1)
    expect(schedules.locator("#schedule-error")).to_be_hidden()
    for text in ("*/5 * * * *", "Europe/Paris", "Every five minutes", "Enabled"):
        expect(item).to_contain_text(text)
    expect(item.locator(".auto__next")).to_have_text(re.compile(r"^Next run: \S+"))
    expect(item.locator(".auto__next time")).to_have_count(1)
    schedule = Schedule.objects.get()
    assert schedule.timezone == "Europe/Paris" and schedule.next_run is not None

    schedules.scroll_into_view_if_needed()
    screenshot(alice, "room-desktop-schedules.png")
    triggers = panel(alice, "Triggers")
    assert serious_violations(alice) == []
    triggers.locator("summary").click()

    item.get_by_role("button", name="Disable").click()
    expect(item).to_contain_text("Disabled")
    expect(item.locator(".auto__next")).to_have_text("Next run: none while disabled")
    schedule.refresh_from_db()
    assert schedule.enabled is False and schedule.next_run is None

    item.get_by_role("button", name="Enable").click()
    expect(item).to_contain_text("Enabled")
    expect(item.locator(".auto__next time")).to_have_count(1)

    item.get_by_role("button", name="Delete").click()
    expect(schedules.locator(".auto__item")).to_have_count(0)
    assert not Schedule.objects.exists()


def test_an_issue_created_in_the_demo_comes_back_via_the_linear_trigger(
    stack: Stack, contexts, linear_standin, settings
):
    """`make run`'s demo: the Demo room's Linear trigger is registered with the Linear
    stand-in; bob asks for an issue, alice approves, the stand-in sends its signed
    `Issue.create` to the trigger, and the agent answers the bot's request."""
    base = stack.web()
    stack.worker()
    settings.DEBUG = True
    # What `make run` sets for demo_setup: where hooks are reached, the stand-in.
    settings.SITE_URL = base
    settings.LINEAR_API_URL = linear_standin.url
    call_command("demo_setup", "--linear-standin-webhook")
    for person in User.objects.filter(username__in=["alice", "bob"]):
        person.set_password(f"{person.username}-pass")  # what log_in types
        person.save(update_fields=["password"])
    alice = open_room(log_in(contexts(), base, "alice"), base, "demo")
    bob = open_room(log_in(contexts(**PHONE), base, "bob"), base, "demo")

    ask(bob, "create an issue titled Flaky CI")
    the_card(alice, "pending").get_by_role("button", name="Approve", exact=True).click()

    for page in (alice, bob):
        message = page.locator(".msg--user", has_text="a new Linear issue")
        expect(message).to_contain_text("Show ENG-13")
        expect(message).to_contain_text("“Flaky CI”")
        expect(message.locator(".msg__via")).to_have_text("via Linear trigger")
        expect(message.locator(".msg__author")).to_have_text("demo-bot")
    request = request_of(bob, "a new Linear issue")
    expect(final_answer(bob, request)).to_contain_text('ENG-13 is "Flaky CI"')
    [delivery] = linear_standin.control("webhook_deliveries")["deliveries"]
    assert delivery["status"] == 202, delivery
    screenshot(alice, "room-desktop-via-linear-trigger.png")
