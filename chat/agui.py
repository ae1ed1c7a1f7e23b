"""AG-UI 1.0 (contract: "AG-UI endpoint"): the input a client posts, and one request
of a room told as one AG-UI run.

`RunMapper` reads the same room frames every WebSocket watcher gets (the durable
events in seq order, the deltas, and a snapshot to start from or to catch up with)
and answers the AG-UI events they make for the request it follows, built with the
`ag-ui-protocol` package's models (`ag_ui.core`), never as hand-written dicts. It
reads nothing itself: the stream (chat/agui_stream.py) feeds it and sends what it
answers.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from ag_ui.core import (
    PROTOCOL_VERSION,
    AssistantMessage,
    BaseEvent,
    CustomEvent,
    FunctionCall,
    Interrupt,
    MessagesSnapshotEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCall,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    ToolMessage,
    UserMessage,
)
from ag_ui.encoder import EventEncoder
from pydantic import BaseModel, ValidationError

from .errors import Invalid

# The contract's limits on the input.
MAX_BODY_BYTES = 1024 * 1024
MAX_RUN_ID_CHARS = 200

_encoder = EventEncoder()


def sse(event: BaseEvent) -> bytes:
    """One event as the stream sends it: `data: <JSON>` and a blank line."""
    return _encoder.encode(event).encode("utf-8")


KEEP_ALIVE = b": keep-alive\n\n"


# The input ------------------------------------------------------------------------


def parse_input(body: bytes) -> RunAgentInput:
    """The body as a `RunAgentInput`, strictly: JSON types as the schema says (never
    coerced), each message valid for its role, no null where a field may only be
    absent; Invalid (400) otherwise. Unknown keys are kept and ignored."""
    if len(body) > MAX_BODY_BYTES:
        raise Invalid(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Invalid("The body is not JSON (or is nested too deeply).") from None
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object (a RunAgentInput).")
    try:
        run_input = RunAgentInput.model_validate(data, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Invalid(f"Not a RunAgentInput: {where}: {first['msg']}.") from None
    except RecursionError:
        raise Invalid("The body is nested too deeply.") from None
    null = _null_field(run_input, "")
    if null:
        raise Invalid(f"Not a RunAgentInput: {null} is null; leave it out instead.")
    if not 1 <= len(run_input.run_id) <= MAX_RUN_ID_CHARS:
        raise Invalid(f"runId must be 1 to {MAX_RUN_ID_CHARS} characters.")
    return run_input


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _null_field(model: BaseModel, path: str) -> str | None:
    """The first optional field given as null (AG-UI: absent, never null), where
    the field's type is not "any JSON value"."""
    for name in sorted(model.model_fields_set):
        field = type(model).model_fields.get(name)
        value = getattr(model, name, None)
        where = f"{path}{field.alias or name if field else name}"
        if value is None and field is not None and field.annotation is not Any:
            if typing.get_args(field.annotation) != (Any, type(None)):
                return where
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                found = _null_field(item, where + ".")
                if found:
                    return found
    return None


def input_text(run_input: RunAgentInput) -> str:
    """The text a new run posts: the last message's, which must be the user's (its
    text parts joined with newlines; other parts dropped)."""
    if not run_input.messages:
        raise Invalid("messages is empty; the last one must be the user's message.")
    last = run_input.messages[-1]
    if not isinstance(last, UserMessage):
        raise Invalid('The last message must have role "user".')
    if isinstance(last.content, str):
        return last.content
    return "\n".join(part.text for part in last.content if part.type == "text")


def forwarded_request(run_input: RunAgentInput) -> str | None:
    """`forwardedProps.agentsite.request` (connect's request to follow), if given."""
    props = run_input.forwarded_props
    ours = props.get("agentsite") if isinstance(props, dict) else None
    value = ours.get("request") if isinstance(ours, dict) else None
    if value is not None and not isinstance(value, str):
        raise Invalid("forwardedProps.agentsite.request must be a request id.")
    return value


# The room's history, for connect ---------------------------------------------------


def history_messages(
    messages: Iterable[Mapping[str, Any]], actions: Iterable[Mapping[str, Any]]
) -> MessagesSnapshotEvent:
    """The room's final messages (the WebSocket snapshot's) as AG-UI messages, each
    action of their requests as an assistant tool call at its creation."""
    items = sorted(
        [("m", m) for m in messages] + [("a", a) for a in actions],
        key=lambda item: item[1]["created"],
    )
    out: list[Any] = []
    for kind, item in items:
        if kind == "a":
            out.append(AssistantMessage(id=item["id"], tool_calls=[_tool_call(item)]))
        elif item["role"] == "user":
            out.append(
                UserMessage(id=item["id"], content=item["content"], name=item["author"])
            )
        elif item["role"] == "assistant":
            out.append(AssistantMessage(id=item["id"], content=item["content"]))
        elif item["action"] is not None:
            out.append(
                ToolMessage(
                    id=item["id"], content=item["content"], tool_call_id=item["action"]
                )
            )
    return MessagesSnapshotEvent(messages=out)


def _tool_call(action: Mapping[str, Any]) -> ToolCall:
    return ToolCall(
        id=action["id"],
        function=FunctionCall(name=action["tool"], arguments=_proposed(action)),
    )


def _proposed(action: Mapping[str, Any]) -> str:
    """The action's arguments as the model proposed them, as JSON text."""
    arguments = action["proposed_arguments"]
    if arguments is None:
        arguments = action["arguments"]
    return json.dumps(arguments, ensure_ascii=False)


# A request as one run ------------------------------------------------------------


def may_vote(action: Mapping[str, Any], username: str) -> bool:
    """Whether `username` may vote on the action now: it is pending and they are
    among its `eligible` (who may still vote: not voted on its current arguments)."""
    return action["status"] == "pending" and username in action["eligible"]


class RunMapper:
    """The AG-UI events of one run following one request of a room.

    Feed it the room's frames in order (`frame`); it answers the events to send.
    When the run must end on an interrupt, `interrupting` lists the pending actions
    and `interrupt` (given their tools' parameter schemas) answers the last event.
    `answered`: on a resumed run, the actions its entries answered; it then stays
    open while their request waits only on others.
    """

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        request_id: str | None,
        username: str,
        answered: Iterable[str] | None = None,
    ) -> None:
        self.thread_id, self.run_id = thread_id, run_id
        self.request_id, self.username = request_id, username
        self.resumed = answered is not None
        self.answered = set(answered or ())
        self.status: str | None = None
        self.error = ""
        self.actions: dict[str, dict[str, Any]] = {}
        self.announced: set[str] = set()  # TOOL_CALL_START/ARGS/END sent (or known)
        self.results: set[str] = set()  # tool messages sent (or known)
        self.sent: dict[str, str] = {}  # message id -> its text sent so far
        self.known: dict[str, str | None] = {}  # its text as the deltas build it
        self.open: set[str] = set()  # TEXT_MESSAGE_START sent, END not yet
        self.finished: set[str] = set()  # final (END sent, or known)
        self.votable: dict[str, bool] = {}  # answered action -> caller may vote
        self.rearmed: set[str] = set()  # answered, then votable again
        self.interrupting: list[dict[str, Any]] = []
        self.done = False

    # Start -------------------------------------------------------------------------

    def started(self) -> list[BaseEvent]:
        metadata = (
            {"agentsite": {"request": self.request_id}} if self.request_id else None
        )
        return [
            RunStartedEvent(
                thread_id=self.thread_id,
                run_id=self.run_id,
                protocol_version=PROTOCOL_VERSION,
                metadata=metadata,
            )
        ]

    def seen(self, state: Mapping[str, Any]) -> None:
        """Take a request-scoped snapshot as already told (a resumed run's start),
        sending nothing."""
        self._snapshot(state, announce=False)

    def attach(self, state: Mapping[str, Any]) -> list[BaseEvent]:
        """Connect's start: what the history holds is told already; a message
        streaming now is sent with its text so far."""
        return self._snapshot(state, announce=False, partial=True) + self.ending()

    # Frames ------------------------------------------------------------------------

    def frame(self, frame: Mapping[str, Any]) -> list[BaseEvent]:
        """The events one room frame makes (none for other requests' frames)."""
        if self.done:
            return []
        kind = frame.get("type")
        if kind == "snapshot":
            events = self._snapshot(frame, announce=True)
        elif kind == "delta":
            events = self._delta(frame) if self._ours(frame.get("request")) else []
        elif kind == "message":
            events = self._message(frame["message"])
        elif kind == "action":
            events = self._action(frame["action"])
        elif kind == "request":
            events = self._request(frame["request"])
        else:
            events = []
        return events + self.ending()

    def _ours(self, request_id: object) -> bool:
        return self.request_id is not None and request_id == self.request_id

    def _snapshot(
        self, state: Mapping[str, Any], *, announce: bool, partial: bool = False
    ) -> list[BaseEvent]:
        request = state.get("request")
        if request is None or not self._ours(request["id"]):
            return []
        events: list[BaseEvent] = []
        items = [("m", m) for m in state["messages"]] + [
            ("a", a) for a in state["actions"]
        ]
        for kind, item in sorted(items, key=lambda i: i[1]["created"]):
            if not announce:
                self._know(kind, item)
            elif kind == "a":
                events += self._action(item)
            else:
                events += self._message(item)
        streaming = state.get("partial")
        if streaming and streaming["message"] not in self.finished:
            message = streaming["message"]
            if announce or partial or message in self.sent:
                self.known[message] = streaming["content"]
                events += self._send_known(message)
        events += self._request(request)
        return events

    def _know(self, kind: str, item: Mapping[str, Any]) -> None:
        if kind == "a":
            self.announced.add(item["id"])
            self._track(item)
        elif item["role"] == "assistant":
            self.finished.add(item["id"])
        elif item["role"] == "tool":
            self.results.add(item["id"])

    def _delta(self, frame: Mapping[str, Any]) -> list[BaseEvent]:
        message, offset, text = frame["message"], frame["offset"], frame["text"]
        if message in self.finished:
            return []
        known = self.known.get(message, "")
        if known is not None and offset <= len(known):
            self.known[message] = known[:offset] + text
        elif offset == 0:
            self.known[message] = text
        else:
            self.known[message] = None  # a gap: wait for the final text
        return self._send_known(message)

    def _send_known(self, message: str) -> list[BaseEvent]:
        """Send the text beyond what was sent, when what is known continues it (a
        restarted stream that has not caught up yet sends nothing meanwhile)."""
        known, sent = self.known.get(message), self.sent.get(message, "")
        if known is None or not known.startswith(sent) or len(known) == len(sent):
            return []
        return self._text(message, known[len(sent) :])

    def _text(self, message: str, text: str) -> list[BaseEvent]:
        events: list[BaseEvent] = []
        if message not in self.open:
            self.open.add(message)
            events.append(TextMessageStartEvent(message_id=message, role="assistant"))
        events.append(TextMessageContentEvent(message_id=message, delta=text))
        self.sent[message] = self.sent.get(message, "") + text
        return events

    def _message(self, payload: Mapping[str, Any]) -> list[BaseEvent]:
        if not self._ours(payload["request"]):
            return []
        if payload["role"] == "assistant":
            return self._final(payload)
        if payload["role"] == "tool" and payload["id"] not in self.results:
            self.results.add(payload["id"])
            if payload["action"] is None:
                return []  # an invalid call of the model: never an action
            return [
                ToolCallResultEvent(
                    message_id=payload["id"],
                    tool_call_id=payload["action"],
                    role="tool",
                    content=payload["content"],
                )
            ]
        return []

    def _final(self, payload: Mapping[str, Any]) -> list[BaseEvent]:
        message, content = payload["id"], payload["content"]
        if message in self.finished:
            return []
        self.finished.add(message)
        sent = self.sent.get(message, "")
        if not content.startswith(sent):
            self.done = True
            return [
                RunErrorEvent(
                    message="The answer was streamed again after a restart and "
                    "differs from the text already sent; attach again with connect.",
                    code="stream_diverged",
                )
            ]
        events = self._text(message, content[len(sent) :]) if content != sent else []
        if message in self.open:
            self.open.discard(message)
            events.append(TextMessageEndEvent(message_id=message))
        return events

    def _action(self, payload: Mapping[str, Any]) -> list[BaseEvent]:
        if not self._ours(payload["request"]):
            return []
        events: list[BaseEvent] = []
        action = payload["id"]
        if action not in self.announced:
            self.announced.add(action)
            events += [
                ToolCallStartEvent(tool_call_id=action, tool_call_name=payload["tool"]),
                ToolCallArgsEvent(tool_call_id=action, delta=_proposed(payload)),
                ToolCallEndEvent(tool_call_id=action),
            ]
        self._track(payload)
        events.append(CustomEvent(name="agentsite.action", value=dict(payload)))
        return events

    def _track(self, payload: Mapping[str, Any]) -> None:
        action = payload["id"]
        self.actions[action] = dict(payload)
        if action in self.answered:
            votable = may_vote(payload, self.username)
            if votable and not self.votable.get(action, True):
                self.rearmed.add(action)  # a retract or an edit: a vote again
            self.votable[action] = votable

    def _request(self, payload: Mapping[str, Any]) -> list[BaseEvent]:
        if self._ours(payload["id"]):
            self.status, self.error = payload["status"], payload["error"]
        return []

    # The end -----------------------------------------------------------------------

    def ending(self) -> list[BaseEvent]:
        """The run's terminal events, once the request's status calls for them."""
        if self.done or self.interrupting:
            return []
        if self.request_id is None:
            return self._finish(RunFinishedSuccessOutcome())
        if self.status == "completed":
            return self._finish(RunFinishedSuccessOutcome())
        if self.status == "cancelled":
            return self._finish(RunFinishedCancelledOutcome())
        if self.status == "failed":
            self.done = True
            return [RunErrorEvent(message=self.error, code="request_failed")]
        if self.status == "awaiting_approval":
            pending = [a for a in self.actions.values() if a["status"] == "pending"]
            if pending and (not self.resumed or self._needs_caller(pending)):
                self.interrupting = sorted(pending, key=lambda a: a["created"])
        return []

    def _needs_caller(self, pending: list[dict[str, Any]]) -> bool:
        """A resumed run ends again once an action waits on its caller: one its
        entries did not answer, or one the caller may vote on again."""
        return any(
            a["id"] not in self.answered or a["id"] in self.rearmed for a in pending
        )

    def _finish(self, outcome: Any) -> list[BaseEvent]:
        events: list[BaseEvent] = [
            TextMessageEndEvent(message_id=m) for m in sorted(self.open)
        ]
        self.open.clear()
        self.done = True
        events.append(
            RunFinishedEvent(
                thread_id=self.thread_id, run_id=self.run_id, outcome=outcome
            )
        )
        return events

    def interrupt(self, schemas: Mapping[str, Any]) -> list[BaseEvent]:
        """The interrupt outcome for `interrupting`; `schemas`: tool -> parameters."""
        interrupts = [
            self._interrupt(a, schemas.get(a["tool"])) for a in self.interrupting
        ]
        self.interrupting = []
        return self._finish(RunFinishedInterruptOutcome(interrupts=interrupts))

    def _interrupt(self, action: Mapping[str, Any], parameters: Any) -> Interrupt:
        properties: dict[str, Any] = {"approved": {"type": "boolean"}}
        properties["editedArgs"] = parameters or {"type": "object"}
        properties["reason"] = {"type": "string"}
        return Interrupt(
            id=action["id"],
            tool_call_id=action["id"],
            reason="tool_call",
            message=interrupt_message(action),
            response_schema={
                "type": "object",
                "properties": properties,
                "required": ["approved"],
            },
            expires_at=action["expires_at"],
            metadata={
                "agentsite": {
                    "action": dict(action),
                    "may_vote": may_vote(action, self.username),
                }
            },
        )


def interrupt_message(action: Mapping[str, Any]) -> str:
    """One line naming the tool and what it touches: `Approve delete_issue on ENG-3
    (Login fails)?`."""
    preview = action["preview"] if isinstance(action["preview"], dict) else {}
    target = ""
    if preview.get("identifier"):
        target = f" on {preview['identifier']}"
        if preview.get("title"):
            target += f" ({preview['title']})"
    elif preview:
        shown = [
            f"{key}: {value}"
            for key, value in preview.items()
            if isinstance(value, str | int | float) and not isinstance(value, bool)
        ][:3]
        target = f" ({', '.join(shown)})" if shown else ""
    line = " ".join(f"Approve {action['tool']}{target}".split())
    return (line[:200] + "…" if len(line) > 200 else line) + "?"
