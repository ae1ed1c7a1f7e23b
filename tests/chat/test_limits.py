"""The contract's "Limits": requests one user may have queued or running at once,
actions their requests may leave pending, model tokens a day."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from chat import services
from chat.models import Action, Message, Request, Room, User
from tests.chat.test_api import api, refusal
from tests.chat.test_consumer import connect, receive_until, token_headers

LIMIT = 5


@pytest.fixture(autouse=True)
def limit(settings) -> None:
    settings.AGENT_MAX_ACTIVE_PER_USER = LIMIT


def post(user: User, room: Room, text: str = "count to 3"):
    return api(user).post(
        f"/api/rooms/{room.slug}/requests", {"text": text}, format="json"
    )


@pytest.mark.django_db
def test_one_request_past_the_limit_gets_429_and_is_not_stored(
    room: Room, bob: User
) -> None:
    for _ in range(LIMIT):
        assert post(bob, room).status_code == 202
    detail = refusal(post(bob, room, "one too many"), 429)

    assert f"the limit is {LIMIT}" in detail
    assert Request.objects.filter(user=bob).count() == LIMIT
    assert not Message.objects.filter(content="one too many").exists()


@pytest.mark.django_db
def test_the_limit_counts_each_user_apart(room: Room, alice: User, bob: User) -> None:
    for _ in range(LIMIT):
        post(bob, room)
    assert post(bob, room).status_code == 429
    assert post(alice, room).status_code == 202


@pytest.mark.django_db
def test_requests_awaiting_approval_or_ended_do_not_count(
    room: Room, bob: User
) -> None:
    for _ in range(LIMIT):
        post(bob, room)
    waiting, ended = Request.objects.filter(user=bob)[:2]
    # As the worker leaves them: one waits for a person (no worker held), one ended.
    Request.objects.filter(pk=waiting.pk).update(
        status=Request.Status.AWAITING_APPROVAL
    )
    Request.objects.filter(pk=ended.pk).update(status=Request.Status.COMPLETED)

    assert post(bob, room).status_code == 202
    assert post(bob, room).status_code == 202
    assert post(bob, room).status_code == 429


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_posts_at_once_is_counted_one_by_one(room: Room, bob: User) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    api(bob)  # the token, made before the threads

    def one(_: int) -> int:
        try:
            return post(bob, room).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = sorted(pool.map(one, range(12)))

    assert codes.count(202) == LIMIT and codes.count(429) == 12 - LIMIT
    assert Request.objects.filter(user=bob).count() == LIMIT


@pytest.mark.django_db(transaction=True)
def test_a_chat_frame_past_the_limit_answers_an_error_frame(
    room: Room, bob: User
) -> None:
    headers = token_headers(bob)
    for _ in range(LIMIT):
        post(bob, room)

    async def scenario() -> dict:
        ws, _ = await connect(headers)
        await ws.send_json_to({"type": "chat", "text": "one too many"})
        frames = await receive_until(ws, lambda f: f["type"] == "error")
        # The socket stays open: a later frame is still answered.
        await ws.send_json_to({"type": "chat", "text": "and another"})
        await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1]

    error = asyncio.run(scenario())
    assert error["frame"] == "chat"
    assert f"the limit is {LIMIT}" in error["detail"]
    assert not Message.objects.filter(content="one too many").exists()


# Spend: a daily token budget per user ---------------------------------------------


def _spent(user: User, room: Room, tokens: int) -> None:
    Request.objects.create(
        room=room,
        user=user,
        status=Request.Status.COMPLETED,
        usage={"prompt_tokens": tokens - 10, "total_tokens": tokens},
    )


@pytest.mark.django_db
def test_a_spent_daily_token_budget_answers_429(
    room: Room, alice: User, bob: User, settings
) -> None:
    settings.AGENT_DAILY_TOKENS_PER_USER = 1000
    _spent(bob, room, 600)
    assert post(bob, room).status_code == 202
    _spent(bob, room, 400)
    detail = refusal(post(bob, room, "over budget"), 429)
    assert "1000 of your 1000 model tokens" in detail
    assert not Message.objects.filter(content="over budget").exists()
    # Others' budgets are their own; 0 means no budget.
    assert post(alice, room).status_code == 202
    settings.AGENT_DAILY_TOKENS_PER_USER = 0
    assert post(bob, room).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_a_chat_frame_over_the_token_budget_answers_an_error_frame(
    room: Room, bob: User, settings
) -> None:
    settings.AGENT_DAILY_TOKENS_PER_USER = 100
    _spent(bob, room, 100)
    headers = token_headers(bob)

    async def scenario() -> dict:
        ws, _ = await connect(headers)
        await ws.send_json_to({"type": "chat", "text": "over budget"})
        frames = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1]

    error = asyncio.run(scenario())
    assert error["frame"] == "chat" and "model tokens" in error["detail"]


# Floods: actions pending per user -------------------------------------------------

PENDING_DEFAULT = 20  # AGENT_MAX_PENDING_PER_USER's default (contract: "Limits")


def _park(user: User, room: Room, count: int) -> list[Action]:
    """`count` actions pending on the user's requests, as the agent leaves them (a
    request awaiting approval proposes up to AGENT_MAX_TOOL_CALLS at once)."""
    parked: list[Action] = []
    while len(parked) < count:
        request = Request.objects.create(
            room=room, user=user, step=1, status=Request.Status.AWAITING_APPROVAL
        )
        for call in range(min(5, count - len(parked))):
            parked.append(
                Action.objects.create(
                    request=request,
                    room=room,
                    step=0,
                    tool="delete_issue",
                    tool_call_id=f"call_{call}",
                    arguments={"id": f"ENG-{len(parked) + 1}"},
                    requires_approval=True,
                    status=Action.Status.PENDING,
                )
            )
    return parked


@pytest.mark.django_db
def test_a_user_with_too_many_pending_actions_gets_429_until_some_are_decided(
    room: Room, alice: User, bob: User
) -> None:
    parked = _park(bob, room, PENDING_DEFAULT - 1)
    assert post(bob, room, "one more is fine").status_code == 202
    _park(bob, room, 1)

    detail = refusal(post(bob, room, "one too many"), 429)
    assert f"the limit is {PENDING_DEFAULT}" in detail
    assert not Message.objects.filter(content="one too many").exists()
    # Others' pending actions are their own.
    assert post(alice, room).status_code == 202
    # One decided: bob may post again.
    services.action_decide(action_id=str(parked[0].pk), user=alice, decision="deny")
    assert post(bob, room, "after a decision").status_code == 202


@pytest.mark.django_db(transaction=True)
def test_a_chat_frame_past_the_pending_cap_answers_an_error_frame(
    room: Room, bob: User
) -> None:
    _park(bob, room, PENDING_DEFAULT)
    headers = token_headers(bob)

    async def scenario() -> dict:
        ws, _ = await connect(headers)
        await ws.send_json_to({"type": "chat", "text": "one too many"})
        frames = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1]

    error = asyncio.run(scenario())
    assert error["frame"] == "chat"
    assert f"the limit is {PENDING_DEFAULT}" in error["detail"]
    assert not Message.objects.filter(content="one too many").exists()
