"""A turn's model calls as the domain sees them: claims, leases, attempts, records.

No Celery and no model here: the worker's part is played by calling the services
it calls (`step_claim`, `step_renew`, `step_record`, ...) in the order it would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import enqueue, services, tools
from chat.models import Action, Message, Request, RoomEvent, User
from tests.chat.queues import task_queue  # noqa: F401  (a fixture)

Status = Request.Status


@pytest.fixture
def turn(room, bob: User) -> Request:
    """Bob asked the agent something; the turn's first step waits for a worker."""
    return services.request_start(room=room, user=bob, text="What is ENG-3 about?")


def _expire_lease(request: Request) -> None:
    """As if the worker holding the step died: its lease ran out a moment ago."""
    Request.objects.filter(pk=request.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )


def _statuses(request: Request) -> list[str]:
    """The statuses watchers of the room were told, in order."""
    return [
        e.payload["status"]
        for e in RoomEvent.objects.filter(room_id=request.room_id, type="request")
        if e.payload["id"] == str(request.pk)
    ]


def test_claim_starts_the_turn_and_the_room_sees_it_running(turn: Request) -> None:
    claimed = services.step_claim(request_id=turn.pk, step=0)
    assert claimed is not None
    assert claimed.status == Status.RUNNING
    assert claimed.attempts == 1
    assert claimed.lease_until > timezone.now()
    assert _statuses(turn) == [Status.QUEUED, Status.RUNNING]


def test_second_claim_of_a_step_gets_nothing(turn: Request) -> None:
    first = services.step_claim(request_id=turn.pk, step=0)
    assert first is not None
    # A duplicated delivery of the same task, while the first worker streams.
    assert services.step_claim(request_id=turn.pk, step=0) is None
    turn.refresh_from_db()
    assert (turn.attempts, turn.lease_token) == (1, first.lease_token)


def test_claim_of_a_step_already_recorded_gets_nothing(turn: Request) -> None:
    claimed = services.step_claim(request_id=turn.pk, step=0)
    services.step_record(
        request=claimed, text="It is a login bug.", calls=[], previews={}, usage={}
    )
    # Redelivered after it finished: the step is done, the turn completed.
    assert services.step_claim(request_id=turn.pk, step=0) is None
    turn.refresh_from_db()
    assert turn.status == Status.COMPLETED


def test_expired_lease_lets_another_worker_claim_and_counts_the_attempt(
    turn: Request,
) -> None:
    dead = services.step_claim(request_id=turn.pk, step=0)
    _expire_lease(turn)
    taken = services.step_claim(request_id=turn.pk, step=0)
    assert taken is not None
    assert taken.attempts == 2
    assert taken.lease_token != dead.lease_token
    assert taken.lease_until > timezone.now()
    # The room was told "running" once: a takeover is no news to watchers.
    assert _statuses(turn) == [Status.QUEUED, Status.RUNNING]


def test_worker_that_lost_its_lease_cannot_record_its_answer(turn: Request) -> None:
    dead = services.step_claim(request_id=turn.pk, step=0)
    _expire_lease(turn)
    services.step_claim(request_id=turn.pk, step=0)
    services.step_record(
        request=dead, text="A stale answer.", calls=[], previews={}, usage={}
    )
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()
    turn.refresh_from_db()
    assert (turn.status, turn.step) == (Status.RUNNING, 0)


def test_too_many_attempts_fail_the_request_with_a_readable_error(
    turn: Request, settings
) -> None:
    settings.AGENT_MAX_ATTEMPTS = 3
    for _ in range(3):
        assert services.step_claim(request_id=turn.pk, step=0) is not None
        _expire_lease(turn)
    assert services.step_claim(request_id=turn.pk, step=0) is None
    turn.refresh_from_db()
    assert turn.status == Status.FAILED
    assert turn.error == (
        "The agent's worker failed 3 times on this request; giving up."
    )
    assert _statuses(turn)[-1] == Status.FAILED


def test_renew_keeps_the_lease_of_its_holder(turn: Request) -> None:
    claimed = services.step_claim(request_id=turn.pk, step=0)
    later = timezone.now() + timedelta(minutes=5)
    assert services.step_renew(request=claimed, until=later) is True
    turn.refresh_from_db()
    assert turn.lease_until == later


def test_renew_after_cancel_returns_false(turn: Request, bob: User) -> None:
    claimed = services.step_claim(request_id=turn.pk, step=0)
    services.request_cancel(request_id=str(turn.pk), user=bob)
    later = timezone.now() + timedelta(minutes=5)
    assert services.step_renew(request=claimed, until=later) is False
    turn.refresh_from_db()
    assert (turn.status, turn.lease_until) == (Status.CANCELLED, None)


def test_renew_after_a_takeover_returns_false(turn: Request) -> None:
    dead = services.step_claim(request_id=turn.pk, step=0)
    _expire_lease(turn)
    services.step_claim(request_id=turn.pk, step=0)
    assert services.step_renew(request=dead, until=timezone.now()) is False


def test_cancelled_request_cannot_be_claimed(turn: Request, bob: User) -> None:
    services.request_cancel(request_id=str(turn.pk), user=bob)
    assert services.step_claim(request_id=turn.pk, step=0) is None


def test_released_step_is_claimed_again_at_once(turn: Request) -> None:
    claimed = services.step_claim(request_id=turn.pk, step=0)
    services.step_release(request=claimed)  # after a rate limit, say
    retry = services.step_claim(request_id=turn.pk, step=0)
    assert retry is not None and retry.attempts == 2


def test_step_given_up_after_every_retry_fails_the_request(turn: Request) -> None:
    services.step_claim(request_id=turn.pk, step=0)
    services.step_gave_up(
        request_id=turn.pk, step=0, error="The model service is busy (429)."
    )
    turn.refresh_from_db()
    assert (turn.status, turn.error) == (
        Status.FAILED,
        "The model service is busy (429).",
    )


def test_answer_without_tool_calls_completes_the_turn(turn: Request) -> None:
    claimed = services.step_claim(request_id=turn.pk, step=0)
    services.step_record(
        request=claimed,
        text="ENG-3 is a login bug on Safari.",
        calls=[],
        previews={},
        usage={"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49},
    )
    turn.refresh_from_db()
    assert turn.status == Status.COMPLETED
    assert turn.usage == {
        "completion_tokens": 9,
        "prompt_tokens": 40,
        "total_tokens": 49,
    }
    answer = Message.objects.get(role=Message.Role.ASSISTANT)
    assert answer.id == claimed.draft_message_id  # the id its deltas streamed under
    assert answer.content == "ENG-3 is a login bug on Safari."


def test_recorded_calls_wait_for_approval_and_queue_only_the_free_ones(
    turn: Request,
    task_queue: Callable[[], list[dict]],  # noqa: F811
    django_capture_on_commit_callbacks: Callable,
) -> None:
    claimed = services.step_claim(request_id=turn.pk, step=0)
    calls = [
        tools.check_call(call_id="c1", name="get_issue", arguments='{"id": "ENG-3"}'),
        tools.check_call(
            call_id="c2", name="delete_issue", arguments='{"id": "ENG-3"}'
        ),
        tools.check_call(call_id="c3", name="get_issue", arguments='{"id": 3}'),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        services.step_record(
            request=claimed, text="", calls=calls, previews={"c2": None}, usage={}
        )
    statuses = dict(Action.objects.values_list("tool_call_id", "status"))
    assert statuses == {"c1": Action.Status.EXECUTING, "c2": Action.Status.PENDING}
    turn.refresh_from_db()
    assert (turn.status, turn.step, turn.attempts) == (
        Status.AWAITING_APPROVAL,
        1,
        0,
    )
    free = Action.objects.get(tool_call_id="c1")
    assert [(m["task"], m["argsrepr"]) for m in task_queue()] == [
        (enqueue.TOOL_CALL, repr((str(free.pk),)))
    ]
    # Nothing to claim until a person decides.
    assert services.step_claim(request_id=turn.pk, step=1) is None
