"""What the model reads before each call: `build_context`.

The order matters to the API (a tool result right after the call that asked for it),
and the size to the bill: earlier history is cut to a budget, long results shortened.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import services
from chat.models import Message, Request, Room, User
from tasks.context import MAX_TOOL_RESULT_CHARS, SYSTEM_PROMPT, build_context


def _said(request: Request, role: str, content: str, **fields: object) -> Message:
    return Message.objects.create(
        room_id=request.room_id, request=request, role=role, content=content, **fields
    )


def _earlier(room: Room, author: User | None, role: str, content: str, age: int):
    """A message of the room's past, `age` minutes before now."""
    message = Message.objects.create(
        room=room, role=role, content=content, author=author
    )
    Message.objects.filter(pk=message.pk).update(
        created=timezone.now() - timedelta(minutes=age)
    )


def _call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": call_id, "name": name, "arguments": json.dumps(arguments)}


@pytest.fixture
def turn(room: Room, bob: User) -> Request:
    return services.request_start(room=room, user=bob, text="Close ENG-3 and ENG-4.")


def test_context_starts_with_the_system_prompt_naming_the_room(turn: Request) -> None:
    system, *rest = build_context(turn)
    assert system == {"role": "system", "content": SYSTEM_PROMPT.format(room="Triage")}
    assert 'chat room "Triage"' in system["content"]
    assert rest == [{"role": "user", "content": "Close ENG-3 and ENG-4."}]


def test_earlier_messages_of_the_room_come_first_with_their_authors(
    room: Room, alice: User, bob: User
) -> None:
    _earlier(room, alice, Message.Role.USER, "ENG-3 is a duplicate.", age=3)
    _earlier(room, None, Message.Role.ASSISTANT, "Noted.", age=2)
    _earlier(room, None, Message.Role.TOOL, '{"tool": "get_issue"}', age=1)
    turn = services.request_start(room=room, user=bob, text="Then close it.")
    assert build_context(turn)[1:] == [
        {"role": "user", "content": "alice: ENG-3 is a duplicate."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Then close it."},
    ]


def test_history_keeps_the_newest_messages_that_fit_the_budget(
    room: Room, alice: User, bob: User, settings
) -> None:
    for age in range(10, 0, -1):
        _earlier(room, alice, Message.Role.USER, f"note {age:02} " + "x" * 80, age=age)
    turn = services.request_start(room=room, user=bob, text="Summarise.")
    settings.AGENT_CONTEXT_CHARS = 1000
    context = build_context(turn)
    history = [m["content"][:14] for m in context[1:-1]]
    # Each old message costs ~110 characters; the prompt and this turn the rest.
    assert history
    assert history == [f"alice: note {age:02}" for age in range(len(history), 0, -1)]
    assert len(history) < 10
    assert sum(len(str(m["content"])) for m in context) <= 1000


def test_history_is_capped_at_a_number_of_messages(
    room: Room, alice: User, bob: User, settings
) -> None:
    for age in range(5, 0, -1):
        _earlier(room, alice, Message.Role.USER, f"note {age}", age=age)
    settings.AGENT_HISTORY_MESSAGES = 2
    turn = services.request_start(room=room, user=bob, text="Summarise.")
    assert [m["content"] for m in build_context(turn)[1:-1]] == [
        "alice: note 2",
        "alice: note 1",
    ]


def test_tool_results_follow_their_call_in_call_order(turn: Request) -> None:
    calls = [
        _call("c1", "update_issue", {"id": "ENG-3", "state": "Done"}),
        _call("c2", "update_issue", {"id": "ENG-4", "state": "Done"}),
    ]
    _said(turn, Message.Role.ASSISTANT, "Closing both.", tool_calls=calls)
    # The second call's result was recorded first (it was denied at once).
    _said(turn, Message.Role.TOOL, '{"status": "denied"}', tool_call_id="c2")
    _said(turn, Message.Role.TOOL, '{"status": "succeeded"}', tool_call_id="c1")
    _said(turn, Message.Role.ASSISTANT, "ENG-3 is closed; ENG-4 was refused.")
    assert build_context(turn)[1:] == [
        {"role": "user", "content": "Close ENG-3 and ENG-4."},
        {
            "role": "assistant",
            "content": "Closing both.",
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "succeeded"}'},
        {"role": "tool", "tool_call_id": "c2", "content": '{"status": "denied"}'},
        {"role": "assistant", "content": "ENG-3 is closed; ENG-4 was refused."},
    ]


def test_assistant_message_with_only_calls_has_no_content(turn: Request) -> None:
    _said(
        turn,
        Message.Role.ASSISTANT,
        "",
        tool_calls=[_call("c1", "get_issue", {"id": "ENG-3"})],
    )
    _said(turn, Message.Role.TOOL, '{"status": "succeeded"}', tool_call_id="c1")
    assistant = build_context(turn)[2]
    assert assistant["content"] is None
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1"]


def test_long_tool_result_is_cut_in_the_context_but_kept_in_the_room(
    turn: Request,
) -> None:
    _said(
        turn,
        Message.Role.ASSISTANT,
        "",
        tool_calls=[_call("c1", "search_issues", {"query": ""})],
    )
    long = "y" * (MAX_TOOL_RESULT_CHARS + 500)
    kept = _said(turn, Message.Role.TOOL, long, tool_call_id="c1")
    result = build_context(turn)[-1]
    assert result["role"] == "tool"
    assert result["content"] == long[:MAX_TOOL_RESULT_CHARS]
    kept.refresh_from_db()
    assert kept.content == long


def test_messages_of_other_requests_in_the_turn_are_not_mixed_in(
    turn: Request, room: Room, alice: User
) -> None:
    later = services.request_start(room=room, user=alice, text="Unrelated.")
    assert "Unrelated." not in json.dumps(build_context(turn))
    assert build_context(later)[-1] == {"role": "user", "content": "Unrelated."}
