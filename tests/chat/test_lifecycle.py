"""Recovery and the lifecycle's rules: the sweep, approval expiry, allowed changes.

The sweep is what keeps a turn alive when a worker dies or an enqueue is lost; its
effect is a Celery message, read back from this run's queue in Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import enqueue, services
from chat.models import Action, IllegalTransition, Message, Request, Room, User
from tests.chat.test_api import pending_action

Queue = Callable[[], list[dict]]


def _queued(read: Queue) -> list[tuple[str, str]]:
    return [(m["task"], m["argsrepr"]) for m in read()]


def _ago(seconds: float) -> timezone.datetime:
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def action(room: Room, bob: User) -> Action:
    return pending_action(room, bob)


# The sweep --------------------------------------------------------------------------


def test_sweep_requeues_a_step_whose_lease_ran_out(
    room: Room,
    bob: User,
    task_queue: Queue,
) -> None:
    turn = services.request_start(room=room, user=bob, text="Summarise ENG-3.")
    services.step_claim(request_id=turn.pk, step=0)
    Request.objects.filter(pk=turn.pk).update(lease_until=_ago(1))
    assert services.sweep() == {
        "steps": 1,
        "actions": 0,
        "abandoned": 0,
        "expired": 0,
        "escalated": 0,
        "rules_expired": 0,
        "reminded": 0,
        "deliveries": 0,
        "advanced": 0,
        "forgotten": 0,
        "scheduled": 0,
        "skipped_slots": 0,
    }
    assert _queued(task_queue) == [(enqueue.MODEL_STEP, repr((str(turn.pk), 0)))]


def test_sweep_leaves_a_step_with_a_live_lease_alone(
    room: Room,
    bob: User,
    task_queue: Queue,
) -> None:
    turn = services.request_start(room=room, user=bob, text="Summarise ENG-3.")
    services.step_claim(request_id=turn.pk, step=0)
    assert services.sweep()["steps"] == 0
    assert _queued(task_queue) == []


def test_sweep_requeues_a_new_request_whose_enqueue_was_lost(
    room: Room,
    bob: User,
    task_queue: Queue,
    settings,
) -> None:
    turn = services.request_start(room=room, user=bob, text="Summarise ENG-3.")
    # Just made: its own enqueue may still be on its way, so the sweep waits.
    assert services.sweep()["steps"] == 0
    Request.objects.filter(pk=turn.pk).update(
        updated=_ago(settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    )
    services.sweep()
    assert _queued(task_queue) == [(enqueue.MODEL_STEP, repr((str(turn.pk), 0)))]


def test_sweep_queues_a_waiting_task_once_per_claim_not_on_every_sweep(
    room: Room,
    bob: User,
    task_queue: Queue,
    settings,
) -> None:
    """A step whose task waits behind a long queue looks lost to the sweep; queued
    again on every sweep, copies piled up faster than workers drained them (the
    chaos run saw 72,000). Once per claim: after the step is claimed and its lease
    runs out, the sweep queues it once more."""
    turn = services.request_start(room=room, user=bob, text="Summarise ENG-3.")
    stale = _ago(settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    Request.objects.filter(pk=turn.pk).update(updated=stale)
    for _ in range(3):
        services.sweep()
    step = (enqueue.MODEL_STEP, repr((str(turn.pk), 0)))
    assert _queued(task_queue) == [step]

    assert services.step_claim(request_id=turn.pk, step=0) is not None
    Request.objects.filter(pk=turn.pk).update(lease_until=_ago(1))
    for _ in range(3):
        services.sweep()
    assert _queued(task_queue) == [step, step]


def test_sweep_requeues_an_approved_action_never_enqueued(
    alice: User,
    action: Action,
    task_queue: Queue,
    settings,
) -> None:
    # Approved, but the process died between the commit and the enqueue.
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    assert _queued(task_queue) == []
    Action.objects.filter(pk=action.pk).update(
        updated=_ago(settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    )
    assert services.sweep()["actions"] == 1
    assert _queued(task_queue) == [(enqueue.TOOL_CALL, repr((str(action.pk),)))]


def test_sweep_requeues_a_tool_call_whose_lease_ran_out(
    alice: User,
    action: Action,
    task_queue: Queue,
) -> None:
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    services.action_claim(action_id=action.pk)
    assert services.sweep()["actions"] == 0
    Action.objects.filter(pk=action.pk).update(lease_until=_ago(1))
    assert services.sweep()["actions"] == 1
    assert _queued(task_queue) == [(enqueue.TOOL_CALL, repr((str(action.pk),)))]


def test_sweep_does_not_requeue_a_turn_waiting_for_approval(
    action: Action,
    task_queue: Queue,
    settings,
) -> None:
    Request.objects.filter(pk=action.request_id).update(
        updated=_ago(settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    )
    assert services.sweep() == {
        "steps": 0,
        "actions": 0,
        "abandoned": 0,
        "expired": 0,
        "escalated": 0,
        "rules_expired": 0,
        "reminded": 0,
        "deliveries": 0,
        "advanced": 0,
        "forgotten": 0,
        "scheduled": 0,
        "skipped_slots": 0,
    }
    assert _queued(task_queue) == []


def test_sweep_finishes_a_denial_whose_process_died_before_advancing_the_turn(
    alice: User,
    action: Action,
    task_queue: Queue,
    settings,
    django_capture_on_commit_callbacks: Callable,
) -> None:
    """What a crash between the decision's commit and `request_advance` leaves: the
    action denied (the model's tool result written), the request still awaiting
    approval with nothing pending, no step queued. The sweep moves it on."""
    Action.objects.filter(pk=action.pk).update(
        status=Action.Status.DENIED, decided_by=alice, decided_via="api"
    )
    request = Request.objects.get(pk=action.request_id)
    # Just decided: its own process may still be advancing it.
    services.sweep()
    assert Request.objects.get(pk=request.pk).status == Request.Status.AWAITING_APPROVAL
    grace = _ago(settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    Action.objects.filter(pk=action.pk).update(updated=grace)
    Request.objects.filter(pk=request.pk).update(updated=grace)

    with django_capture_on_commit_callbacks(execute=True):
        swept = services.sweep()
    request.refresh_from_db()
    assert request.status == Request.Status.RUNNING
    assert _queued(task_queue) == [
        (enqueue.MODEL_STEP, repr((str(request.pk), request.step)))
    ]
    assert swept["advanced"] == 1
    # Once advanced, it is left to its step.
    assert services.sweep()["advanced"] == 0


def test_sweep_finishes_an_expiry_whose_process_died_before_advancing_the_turn(
    action: Action,
    task_queue: Queue,
    settings,
    django_capture_on_commit_callbacks: Callable,
) -> None:
    """`action_expire_overdue` commits each expiry, then advances; a beat killed in
    between leaves the only action expired and the request awaiting approval. The
    next sweep moves it on (issue 27)."""
    grace = _ago(settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    Action.objects.filter(pk=action.pk).update(
        status=Action.Status.EXPIRED, decided_via="system", updated=grace
    )
    Request.objects.filter(pk=action.request_id).update(updated=grace)
    with django_capture_on_commit_callbacks(execute=True):
        swept = services.sweep()
    request = Request.objects.get(pk=action.request_id)
    assert (request.status, swept["expired"], swept["advanced"]) == (
        Request.Status.RUNNING,
        0,
        1,
    )
    assert _queued(task_queue) == [
        (enqueue.MODEL_STEP, repr((str(request.pk), request.step)))
    ]


def test_sweep_files_a_request_left_running_with_an_action_pending(
    action: Action, task_queue: Queue, settings
) -> None:
    """A retract (approved back to pending) whose process died before advancing: no
    worker holds the request, so it would count as running for its author."""
    grace = _ago(settings.AGENT_SWEEP_GRACE_SECONDS + 1)
    Action.objects.filter(pk=action.pk).update(updated=grace)
    Request.objects.filter(pk=action.request_id).update(
        status=Request.Status.RUNNING, updated=grace
    )
    swept = services.sweep()
    request = Request.objects.get(pk=action.request_id)
    assert request.status == Request.Status.AWAITING_APPROVAL
    assert _queued(task_queue) == []
    assert swept["advanced"] == 1


def test_sweep_expires_an_overdue_action_and_the_model_is_told(
    action: Action,
    task_queue: Queue,
    settings,
    django_capture_on_commit_callbacks: Callable,
) -> None:
    Action.objects.filter(pk=action.pk).update(
        created=_ago(settings.AGENT_APPROVAL_TIMEOUT + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sweep()["expired"] == 1
    action.refresh_from_db()
    assert action.status == Action.Status.EXPIRED
    assert (action.decided_by, action.decided_via) == (None, Action.Via.SYSTEM)
    told = Message.objects.get(role=Message.Role.TOOL, tool_call_id="call_1")
    assert json.loads(told.content) == {
        "tool": "delete_issue",
        "status": "expired",
        "note": "Nobody approved this action in time; it expired and did not run.",
    }
    # The turn goes on: the model answers in the room.
    request = Request.objects.get(pk=action.request_id)
    assert request.status == Request.Status.RUNNING
    assert _queued(task_queue) == [
        (enqueue.MODEL_STEP, repr((str(request.pk), request.step)))
    ]


def test_action_still_within_its_approval_time_does_not_expire(
    action: Action, settings
) -> None:
    Action.objects.filter(pk=action.pk).update(
        created=_ago(settings.AGENT_APPROVAL_TIMEOUT - 60)
    )
    assert services.sweep()["expired"] == 0
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING


def test_expired_action_can_no_longer_be_approved(
    alice: User, action: Action, settings
) -> None:
    Action.objects.filter(pk=action.pk).update(
        created=_ago(settings.AGENT_APPROVAL_TIMEOUT + 1)
    )
    services.sweep()
    with pytest.raises(services.Conflict, match="no longer pending: it has expired"):
        services.action_decide(action_id=str(action.pk), user=alice, decision="approve")


# Transitions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (Request.Status.COMPLETED, Request.Status.RUNNING),
        (Request.Status.CANCELLED, Request.Status.RUNNING),
        (Request.Status.FAILED, Request.Status.COMPLETED),
        (Request.Status.QUEUED, Request.Status.AWAITING_APPROVAL),
        (Request.Status.AWAITING_APPROVAL, Request.Status.COMPLETED),
        (Request.Status.RUNNING, Request.Status.QUEUED),
    ],
)
def test_illegal_request_transition_raises(start: str, to: str) -> None:
    request = Request(status=start)
    with pytest.raises(IllegalTransition, match=f"{start} -> {to}"):
        request.move_to(to)
    assert request.status == start


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (Action.Status.PENDING, Action.Status.EXECUTING),
        (Action.Status.PENDING, Action.Status.SUCCEEDED),
        (Action.Status.DENIED, Action.Status.APPROVED),
        (Action.Status.EXPIRED, Action.Status.APPROVED),
        (Action.Status.CANCELLED, Action.Status.EXECUTING),
        (Action.Status.SUCCEEDED, Action.Status.EXECUTING),
        (Action.Status.FAILED, Action.Status.SUCCEEDED),
        (Action.Status.EXECUTING, Action.Status.CANCELLED),
    ],
)
def test_illegal_action_transition_raises(start: str, to: str) -> None:
    action = Action(status=start)
    with pytest.raises(IllegalTransition, match=f"{start} -> {to}"):
        action.move_to(to)
    assert action.status == start


def test_every_documented_request_transition_is_allowed() -> None:
    path = [
        Request.Status.RUNNING,
        Request.Status.AWAITING_APPROVAL,
        Request.Status.RUNNING,
        Request.Status.COMPLETED,
    ]
    request = Request(status=Request.Status.QUEUED)
    for status in path:
        request.move_to(status)
    assert request.status == Request.Status.COMPLETED


def test_every_documented_action_transition_is_allowed() -> None:
    action = Action(status=Action.Status.PENDING)
    for status in (
        Action.Status.APPROVED,
        Action.Status.EXECUTING,
        Action.Status.SUCCEEDED,
    ):
        action.move_to(status)
    assert action.status == Action.Status.SUCCEEDED


def test_a_settled_action_is_never_claimed_to_run(alice: User, action: Action) -> None:
    services.action_decide(action_id=str(action.pk), user=alice, decision="deny")
    assert services.action_claim(action_id=action.pk) is None
    action.refresh_from_db()
    assert action.status == Action.Status.DENIED


def test_sweep_stops_requeueing_the_tool_call_of_a_cancelled_request(
    alice: User,
    bob: User,
    action: Action,
    task_queue: Queue,
) -> None:
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    services.action_claim(action_id=action.pk)  # a worker starts the tool...
    services.request_cancel(request_id=str(action.request_id), user=bob)
    Action.objects.filter(pk=action.pk).update(lease_until=_ago(1))  # ...and dies
    services.sweep()
    assert services.action_claim(action_id=action.pk) is None
    services.sweep()
    assert _queued(task_queue) == []
    # Not left "executing" forever: it ended, and nothing runs it again.
    action.refresh_from_db()
    assert action.status == Action.Status.FAILED
    assert "may or may not have taken effect" in action.error
