"""What a watcher gets on connect: enough to draw the room, including half an answer."""

from django.contrib.auth.models import AbstractBaseUser

from .models import Action, Message, Request, Room
from .presence import presence_list
from .realtime import partial_text
from .serializers import ActionSerializer, MessageSerializer, request_event

RECENT_MESSAGES = 100


def snapshot_build(*, room: Room, user: AbstractBaseUser) -> dict:
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
    return {
        "type": "snapshot",
        "seq": seq,
        "messages": MessageSerializer(list(messages)[::-1], many=True).data,
        "requests": [_with_partial(request) for request in running.order_by("created")],
        "actions": ActionSerializer(
            pending.select_related("room", "decided_by").order_by("created"), many=True
        ).data,
        "presence": presence_list(room.pk),
    }


def _with_partial(request: Request) -> dict:
    partial = None
    if request.status == Request.Status.RUNNING:
        text = partial_text(request.draft_message_id)
        if text is not None:
            partial = {"message": str(request.draft_message_id), "content": text}
    return {**request_event(request), "created": request.created, "partial": partial}
