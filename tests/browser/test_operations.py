"""The admin's Operations page in Chromium: staff see the last day's and week's
turns, first-token times, tokens, pending actions, approval waits and failed
deliveries drawn by the vendored uPlot, with nothing the Content-Security-Policy
refuses; others are sent to the admin's login."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from chat.models import Action, Delivery, Request
from tests.browser.conftest import SCREENSHOTS, log_in
from tests.browser.test_csp import VIOLATIONS, assert_clean, watched

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHARTS = 6


def _turn(room, user, status: str, hours_ago: float, **fields) -> Request:
    request = Request.objects.create(room=room, user=user, status=status, **fields)
    when = timezone.now() - timedelta(hours=hours_ago)
    Request.objects.filter(pk=request.pk).update(created=when, updated=when)
    return request


def _action(request, tool: str, status: str, waited_minutes: float, hours_ago: float):
    action = Action.objects.create(
        request=request,
        room=request.room,
        step=0,
        tool=tool,
        tool_call_id=f"call-{Action.objects.count()}",
        requires_approval=True,
        status=status,
    )
    decided = timezone.now() - timedelta(hours=hours_ago)
    created = decided - timedelta(minutes=waited_minutes)
    decided_at = None if status == Action.Status.PENDING else decided
    via = "" if decided_at is None else Action.Via.ROOM
    Action.objects.filter(pk=action.pk).update(
        created=created, decided_at=decided_at, decided_via=via, updated=decided
    )
    return action


@pytest.fixture
def history(room, bob) -> None:
    """A day of turns: mostly answered, some failed, one cancelled; two models."""
    for hour in range(20):
        for n in range(1 + hour % 4):
            _turn(
                room,
                bob,
                Request.Status.COMPLETED,
                hour + n / 10,
                model="gpt-4o-mini" if n % 2 == 0 else "gpt-4o",
                first_token_seconds=0.3 + 0.1 * n + 0.05 * (hour % 5),
                usage={"prompt_tokens": 900, "completion_tokens": 120 + 10 * n},
            )
    for hours_ago in (2, 7, 15):
        _turn(room, bob, Request.Status.FAILED, hours_ago, model="gpt-4o-mini")
    _turn(room, bob, Request.Status.CANCELLED, 5)
    waiting = _turn(room, bob, Request.Status.AWAITING_APPROVAL, 0.5)
    for minutes, hours_ago, status in (
        (3, 10, Action.Status.SUCCEEDED),
        (45, 6, Action.Status.SUCCEEDED),
        (180, 3, Action.Status.DENIED),
    ):
        _action(waiting, "delete_issue", status, minutes, hours_ago)
    _action(waiting, "create_issue", Action.Status.SUCCEEDED, 1, 4)
    _action(waiting, "update_issue", Action.Status.PENDING, 30, 0.5)
    for hours_ago in (1, 9):
        delivery = Delivery.objects.create(
            key=f"failed-{hours_ago}",
            channel=Delivery.Channel.EMAIL,
            event="action.pending",
            room=room,
            to="alice@example.com",
            body="...",
            status=Delivery.Status.FAILED,
        )
        moment = timezone.now() - timedelta(hours=hours_ago)
        Delivery.objects.filter(pk=delivery.pk).update(updated=moment)


def total(page: Page, name: str):
    return page.locator(f'[data-total="{name}"]')


def painted(page: Page, chart: str) -> int:
    """Pixels of the chart's plot canvas that are not blank."""
    return page.evaluate(
        """(chart) => {
          const canvas = document.querySelector(`[data-chart="${chart}"] canvas`);
          const pixels = canvas.getContext("2d")
            .getImageData(0, 0, canvas.width, canvas.height).data;
          let seen = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) seen++;
          return seen;
        }""",
        chart,
    )


def test_staff_see_the_last_day_and_week_in_charts(stack, alice, contexts, history):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    base = stack.web()
    context = contexts()
    context.add_init_script(VIOLATIONS)
    page = log_in(context, base, "alice")
    errors = watched(page)

    page.goto(f"{base}/admin/")
    page.get_by_role("link", name="Turns, model latency, tokens").click()
    expect(page.get_by_role("heading", name="Turns by outcome")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-charts-drawn", str(CHARTS))
    completed = sum(1 + hour % 4 for hour in range(20))
    expect(total(page, "completed")).to_have_text(str(completed))
    expect(total(page, "failed")).to_have_text("3")
    expect(total(page, "cancelled")).to_have_text("1")
    expect(total(page, "pending")).to_have_text("1")
    expect(total(page, "first-token")).to_contain_text(" s / ")
    expect(
        page.get_by_role("rowheader", name="Tokens, gpt-4o", exact=True)
    ).to_be_visible()
    for name in (
        "Time to first token (p50, p95)",
        "Tokens by model",
        "Actions pending",
        "Approval wait by tool (p50, p95)",
        "Deliveries failed",
    ):
        expect(page.get_by_role("heading", name=name)).to_be_visible()
    assert page.locator(".uplot canvas").count() == CHARTS
    for chart in ("turns", "first_token", "tokens", "approval_wait", "pending"):
        assert painted(page, chart) > 500, chart
    # The approval chart names its tools on the axis, and its legend the waits.
    expect(page.locator('[data-chart="approval_wait"]')).to_contain_text("p95")
    assert_clean(page, errors)
    # docs/operations.png is a copy of this one, taken when the page changes.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "operations.png"), full_page=True)

    page.get_by_role("link", name="Last week").click()
    expect(page.locator(".ops-totals caption")).to_have_text("Over the last week")
    expect(page.locator("body")).to_have_attribute("data-charts-drawn", str(CHARTS))
    expect(total(page, "completed")).to_have_text(str(completed))
    assert_clean(page, errors)


def test_people_who_are_not_staff_get_the_admin_login(stack, bob, contexts):
    base = stack.web()
    page = log_in(contexts(), base, "bob")
    page.goto(f"{base}/admin/operations/")
    expect(page).to_have_url(f"{base}/admin/login/?next=/admin/operations/")
    assert "operations-data" not in page.content()
