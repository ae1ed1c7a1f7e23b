"""What a watcher gets on connect: enough to draw the room, including half an answer.

The room page embeds the same snapshot (without presence), so the page and the socket
draw from one builder and a reload shows what a watcher that never left would see.
"""

from typing import Any

from chat.models import User

from .eligibility import Ballots
from .models import Action, Message, Request, Room
from .payloads import action_payload, message_payload, request_payload
from .presence import presence_list
from .realtime import partial_text

RECENT_MESSAGES = 100
# Beside the contract's pending actions and open requests: the recent ones whatever
# their status, so that the cards of decided actions and the statuses of ended
# requests survive a reload or a reconnect without replaying events.
RECENT_ACTIONS = 50
RECENT_REQUESTS = 100


def snapshot_build(
    *, room: Room, user: User, with_presence: bool = True
) -> dict[str, Any]:
    """The room as one `snapshot` frame (PROTOCOL.md), plus `recent_actions` and
    `recent_requests`. `with_presence=False` (the page) leaves `presence` null and
    Redis unasked: who is connected is the socket's to say, and a page renders while
    Redis is away."""
    # The seq is read first: anything that commits after it arrives as an event, and
    # clients upsert by id, so an item both here and in a later event shows once.
    seq = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
    messages = (
        Message.objects.filter(room=room)
        # A step that only called tools leaves an empty assistant message that was
        # never sent as an event; watchers and late joiners must see the same list.
        .exclude(role=Message.Role.ASSISTANT, content="")
        .select_related("author")
        .order_by("-created")[:RECENT_MESSAGES]
    )
    running = Request.objects.filter(room=room).exclude(status__in=Request.ENDED)
    pending = Action.objects.filter(room=room, status=Action.Status.PENDING)
    recent_actions = (
        Action.objects.filter(room=room)
        .select_related("room", "decided_by")
        .order_by("-created")[:RECENT_ACTIONS]
    )
    recent_requests = Request.objects.filter(room=room).order_by("-created")[
        :RECENT_REQUESTS
    ]
    waiting = list(pending.select_related("room", "decided_by").order_by("created"))
    recent = list(recent_actions)[::-1]
    ballots = Ballots([*waiting, *recent])  # read once for both lists
    return {
        "type": "snapshot",
        "seq": seq,
        "messages": [message_payload(m) for m in list(messages)[::-1]],
        "requests": [_with_partial(request) for request in running.order_by("created")],
        "actions": [action_payload(a, ballots) for a in waiting],
        "presence": presence_list(room.pk) if with_presence else None,
        "recent_actions": [action_payload(a, ballots) for a in recent],
        "recent_requests": [request_payload(r) for r in list(recent_requests)[::-1]],
    }


def _with_partial(request: Request) -> dict[str, Any]:
    partial = None
    if request.status == Request.Status.RUNNING:
        text = partial_text(request.draft_message_id)
        if text is not None:
            partial = {"message": str(request.draft_message_id), "content": text}
    return {**request_payload(request), "created": request.created, "partial": partial}
