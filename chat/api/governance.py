"""The REST API of governance: a room's audit export and its decision stats."""

from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.http import AuthenticatedRequest
from chat.services import audit, stats

from .views import _refusals

# How many records the stream reads per query: memory stays flat for any `limit`.
CHUNK = 500


class _FormatIsOurs(APIView):
    """`format` here is the export's (jsonl or csv), not DRF's URL format override,
    which would answer 404 to a format no renderer has; refusals are JSON."""

    def perform_content_negotiation(
        self, request: Any, force: bool = False
    ) -> tuple[Any, str]:
        return JSONRenderer(), JSONRenderer.media_type


RECORD_SCHEMA = {
    "type": "object",
    "required": ["id", "at", "kind", "actor", "via", "reason", "data"],
    "properties": {
        "id": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "kind": {"type": "string", "enum": list(audit.KINDS)},
        "actor": {"type": "string"},
        "via": {
            "type": "string",
            "enum": ["room", "api", "admin", "link", "policy", "system"],
        },
        "request": {"type": "string", "nullable": True},
        "action": {
            "type": "object",
            "nullable": True,
            "properties": {
                "id": {"type": "string"},
                "tool": {"type": "string"},
                "arguments": {},
                "preview": {},
            },
        },
        "decision": {"type": "string", "enum": ["approve", "deny"], "nullable": True},
        "reason": {"type": "string"},
        "rule": {"type": "object", "nullable": True},
        "data": {"type": "object"},
    },
}


class AuditView(_FormatIsOurs):
    @extend_schema(
        description="The room's audit records after `after`, oldest first, streamed "
        "as JSON lines or CSV (`format`, whatever `Accept` says). A page with fewer "
        "than `limit` records was the last for now; continue with the last `id`. "
        "Approvers of the room and holders of `chat.decide_action`.",
        parameters=[
            OpenApiParameter(
                "after",
                {"type": "string", "pattern": r"^[0-9]{1,18}-[0-9]{1,18}$"},
                description="The id of the last record read: the records after it.",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": audit.LIMIT_MAX},
                description=f"At most this many (1-{audit.LIMIT_MAX}, default "
                f"{audit.LIMIT_DEFAULT}); fewer: the last page for now.",
            ),
            OpenApiParameter(
                "format",
                {"type": "string", "enum": list(audit.FORMATS)},
                description="jsonl (default): one JSON record per line; csv: a "
                "header row, then a row per record.",
            ),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                RECORD_SCHEMA, description="One JSON record per line, streamed."
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="Columns: " + ",".join(audit.CSV_COLUMNS) + ".",
            ),
            **_refusals(400, 403, 404),
        },
    )
    def get(
        self, request: AuthenticatedRequest, slug: str
    ) -> StreamingHttpResponse | Response:
        room = audit.room_for_governance(slug=slug, user=request.user)
        params = request.query_params
        fmt = audit.audit_format(params.get("format"))
        limit = audit.audit_limit(params.get("limit"))
        after = audit.audit_cursor(room=room, after=params.get("after"))
        response = StreamingHttpResponse(
            _stream(room.pk, after, limit, fmt), content_type=audit.FORMATS[fmt]
        )
        response["Cache-Control"] = "no-store"
        # A link on the room's page downloads it as a file.
        response["Content-Disposition"] = (
            f'attachment; filename="audit-{room.slug}.{fmt}"'
        )
        return response


async def _stream(room_id: int, after: int, limit: int, fmt: str) -> AsyncIterator[str]:
    """The page, read CHUNK records at a time. Records commit in seq order, so
    the chunks read one after the other are the page one query would read."""
    first = True
    left = limit
    while True:
        size = min(CHUNK, left)
        records = await sync_to_async(audit.audit_page)(
            room_id=room_id, after=after, limit=size
        )
        for line in audit.audit_export(records, fmt, header=first):
            yield line
        first = False
        left -= len(records)
        if len(records) < size or left == 0:
            return
        after = records[-1].seq


APPROVER_OUT = inline_serializer(
    "ApproverStats",
    {
        "username": serializers.CharField(),
        "votes": serializers.IntegerField(),
        "approvals": serializers.IntegerField(),
        "denials": serializers.IntegerField(),
        "median_seconds_to_vote": serializers.FloatField(allow_null=True),
        "rubber_stamp": serializers.BooleanField(),
    },
)
TOOL_OUT = inline_serializer(
    "ToolStats",
    {
        "tool": serializers.CharField(),
        "proposed": serializers.IntegerField(),
        "approved": serializers.IntegerField(),
        "denied": serializers.IntegerField(),
        "expired": serializers.IntegerField(),
        "auto": serializers.IntegerField(),
        "never": serializers.IntegerField(),
    },
)


class StatsView(_FormatIsOurs):
    @extend_schema(
        description="Votes per approver and actions per tool over the last `days` "
        "days. Approvers of the room and holders of `chat.decide_action`.",
        parameters=[
            OpenApiParameter(
                "days",
                {"type": "integer", "minimum": 1, "maximum": stats.DAYS_MAX},
                description=f"The window: the last N days (1-{stats.DAYS_MAX}, "
                f"default {stats.DAYS_DEFAULT}).",
            )
        ],
        responses={
            200: inline_serializer(
                "RoomStats",
                {
                    "room": serializers.CharField(),
                    "days": serializers.IntegerField(),
                    "since": serializers.DateTimeField(),
                    "until": serializers.DateTimeField(),
                    "approvers": serializers.ListField(child=APPROVER_OUT),
                    "tools": serializers.ListField(child=TOOL_OUT),
                },
            ),
            **_refusals(400, 403, 404),
        },
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = audit.room_for_governance(slug=slug, user=request.user)
        days = stats.stats_days(request.query_params.get("days"))
        return Response(stats.room_stats(room=room, days=days))
