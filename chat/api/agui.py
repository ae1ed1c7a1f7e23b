"""The AG-UI endpoint (contract: "AG-UI endpoint"): `POST /api/rooms/<slug>/agui`
and `.../agui/connect`, a `RunAgentInput` in, one run as Server-Sent Events out.

Authentication, CSRF, throttling and the error answers are the REST API's (these
are DRF views); the input is read strictly with the `ag-ui-protocol` models
(chat.agui); the services settle the run before the stream starts; the stream
itself (chat.agui_stream) is sent from the event loop (agentsite.handoff).
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from agentsite.handoff import HANDOFF
from chat import services
from chat.agui import (
    MAX_RUN_ID_CHARS,
    forwarded_request,
    input_text,
    parse_input,
)
from chat.agui_stream import RunPlan, run_events, stream_admit
from chat.api.views import _refusals
from chat.errors import Invalid, TooMany
from chat.http import AuthenticatedRequest
from chat.models import Room
from chat.services.agui import Entry, agui_connect, agui_resume, agui_run_post


class RunAgentInputDoc(serializers.Serializer[Any]):
    """AG-UI 1.0's RunAgentInput, as far as this endpoint reads it."""

    threadId = serializers.CharField(help_text="The room's slug.")
    runId = serializers.CharField(
        min_length=1,
        max_length=MAX_RUN_ID_CHARS,
        help_text="Chosen by the client; once per caller and room.",
    )
    messages = serializers.ListField(
        child=serializers.DictField(),
        help_text='AG-UI messages; without resume the last one is the "user" '
        "message posted as the request.",
    )
    resume = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="ResumeEntry objects {interruptId, status, payload?}: votes.",
    )
    tools = serializers.ListField(child=serializers.DictField(), required=False)
    context = serializers.ListField(  # type: ignore[assignment]
        child=serializers.DictField(), required=False
    )
    state = serializers.JSONField(required=False)
    forwardedProps = serializers.JSONField(required=False)
    parentRunId = serializers.CharField(required=False)
    protocolVersion = serializers.CharField(required=False)


F = TypeVar("F", bound=Callable[..., Any])

STREAM = OpenApiResponse(
    OpenApiTypes.STR,
    description="text/event-stream: AG-UI 1.0 events, one `data:` line each.",
)


def _schema(description: str) -> Callable[[F], F]:
    decorator: Callable[[F], F] = extend_schema(
        request={"application/json": RunAgentInputDoc},
        responses={
            (200, "text/event-stream"): STREAM,
            **{
                (code, "application/json"): response
                for code, response in _refusals(400, 403, 404, 409, 415).items()
            },
        },
        description=description,
        examples=[
            OpenApiExample(
                "A question",
                request_only=True,
                value={
                    "threadId": "triage",
                    "runId": "run-1",
                    "messages": [
                        {"id": "m1", "role": "user", "content": "find login issues"}
                    ],
                },
            )
        ],
    )
    return decorator


class AguiView(APIView):
    """What both paths share: the input, the stream slot, the response."""

    def perform_content_negotiation(
        self, request: Any, force: bool = False
    ) -> tuple[Any, str]:
        # Clients ask for text/event-stream; a refusal is still JSON `{detail}`
        # (the stream itself is not a DRF response and is not rendered).
        return JSONRenderer(), JSONRenderer.media_type

    def _input(self, request: AuthenticatedRequest, room: Room) -> Any:
        # JSON only, as every body of the API (the client sends application/json).
        media = (request.content_type or "").split(";")[0].strip().lower()
        if media != "application/json":
            raise UnsupportedMediaType(media or "(none)")
        run_input = parse_input(request.body)
        if run_input.thread_id != room.slug:
            raise Invalid("threadId must be the room's slug.")
        return run_input

    def _plan(
        self, request: AuthenticatedRequest, room: Room, run_input: Any, mode: str
    ) -> RunPlan:
        """The run this call starts, on the thread named by the room's slug."""
        return RunPlan(
            room=room,
            user=request.user,
            thread_id=room.slug,
            run_id=run_input.run_id,
            request_id=None,
            mode=mode,
        )

    def _slot(self, request: AuthenticatedRequest, plan: RunPlan) -> None:
        try:
            admitted = stream_admit(user_id=request.user.pk, connection=plan.connection)
        except RedisError:
            raise TooMany("Streams cannot be counted right now; try again.") from None
        if not admitted:
            raise TooMany(
                "You have too many AG-UI streams open (AGUI_MAX_STREAMS_PER_USER); "
                "close one first."
            )

    def _stream(
        self, request: AuthenticatedRequest, plan: RunPlan
    ) -> HttpResponse | StreamingHttpResponse:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        body = run_events(plan)
        handoff = (
            request._request.scope.get(HANDOFF)
            if hasattr(request._request, "scope")
            else None
        )
        if isinstance(handoff, list):
            handoff.append(body)
            return HttpResponse(content_type="text/event-stream", headers=headers)
        return StreamingHttpResponse(
            body, content_type="text/event-stream", headers=headers
        )


class AguiRunView(AguiView):
    @_schema(
        "One run of the room: a new request from the last user message, or, with "
        "`resume`, the request whose actions the entries vote on."
    )
    def post(
        self, request: AuthenticatedRequest, slug: str
    ) -> HttpResponse | StreamingHttpResponse:
        room = services.room_get_for_member(slug=slug, user=request.user)
        run_input = self._input(request, room)
        plan = self._plan(
            request, room, run_input, "resume" if run_input.resume else "run"
        )
        text = None if run_input.resume else input_text(run_input)
        self._slot(request, plan)
        try:
            if run_input.resume:
                self._resume(request, plan, run_input.resume)
            else:
                assert text is not None
                agent_request = agui_run_post(
                    room=room, user=request.user, run_id=plan.run_id, text=text
                )
                plan.request_id = str(agent_request.pk)
        except Exception:
            _give_back(plan)
            raise
        return self._stream(request, plan)

    def _resume(
        self, request: AuthenticatedRequest, plan: RunPlan, resume: list[Any]
    ) -> None:
        entries = [Entry(e.interrupt_id, e.status, e.payload) for e in resume]
        resumed = agui_resume(
            room=plan.room, user=request.user, run_id=plan.run_id, entries=entries
        )
        plan.request_id, plan.after = resumed.request_id, resumed.after
        plan.answered, plan.warnings = resumed.answered, resumed.warnings
        plan.refusal, plan.seen = resumed.refusal, resumed.seen


class AguiConnectView(AguiView):
    @_schema(
        "Attach to the room: its history as MESSAGES_SNAPSHOT, then one run "
        "following a request in progress (`forwardedProps.agentsite.request`, or "
        "the oldest not ended)."
    )
    def post(
        self, request: AuthenticatedRequest, slug: str
    ) -> HttpResponse | StreamingHttpResponse:
        room = services.room_get_for_member(slug=slug, user=request.user)
        run_input = self._input(request, room)
        wanted = forwarded_request(run_input)
        plan = self._plan(request, room, run_input, "connect")
        self._slot(request, plan)
        try:
            plan.request_id = agui_connect(
                room=room, user=request.user, run_id=plan.run_id, request_id=wanted
            )
        except Exception:
            _give_back(plan)
            raise
        return self._stream(request, plan)


def _give_back(plan: RunPlan) -> None:
    from chat import socket_cap

    socket_cap.socket_release(
        user_id=plan.user.pk, connection=plan.connection, kind=socket_cap.AGUI_STREAMS
    )
