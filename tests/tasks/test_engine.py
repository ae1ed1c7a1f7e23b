"""The stream engine: model steps handed to one event loop in the worker process.

`model_step_begin` is what the Celery task calls: it claims the step, hands the
stream to the engine and returns, so the task's slot is free while the answer
streams. The stand-in model streams slowly enough here for the streams to overlap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chat import enqueue, services
from chat.models import Message, Request, Room, User
from tasks import steps
from tasks import tasks as entry
from tasks.engine import Running
from tests.tasks.conftest import Model, deltas

Feed = Callable[[], list[dict]]
Status = Request.Status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def queue(task_queue: Callable[[], list[dict]]) -> Callable[[], list[dict]]:
    return task_queue


@pytest.fixture
def turn(room: Room, bob: User) -> Request:
    return services.request_start(room=room, user=bob, text="Say hello.")


def _begin(request: Request) -> Running[None]:
    running = steps.model_step_begin(request_id=str(request.pk), step=0)
    assert running is not None
    return running


def _streaming(request: Request, feed: Feed, frames: list[dict]) -> None:
    """Wait until the request's answer has streamed some text to the room."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frames.extend(feed())
        if deltas(frames):
            return
        time.sleep(0.02)
    raise AssertionError(f"{request.pk} never streamed")


def test_many_turns_streaming_at_once_on_one_process_complete_once_each(
    model: Model, room: Room, bob: User, settings
) -> None:
    settings.AGENT_MAX_ACTIVE_PER_USER = 100
    model.config(token_delay=0.05)  # 40 tokens: 2 s of answer each
    turns = [
        services.request_start(room=room, user=bob, text="count to 40")
        for _ in range(24)
    ]
    started = time.monotonic()
    running = []
    for turn in turns:
        running.append(_begin(turn))
        # The task returns with its stream still running: its slot is free.
        assert not running[-1].done()
    for r in running:
        r.result(timeout=60)
    # One after another they would take 24 x 2 s; on the loop they overlap.
    assert time.monotonic() - started < 15
    text = " ".join(map(str, range(1, 41))) + " "
    for turn in turns:
        answers = Message.objects.filter(request=turn, role=Message.Role.ASSISTANT)
        assert [m.content for m in answers] == [text]
        assert Request.objects.get(pk=turn.pk).status == Status.COMPLETED
    assert len(model.calls()) == len(turns)


def test_cancel_during_a_loop_run_stream_stops_it_within_the_bound(
    model: Model, room: Room, bob: User, room_feed: Feed
) -> None:
    model.config(token_delay=0.05)
    turn = services.request_start(room=room, user=bob, text="count to 200")
    room_feed()
    running = _begin(turn)
    frames: list[dict] = []
    _streaming(turn, room_feed, frames)

    cancelled = time.monotonic()
    services.request_cancel(request_id=str(turn.pk), user=bob)
    connection.close()
    running.result(timeout=5)
    stopped = time.monotonic() - cancelled
    # The lease keeper polls cancels every 0.2 s; the loop cuts the stream at once.
    assert stopped < 0.5, stopped
    frames.extend(room_feed())
    sent = len(deltas(frames))
    time.sleep(0.3)
    assert deltas(room_feed()) == []  # nothing after the stop
    assert sent < 200
    assert Request.objects.get(pk=turn.pk).status == Status.CANCELLED
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()


def test_a_stream_whose_lease_was_taken_over_stops_writing(
    model: Model, room: Room, bob: User, room_feed: Feed, settings
) -> None:
    settings.AGENT_LEASE_SECONDS = 1  # renewed every third of a second
    model.config(token_delay=0.05)
    turn = services.request_start(room=room, user=bob, text="count to 200")
    room_feed()
    running = _begin(turn)
    frames: list[dict] = []
    _streaming(turn, room_feed, frames)

    # What another worker's claim writes once this lease has run out.
    taken = time.monotonic()
    Request.objects.filter(pk=turn.pk).update(
        lease_token="another-worker",
        lease_until=timezone.now() + timedelta(seconds=60),
    )
    running.result(timeout=5)
    assert time.monotonic() - taken < 1.5
    room_feed()
    time.sleep(0.3)
    assert deltas(room_feed()) == []  # the stale holder sends no more text
    held = Request.objects.get(pk=turn.pk)
    assert (held.status, held.lease_token) == (Status.RUNNING, "another-worker")
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()


def _wait(check: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def test_a_stream_failing_after_its_task_returned_is_sent_again_as_a_retry(
    model: Model, turn: Request, queue: Callable[[], list[dict]]
) -> None:
    model.faults({"status": 429})
    entry.model_step.apply(args=(str(turn.pk), 0))  # returns once handed over

    def retried() -> list[dict]:
        return [m for m in queue() if m["task"] == enqueue.MODEL_STEP and m["retries"]]

    _wait(retried, "the retry's message")
    [retry] = retried()
    assert (retry["retries"], retry["argsrepr"]) == (1, repr((str(turn.pk), 0)))
    assert retry["eta"]  # after a backoff
    held = Request.objects.get(pk=turn.pk)
    assert (held.status, held.lease_until) == (Status.RUNNING, None)


def test_the_last_retry_failing_on_the_loop_fails_the_request(
    model: Model, turn: Request, queue: Callable[[], list[dict]]
) -> None:
    model.faults({"status": 503})
    entry.model_step.apply(args=(str(turn.pk), 0), retries=entry.MAX_RETRIES)
    _wait(
        lambda: Request.objects.get(pk=turn.pk).status == Status.FAILED,
        "the request to fail",
    )
    assert "gave up after 5 retries" in Request.objects.get(pk=turn.pk).error
    assert [m["retries"] for m in queue() if m["task"] == enqueue.MODEL_STEP] == [0]
