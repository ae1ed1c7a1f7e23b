"""A staff member approves an action in the Django admin, in a real Chromium, against
the real processes: the room hears of it at once and the agent finishes the turn."""

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websockets
from django.contrib.admin.models import LogEntry
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from chat import services
from chat.models import Action, Request
from tests.browser.chromium import launch_chromium
from tests.plugins.people import token_for
from tests.plugins.stack import dump, effects, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


class RoomWatcher:
    """A token client of the room's WebSocket, on its own thread and event loop so it
    never competes with Playwright's loop in the test's thread."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.frames: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    def __enter__(self) -> "RoomWatcher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)

    async def _run(self) -> None:
        headers = {"Authorization": f"Token {self.token}"}
        try:
            async with websockets.connect(self.url, additional_headers=headers) as ws:
                while not self.stopping.is_set():
                    try:
                        text = await asyncio.wait_for(ws.recv(), 0.2)
                    except TimeoutError:
                        continue
                    self.frames.put(json.loads(text))
        except Exception as exc:  # reported to the test, which fails with it
            self.frames.put({"type": "watcher-error", "detail": repr(exc)})

    def next(self, matches: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The next frame that `matches`, skipping others; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(frame)
            assert frame["type"] != "watcher-error", frame["detail"]
            if matches(frame):
                return frame
        raise AssertionError(f"no matching frame in {timeout}s; saw {dump(self.seen)}")


@pytest.fixture
def admin_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    # Playwright's sync API keeps an event loop running in this thread, so Django's
    # async-safety check would refuse the ORM calls this test makes meanwhile; lifted
    # for this test only (the processes it starts keep it).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        yield context.new_page()
        # While Playwright's loop runs, asgiref keeps Django's connections in a
        # context variable instead of the thread-local slot: the ones the test opened
        # meanwhile must be closed here, or PostgreSQL refuses to drop the test
        # database ("being accessed by other users").
        connections.close_all()
        context.close()
        browser.close()


def action_event(action: Action, status: str) -> Callable[[dict], bool]:
    def matches(frame: dict) -> bool:
        return (
            frame["type"] == "action"
            and frame["action"]["id"] == str(action.pk)
            and frame["action"]["status"] == status
        )

    return matches


def test_admin_approval_reaches_the_room_and_runs_once(
    stack, room, alice, bob, staff_decider, linear_standin, admin_page
):
    stack.worker()
    base = stack.web()
    request = services.request_start(room=room, user=bob, text="Please delete ENG-3")
    wait_for(
        lambda: Request.objects.get(pk=request.pk).status == "awaiting_approval",
        timeout=30,
        what="the request to wait for approval",
    )
    action = Action.objects.get(request=request)
    ws_url = base.replace("http://", "ws://") + f"/ws/rooms/{room.slug}/"

    with RoomWatcher(ws_url, token_for(alice)) as watcher:
        snapshot = watcher.next(lambda f: f["type"] == "snapshot")
        assert [a["id"] for a in snapshot["actions"]] == [str(action.pk)]

        page = admin_page
        change = f"/admin/chat/action/{action.pk}/change/"
        page.goto(f"{base}/admin/login/?next={change}")
        page.get_by_label("Username").fill("sam")
        page.get_by_label("Password").fill("sam-pass")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("Waiting for a decision")).to_be_visible()
        expect(page.locator("#decision-panel")).to_contain_text(
            "delete ENG-3 'Login fails on Safari'"
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "admin-action.png"), full_page=True)

        page.get_by_role("button", name="Approve", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text(
            "Approved: delete ENG-3 'Login fails on Safari'."
        )
        page.screenshot(path=str(SCREENSHOTS / "admin-action-approved.png"))

        approved = watcher.next(action_event(action, "approved"))
        assert approved["action"]["decided_by"] == "sam"
        assert approved["action"]["decided_via"] == "admin"
        watcher.next(action_event(action, "succeeded"))
        final = watcher.next(
            lambda f: (
                f["type"] == "message"
                and f["message"]["role"] == "assistant"
                and f["message"]["request"] == str(request.pk)
            )
        )
        assert "ENG-3" in final["message"]["content"]
        watcher.next(
            lambda f: f["type"] == "request" and f["request"]["status"] == "completed"
        )

    assert len(effects(linear_standin, "issueDelete")) == 1
    page.goto(f"{base}/admin/chat/action/")
    expect(page.locator("#result_list")).to_contain_text("succeeded (sam, admin)")
    page.screenshot(path=str(SCREENSHOTS / "admin-actions-list.png"))
    entry = LogEntry.objects.get(object_id=str(action.pk))
    assert (entry.user, entry.change_message) == (
        staff_decider,
        "Approved in the admin. No reason given.",
    )


HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def test_hostile_text_is_inert_in_the_admin(
    stack, room, bob, staff_decider, admin_page
):
    """Invariant: arguments, previews and messages from the model or Linear render
    as text in the admin: no script runs, no element is injected."""
    base = stack.web()
    request = Request.objects.create(
        room=room, user=bob, step=1, status=Request.Status.AWAITING_APPROVAL
    )
    action = Action.objects.create(
        request=request,
        room=room,
        step=0,
        tool="update_issue",
        tool_call_id="c1",
        arguments={"id": "ENG-3", "title": HOSTILE + "[x](javascript:alert(1))"},
        requires_approval=True,
        status=Action.Status.PENDING,
        preview={"identifier": "ENG-3", "title": HOSTILE, "state": "Todo"},
    )
    page = admin_page
    page.goto(f"{base}/admin/login/?next=/admin/chat/action/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill("sam-pass")
    page.get_by_role("button", name="Log in").click()
    for path in (
        "/admin/chat/action/",
        f"/admin/chat/action/{action.pk}/change/",
        f"/admin/chat/request/{request.pk}/change/",
    ):
        page.goto(f"{base}{path}")
        expect(page.get_by_text("window.__pwned=1").first).to_be_visible()
        assert page.evaluate("typeof window.__pwned") == "undefined", path
        assert page.locator("img[src=x]").count() == 0, path
        assert page.locator("a[href^=javascript]").count() == 0, path
