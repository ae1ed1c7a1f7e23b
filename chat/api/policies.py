"""The REST API of approval policies: rules per room, the tool catalogue, retract."""

import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.api.serializers import ActionSerializer, PolicyRuleSerializer
from chat.errors import Invalid
from chat.http import AuthenticatedRequest
from chat.models import Action
from chat.tools import Scope, ToolSpec, catalogue, mcp

from .views import SLUG, DenyIn, RequiredBodySchema, _refusals, _valid


def _tool_schema() -> dict[str, Any]:
    """The tools a rule may name: exactly the catalogue's, unless MCP servers are
    configured, whose tools change while the schema is served."""
    if mcp.configured():
        return {
            "type": "string",
            "pattern": r"^(\*|[A-Za-z0-9_-]{1,64})$",
            "description": 'A tool name from GET /api/tools, or "*".',
        }
    return {"type": "string", "enum": ["*", *catalogue()]}


def _rule_schema(*, partial: bool) -> dict[str, Any]:
    """A rule as a client sends it, exactly as `rule_clean` checks it."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tool": _tool_schema(),
            "arguments": {"type": "object", "nullable": True},
            "mode": {"type": "string", "enum": ["ask", "auto", "never"]},
            "approvals_required": {"type": "integer", "minimum": 1, "maximum": 50},
            "approvers": {
                "type": "array",
                "nullable": True,
                "items": {"type": "string"},
                "description": "Usernames of existing users.",
            },
            "requester_may_approve": {"type": "boolean"},
            "timeout": {
                "type": "integer",
                "nullable": True,
                "minimum": 1,
                "maximum": 2592000,
            },
            "delay": {"type": "integer", "minimum": 0, "maximum": 86400},
            "escalate_after": {
                "type": "integer",
                "nullable": True,
                "minimum": 1,
                "maximum": 2592000,
                "description": "Seconds an action may stay pending before it "
                "escalates; with escalate_to, on ask rules only.",
            },
            "escalate_to": {
                "type": "array",
                "nullable": True,
                "maxItems": 20,
                "items": {"type": "string"},
                "description": "Usernames of existing users (1 to 20) who may also "
                "vote once an action escalates.",
            },
            "expires_at": {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "From this time on (in the future when set) the rule "
                "matches no call.",
            },
        },
    }
    if not partial:
        schema["required"] = ["tool"]
    return {"application/json": schema}


TOOL_OUT = inline_serializer(
    "Tool",
    {
        "name": serializers.CharField(),
        "description": serializers.CharField(),
        "parameters": serializers.DictField(),
        "pack": serializers.CharField(),
        "requires_approval": serializers.BooleanField(),
        "target": serializers.CharField(allow_null=True),
    },
)


class PoliciesView(APIView):
    schema = RequiredBodySchema()

    @extend_schema(responses={200: PolicyRuleSerializer(many=True), **_refusals(404)})
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        rules = services.policy_list(room=room)
        return Response(PolicyRuleSerializer(rules, many=True).data)

    @extend_schema(
        request=_rule_schema(partial=False),
        responses={201: PolicyRuleSerializer, **_refusals(400, 403, 404, 415)},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        rule = services.policy_create(room=room, actor=request.user, data=request.data)
        return Response(PolicyRuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class PolicyView(APIView):
    @extend_schema(
        request=_rule_schema(partial=True),
        responses={200: PolicyRuleSerializer, **_refusals(400, 403, 404, 415)},
    )
    def patch(self, request: AuthenticatedRequest, slug: str, rule_id: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        rule = services.policy_update(
            room=room, actor=request.user, rule_id=rule_id, data=request.data
        )
        return Response(PolicyRuleSerializer(rule).data)

    @extend_schema(responses={204: None, **_refusals(403, 404)})
    def delete(
        self, request: AuthenticatedRequest, slug: str, rule_id: str
    ) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        services.policy_delete(room=room, actor=request.user, rule_id=rule_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ToolsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "room",
                str,
                description="A room's slug: only the tools its packs offer "
                "(members only).",
                pattern=SLUG,
            )
        ],
        responses={
            200: serializers.ListSerializer(child=TOOL_OUT),
            **_refusals(400, 404),
        },
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        slug = request.query_params.get("room")
        scope = None
        if slug is not None:
            if not re.fullmatch(SLUG, slug):
                raise Invalid("room: a room's slug.")
            room = services.room_get_for_member(slug=slug, user=request.user)
            scope = Scope.of(room)
        return Response([tool_entry(spec) for spec in catalogue(scope).values()])


def tool_entry(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "parameters": spec.parameters,
        "pack": spec.pack,
        "requires_approval": spec.needs_approval,
        "target": spec.target,
    }


class ActionRetractView(APIView):
    @extend_schema(
        request=DenyIn,
        responses={200: ActionSerializer, **_refusals(400, 403, 404, 409, 415)},
    )
    def post(self, request: AuthenticatedRequest, action_id: str) -> Response:
        data = _valid(DenyIn, request.data)
        action = services.action_retract(
            action_id=action_id,
            user=request.user,
            reason=data.get("reason", ""),
            via=Action.Via.API,
        )
        return Response(ActionSerializer(action).data)
