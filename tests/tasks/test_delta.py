"""Streamed text as watchers get it: `delta` events from `DeltaRelay`, coalesced.

Observed on the room's Redis channel, where every web process hears them; a late
joiner reads the partial text kept beside it. The relay lives on the stream
engine's loop: the tests run it there, a turn of the loop at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from chat import services
from chat.models import Request, Room, User
from chat.realtime import partial_text
from tasks.delta import DeltaRelay
from tasks.engine import engine
from tests.tasks.conftest import applied, deltas

INTERVAL_MS = 40
Feed = Callable[[], list[dict]]


@pytest.fixture
def relay(room: Room, bob: User, settings, room_feed: Feed) -> DeltaRelay:
    settings.AGENT_DELTA_INTERVAL_MS = INTERVAL_MS
    turn = services.request_start(room=room, user=bob, text="Tell me about ENG-3.")
    room_feed()  # the request's own events
    return DeltaRelay(Request.objects.get(pk=turn.pk))


def _turns(*calls: Callable[[], object], pause: float = 0) -> None:
    """Run each call on the engine's loop in a turn of its own (`pause` apart)."""

    async def run() -> None:
        for call in calls:
            call()
            await asyncio.sleep(pause)

    engine().submit(run()).result()


def test_first_text_leaves_at_once(relay: DeltaRelay, room_feed: Feed) -> None:
    _turns(lambda: relay.add("ENG-3 "))
    [frame] = room_feed()
    assert frame == {
        "type": "delta",
        "request": str(relay.request.pk),
        "message": str(relay.request.draft_message_id),
        "offset": 0,
        "text": "ENG-3 ",
    }


def test_text_read_in_one_turn_of_the_loop_leaves_as_one_delta(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    def read_at_once() -> None:
        for piece in ["ENG-3 ", "is ", "a ", "login ", "bug."]:
            relay.add(piece)

    _turns(read_at_once, lambda: relay.add(" Fixed."), pause=INTERVAL_MS * 2 / 1000)
    assert deltas(room_feed()) == [(0, "ENG-3 is a login bug."), (21, " Fixed.")]


def test_text_within_the_interval_waits_for_its_slot(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    _turns(lambda: relay.add("ENG-3 "), lambda: relay.add("is "))
    assert deltas(room_feed()) == [(0, "ENG-3 ")]  # "is " waits for its slot
    time.sleep(3 * INTERVAL_MS / 1000)
    assert deltas(room_feed()) == [(6, "is ")]


def test_offsets_are_contiguous_and_the_text_adds_up(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    words = [f"word{n} " for n in range(12)]
    _turns(*[lambda word=word: relay.add(word) for word in words], pause=0.01)
    _turns(relay.flush)
    sent = deltas(room_feed())
    assert 1 < len(sent) < len(words)  # some merged, none held back
    offset = 0
    for at, text in sent:
        assert at == offset
        offset += len(text)
    assert "".join(text for _, text in sent) == "".join(words)
    assert partial_text(relay.message_id) == "".join(words)  # for late joiners


def test_reset_sends_an_empty_delta_at_offset_zero(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    _turns(lambda: relay.add("Half an answer"), relay.flush)
    # The model call is retried: a new relay for the same step streams again.
    retry = DeltaRelay(relay.request)
    _turns(retry.reset, lambda: retry.add("A whole answer."))
    frames = room_feed()
    assert deltas(frames) == [(0, "Half an answer"), (0, ""), (0, "A whole answer.")]
    assert {f["message"] for f in frames} == {str(relay.message_id)}
    assert applied(frames) == "A whole answer."
    assert partial_text(relay.message_id) == "A whole answer."


def test_nothing_leaves_once_the_stream_is_stopped(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    _turns(lambda: relay.add("Before "), relay.halt, lambda: relay.add("after."))
    _turns(relay.flush)
    assert deltas(room_feed()) == [(0, "Before ")]
