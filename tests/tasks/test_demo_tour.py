"""The README's tour agrees with the demo's data: its Linear prompts, asked by bob
in the Demo room (`manage.py demo_setup`) in the README's order, each do what the
README says, against the stand-ins' seeded data and the demo model. A tour that
deleted the only issue a later prompt searches for would fail here."""

from __future__ import annotations

import ast
from collections.abc import Callable

import pytest
from django.core.management import call_command

from chat import enqueue, services
from chat.models import Action, Message, Request, Room, User
from tasks import steps

pytestmark = pytest.mark.django_db(transaction=True)

# (what bob asks, who approves each action that waits, what the answer says), in the
# README's order ("The tour").
TOUR = [
    ("find issues about login", (), "I found 1 issue: ENG-3 Login fails on Safari"),
    ("show ENG-3", (), 'ENG-3 is "Login fails on Safari"'),
    (
        "create an issue titled Flaky CI",
        ("alice",),
        "Done: I created ENG-13 (Flaky CI)",
    ),
    (
        "comment on ENG-5: looking into it",
        ("alice",),
        "Done: I added a comment to ENG-5",
    ),
    ("move ENG-2 to Done", ("alice",), "state is now Done"),
    (
        "delete ENG-11",
        ("alice", "carol"),
        "Done: I deleted ENG-11 (Remove the legacy v1 webhooks)",
    ),
    # Asked again after the tour's delete, as the demo agent suggests it.
    ("find issues about login", (), "I found 1 issue: ENG-3 Login fails on Safari"),
    ("count to 400", (), "398 399 400"),
    ("hello", (), '"count to 400"'),
]


def run_queued(task_queue: Callable[[], list[dict]], ran: set[str]) -> None:
    """Run what the steps queued and `ran` does not hold, one task at a time and
    oldest first, as a worker would, until nothing new is queued."""
    for _ in range(30):
        waiting = [m for m in reversed(task_queue()) if m["id"] not in ran]
        if not waiting:
            return
        task = waiting[0]
        ran.add(task["id"])
        args = ast.literal_eval(task["argsrepr"])
        if task["task"] == enqueue.MODEL_STEP:
            steps.model_step(request_id=args[0], step=args[1])
        elif task["task"] == enqueue.TOOL_CALL:
            steps.tool_call(action_id=args[0])
    raise AssertionError("still queueing after 30 tasks")


def test_the_readme_tour_works_in_its_order(settings, task_queue, model, linear):
    settings.DEBUG = True
    call_command("demo_setup")
    room = Room.objects.get(slug="demo")
    # The 15 s grace period after approving an update is the page's to show
    # (tests/e2e/test_policy.py); here it would only make the turn wait.
    assert room.policy_rules.filter(tool="update_issue").update(delay=0) == 1
    users = {u.username: u for u in User.objects.all()}
    ran: set[str] = set()

    for text, approvers, answer in TOUR:
        request = services.request_start(room=room, user=users["bob"], text=text)
        run_queued(task_queue, ran)
        for name in approvers:
            [action] = Action.objects.filter(request=request, status="pending")
            services.action_decide(
                action_id=str(action.pk), user=users[name], decision="approve"
            )
            run_queued(task_queue, ran)
        request.refresh_from_db()
        assert request.status == Request.Status.COMPLETED, (text, request.error)
        last = Message.objects.filter(request=request, role="assistant").last()
        assert last is not None and answer in last.content, (text, last)
