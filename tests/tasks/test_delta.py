"""Streamed text as watchers get it: `delta` events from `DeltaRelay`, coalesced.

Observed on the room's Redis channel, where every web process hears them; a late
joiner reads the partial text kept beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from chat import services
from chat.models import Request, Room, User
from chat.realtime import partial_text
from tasks.delta import DeltaRelay
from tests.tasks.conftest import applied, deltas

INTERVAL_MS = 40
Feed = Callable[[], list[dict]]


@pytest.fixture
def relay(room: Room, bob: User, settings, room_feed: Feed) -> DeltaRelay:
    settings.AGENT_DELTA_INTERVAL_MS = INTERVAL_MS
    turn = services.request_start(room=room, user=bob, text="Tell me about ENG-3.")
    room_feed()  # the request's own events
    return DeltaRelay(Request.objects.get(pk=turn.pk))


def test_first_text_leaves_at_once(relay: DeltaRelay, room_feed: Feed) -> None:
    relay.add("ENG-3 ")
    [frame] = room_feed()
    assert frame == {
        "type": "delta",
        "request": str(relay.request.pk),
        "message": str(relay.request.draft_message_id),
        "offset": 0,
        "text": "ENG-3 ",
    }


def test_text_arriving_within_the_interval_is_merged(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    for piece in ["ENG-3 ", "is ", "a ", "login ", "bug."]:
        relay.add(piece)
    relay.flush()
    assert deltas(room_feed()) == [(0, "ENG-3 "), (6, "is a login bug.")]


def test_waiting_text_leaves_once_its_slot_comes(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    relay.add("ENG-3 ")
    relay.add("is ")
    assert relay.flush_due() is not None  # too soon: it waits for its slot
    time.sleep(2 * INTERVAL_MS / 1000)
    relay.flush_due()  # what the lease keeper does when the slot came
    assert deltas(room_feed()) == [(0, "ENG-3 "), (6, "is ")]


def test_offsets_are_contiguous_and_the_text_adds_up(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    words = [f"word{n} " for n in range(12)]
    for n, word in enumerate(words):
        relay.add(word)
        if n % 4 == 3:
            time.sleep(INTERVAL_MS / 1000)
    relay.flush()
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
    relay.add("Half an answer")
    relay.flush()
    # The model call is retried: a new relay for the same step streams again.
    retry = DeltaRelay(relay.request)
    retry.reset()
    retry.add("A whole answer.")
    frames = room_feed()
    assert deltas(frames) == [(0, "Half an answer"), (0, ""), (0, "A whole answer.")]
    assert {f["message"] for f in frames} == {str(relay.message_id)}
    assert applied(frames) == "A whole answer."
    assert partial_text(relay.message_id) == "A whole answer."


def test_nothing_leaves_once_the_stream_is_stopped(
    relay: DeltaRelay, room_feed: Feed
) -> None:
    relay.add("Before ")
    relay.stop.set()  # cancelled
    relay.add("after.")
    relay.flush()
    assert deltas(room_feed()) == [(0, "Before ")]
