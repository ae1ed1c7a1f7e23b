"""The REST API of a room's schedules (approvers only; contract: "Schedules")."""

from typing import Any

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.cron import MAX_CRON_CHARS
from chat.http import AuthenticatedRequest
from chat.models import Schedule

from .views import _refusals


def _schedule_in(*, partial: bool) -> dict[str, Any]:
    """A schedule as a client sends it, exactly the fields `_clean` reads."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "cron": {
                "type": "string",
                "maxLength": MAX_CRON_CHARS,
                "description": "Five fields as Debian's cron reads them.",
            },
            "timezone": {
                "type": "string",
                "maxLength": 64,
                "description": "An IANA time zone name; default UTC.",
            },
            "prompt": {
                "type": "string",
                "minLength": 1,
                "maxLength": settings.AGENT_MAX_INPUT_CHARS,
                "pattern": r"^[^\x00]*$",
                "description": "A template: {{ $slot }} and {{ $schedule }}.",
            },
            "name": {
                "type": "string",
                "maxLength": 100,
                "pattern": r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$",
            },
            "enabled": {"type": "boolean"},
        },
    }
    if not partial:
        schema["required"] = ["cron", "prompt"]
    return {"application/json": schema}


class _BodySchema(AutoSchema):
    """The raw body schema is exact; drf-spectacular marks no raw body required."""

    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        body: dict[str, Any] | None = super()._get_request_body(  # type: ignore[no-untyped-call]
            direction
        )
        if body is not None and self.method in ("POST", "PATCH"):
            body["required"] = True
        return body


class ScheduleSerializer(serializers.ModelSerializer[Schedule]):
    id = serializers.CharField(read_only=True)
    author = serializers.CharField(
        source="author.username", read_only=True, allow_null=True, default=None
    )
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )
    last_request = serializers.CharField(
        source="last_request_id", read_only=True, allow_null=True
    )

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "cron",
            "timezone",
            "prompt",
            "enabled",
            "author",
            "created_by",
            "created",
            "next_run",
            "last_run",
            "last_request",
            "skipped",
            "last_skipped",
        ]
        read_only_fields = fields


class SchedulesView(APIView):
    schema = _BodySchema()

    @extend_schema(
        responses={200: ScheduleSerializer(many=True), **_refusals(403, 404)}
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        found = services.schedule_list(room_slug=slug, user=request.user)
        return Response(ScheduleSerializer(found, many=True).data)

    @extend_schema(
        request=_schedule_in(partial=False),
        responses={201: ScheduleSerializer, **_refusals(400, 403, 404, 409, 415)},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        schedule = services.schedule_create(
            room_slug=slug, user=request.user, data=request.data
        )
        return Response(
            ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED
        )


class ScheduleView(APIView):
    schema = _BodySchema()

    @extend_schema(responses={200: ScheduleSerializer, **_refusals(403, 404)})
    def get(
        self, request: AuthenticatedRequest, slug: str, schedule_id: str
    ) -> Response:
        schedule = services.schedule_get(
            room_slug=slug, user=request.user, schedule_id=schedule_id
        )
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(
        request=_schedule_in(partial=True),
        responses={200: ScheduleSerializer, **_refusals(400, 403, 404, 415)},
    )
    def patch(
        self, request: AuthenticatedRequest, slug: str, schedule_id: str
    ) -> Response:
        schedule = services.schedule_update(
            room_slug=slug,
            user=request.user,
            schedule_id=schedule_id,
            data=request.data,
        )
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(responses={204: None, **_refusals(403, 404)})
    def delete(
        self, request: AuthenticatedRequest, slug: str, schedule_id: str
    ) -> Response:
        services.schedule_delete(
            room_slug=slug, user=request.user, schedule_id=schedule_id
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
