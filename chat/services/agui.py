"""The AG-UI endpoint's writes and reads (contract: "AG-UI endpoint").

A run is registered under its client's `runId` (once per caller and room); a new
run posts its text as an ordinary request; a resumed run applies its entries as
votes, each exactly as the REST call beside it; connect picks the request to follow.
The stream reads the request it follows as a snapshot of that request alone.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from chat.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from chat.models import Action, AguiRun, Message, Request, Room, User
from chat.payloads import action_payloads, message_payload, request_payload
from chat.realtime import partial_text
from chat.snapshot import RECENT_MESSAGES

from .access import id_or_none, is_active_member
from .actions import action_decide
from .requests import request_start


@dataclass
class Entry:
    """One resume entry, as the client sent it."""

    interrupt_id: str
    status: str  # "resolved" | "cancelled"
    payload: Any = None


@dataclass
class Resumed:
    """What applying a resume's entries left: the request to follow, the room's seq
    before the first vote (the run tells what happened after it), the actions the
    entries answered, warnings for entries naming no action here, and the refusal
    (code, message) that stopped them, if one did."""

    request_id: str | None = None
    after: int = 0
    answered: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    refusal: tuple[str, str] | None = None
    seen: dict[str, Any] | None = None  # the request as it was at `after`


def _register(*, room: Room, user: User, run_id: str) -> AguiRun:
    try:
        with transaction.atomic():
            return AguiRun.objects.create(room=room, user=user, run_id=run_id)
    except IntegrityError:
        raise Conflict(f"You already used the runId {run_id!r} in this room.") from None


def agui_run_post(*, room: Room, user: User, run_id: str, text: str) -> Request:
    """A new run: its text posted as a request (`request_start`'s rules and limits);
    a refusal leaves the runId unused."""
    with transaction.atomic():
        run = _register(room=room, user=user, run_id=run_id)
        request = request_start(room=room, user=user, text=text)
        run.request = request
        run.save(update_fields=["request"])
    return request


def agui_connect(
    *, room: Room, user: User, run_id: str, request_id: str | None
) -> str | None:
    """The request a connect follows: the one named (404 unless it is this room's),
    else the room's oldest request not ended (None: there is none)."""
    requests = Request.objects.filter(room=room)
    if request_id is not None:
        pk = id_or_none(request_id)
        found = requests.filter(pk=pk).first() if pk else None
        if found is None:
            raise NotFound("No such request in this room.")
    else:
        found = requests.exclude(status__in=Request.ENDED).order_by("created").first()
    run = _register(room=room, user=user, run_id=run_id)
    if found is not None:
        run.request = found
        run.save(update_fields=["request"])
    return None if found is None else str(found.pk)


def agui_resume(
    *, room: Room, user: User, run_id: str, entries: list[Entry]
) -> Resumed:
    """Apply a resume's entries in order, each as the REST vote beside it
    (`decided_via` "api"): approve, deny, or no vote for a cancelled entry. The
    first refusal stops them (those before it stand) and is the run's answer."""
    named = {e.interrupt_id for e in entries if id_or_none(e.interrupt_id)}
    actions = {
        str(pk): str(request)
        for pk, request in Action.objects.filter(
            room=room, pk__in=[id_or_none(i) for i in named]
        ).values_list("pk", "request_id")
    }
    run = _register(room=room, user=user, run_id=run_id)
    resumed = Resumed()
    requests = set(actions.values())
    if not actions:
        resumed.refusal = (
            "unknown_interrupt",
            "No entry names an action of this room.",
        )
        return resumed
    if len(requests) > 1:
        resumed.refusal = (
            "resume_mismatch",
            "The entries name actions of more than one request; resume one at a time.",
        )
        return resumed
    resumed.request_id = requests.pop()
    run.request_id = resumed.request_id
    run.save(update_fields=["request"])
    # Read before the first vote: the run tells everything after its seq, in order
    # (while a request waits for votes nothing else of it happens, so what commits
    # between the seq and the rest of this read is at most another voter's vote).
    resumed.seen = agui_state(room=room, user=user, request_id=resumed.request_id)
    resumed.after = resumed.seen["seq"] if resumed.seen else 0
    for entry in entries:
        if entry.interrupt_id not in actions:
            resumed.warnings.append(
                f"Skipped the entry for {entry.interrupt_id!r}: no action of this room."
            )
            continue
        resumed.answered.add(entry.interrupt_id)
        if entry.status == "cancelled":
            continue
        try:
            _vote(entry, user)
        except AppError as exc:
            resumed.refusal = (_code(exc, entry), exc.detail)
            return resumed
    return resumed


def _vote(entry: Entry, user: User) -> None:
    payload = entry.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("approved"), bool):
        raise _Refused(
            "invalid_payload",
            "A resolved entry's payload must be an object with a boolean approved.",
        )
    reason = payload.get("reason", "")
    if not isinstance(reason, str):
        raise _Refused("invalid_payload", "payload.reason must be a string.")
    edited = payload.get("editedArgs")
    if edited is not None and not isinstance(edited, dict):
        raise _Refused("invalid_arguments", "editedArgs must be a JSON object.")
    if payload["approved"]:
        action_decide(
            action_id=entry.interrupt_id,
            user=user,
            decision="approve",
            reason=reason,
            arguments=edited,
            via=Action.Via.API,
        )
    else:
        action_decide(
            action_id=entry.interrupt_id,
            user=user,
            decision="deny",
            reason=reason,
            via=Action.Via.API,
        )


class _Refused(AppError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def _code(exc: AppError, entry: Entry) -> str:
    """The contract's code for a vote the REST call would have refused."""
    if isinstance(exc, _Refused):
        return exc.code
    if isinstance(exc, Forbidden):
        return "not_eligible"
    if isinstance(exc, Conflict):
        return "already_voted" if "already voted" in exc.detail else "not_pending"
    if isinstance(exc, Invalid):
        edited = isinstance(entry.payload, dict) and "editedArgs" in entry.payload
        return "invalid_arguments" if edited else "invalid_payload"
    return "not_pending" if isinstance(exc, NotFound) else "invalid_payload"


def agui_state(
    *, room: Room, user: User, request_id: str | None, history: bool = False
) -> dict[str, Any] | None:
    """The request a run follows, as a snapshot of it alone (None when `user` is no
    longer in the room): the room's seq, the request, its final messages and its
    actions, the text of a message streaming now; with `history`, the room's recent
    messages and their requests' actions too (connect's MESSAGES_SNAPSHOT)."""
    if not is_active_member(room=room, user=user):
        return None
    seq = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
    state: dict[str, Any] = {
        "type": "snapshot",
        "seq": seq,
        "request": None,
        "messages": [],
        "actions": [],
        "partial": None,
    }
    request = (
        Request.objects.filter(pk=request_id, room=room).first() if request_id else None
    )
    if request is not None:
        state["request"] = request_payload(request)
        state["messages"] = _messages(Message.objects.filter(request=request))
        state["actions"] = action_payloads(
            Action.objects.filter(request=request)
            .select_related("room", "decided_by", "request")
            .order_by("created")
        )
        if request.status == Request.Status.RUNNING:
            text = partial_text(request.draft_message_id)
            if text is not None:
                message = str(request.draft_message_id)
                state["partial"] = {"message": message, "content": text}
    if history:
        recent = list(
            Message.objects.filter(room=room)
            .exclude(role=Message.Role.ASSISTANT, content="")
            .select_related("author")
            .order_by("-created")[:RECENT_MESSAGES]
        )[::-1]
        requests = {m.request_id for m in recent if m.request_id}
        state["history"] = {
            "messages": [message_payload(m) for m in recent],
            "actions": action_payloads(
                Action.objects.filter(request_id__in=requests)
                .select_related("room", "decided_by", "request")
                .order_by("created")
            ),
        }
    return state


def _messages(messages: Any) -> list[dict[str, Any]]:
    final = (
        messages.exclude(role=Message.Role.ASSISTANT, content="")
        .exclude(role=Message.Role.USER)
        .select_related("author")
        .order_by("created")
    )
    return [dict(message_payload(m)) for m in final]


def tool_parameters(*, tools: list[str]) -> dict[str, Any]:
    """Each named tool's parameters schema, as offered to the model."""
    from chat.tools import catalogue

    specs = catalogue()
    return {name: specs[name].parameters for name in tools if name in specs}
