"""The REST API of the contract: thin views over chat.services."""

import re
from typing import Any

from django.contrib.auth import authenticate
from django.core.validators import RegexValidator, slug_re
from django.db.models import OuterRef, Subquery
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request as HttpRequest
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services, tools
from chat.api.fields import (
    NO_NUL,
    ONE_LINE,
    ONE_LINE_PATTERN,
    SLUG_IN,
    MessageText,
    StrictCharField,
)
from chat.api.parsers import SafeJSONParser
from chat.api.serializers import (
    ActionSerializer,
    MemberSerializer,
    PolicyRuleSerializer,
    RequestDetailSerializer,
    RequestSerializer,
    RoomDetailSerializer,
    RoomSerializer,
)
from chat.errors import Forbidden, Invalid
from chat.http import AuthenticatedRequest
from chat.models import Action, ApiToken, Membership, Room
from chat.realtime import event_frame, events_after


class RefusedSerializer(serializers.Serializer[Any]):
    """A pending action a decide-all did not vote on, and why."""

    action = serializers.CharField()
    status = serializers.ChoiceField(choices=[403, 409])
    detail = serializers.CharField()


ERROR = inline_serializer(
    "Error",
    {
        "detail": serializers.CharField(),
        # Validation errors (400) also say which field failed, field by field.
        "errors": serializers.JSONField(required=False),
        # A decide-all refused on every pending action (403) says why, per action.
        "refused": RefusedSerializer(many=True, required=False),
    },
)
SLUG = r"^[-a-zA-Z0-9_]+$"  # Django's slug path converter
MAX_SEQ = 2**62
REFUSALS = {
    400: "Invalid input.",
    401: "No credentials, or bad ones.",
    403: "Not allowed for this user.",
    404: "No such thing, or not visible to this user.",
    409: "Not possible in the current state.",
    415: "The body is not JSON (`Content-Type: application/json`).",
    429: "Too many requests.",
}


def _refusals(*codes: int, anonymous: bool = False) -> dict[int, OpenApiResponse]:
    """The error answers of an endpoint, for the schema: `{"detail": "..."}`."""
    codes = (*codes, 429) if anonymous else (*codes, 401, 429)
    return {code: OpenApiResponse(ERROR, description=REFUSALS[code]) for code in codes}


def _integer(low: int, high: int) -> dict[str, Any]:
    """A query parameter's schema: an integer within the limits the view checks."""
    return {"type": "integer", "minimum": low, "maximum": high}


def _valid(
    serializer_class: type[serializers.Serializer[Any]], data: object
) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    validated: dict[str, Any] = serializer.validated_data
    return validated


class TokenIn(serializers.Serializer[Any]):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=256, trim_whitespace=False)


class TokenView(APIView):
    def _logging_in(self) -> bool:
        # The schema generator asks without a request: it documents both methods.
        return getattr(getattr(self, "request", None), "method", None) == "POST"

    def get_authenticators(self) -> list[Any]:
        # Logging in needs no credentials (a stale header must not refuse it);
        # revoking is done with the token itself.
        return [] if self._logging_in() else super().get_authenticators()

    def get_permissions(self) -> list[Any]:
        if self._logging_in():
            return [AllowAny()]
        return list(super().get_permissions())

    @extend_schema(
        request=TokenIn,
        # No credentials needed to log in; the stub types this as names only.
        auth=[{}],  # type: ignore[list-item]
        responses={
            200: inline_serializer(
                "TokenOut",
                {
                    "token": serializers.CharField(),
                    "expires_at": serializers.DateTimeField(),
                },
            ),
            **_refusals(400, 415, anonymous=True),
        },
    )
    def post(self, request: HttpRequest) -> Response:
        data = _valid(TokenIn, request.data)
        user = authenticate(
            request, username=data["username"], password=data["password"]
        )
        if user is None:
            raise Invalid("Unable to log in with these credentials.")
        token, key = services.token_issue(user=user)
        return Response({"token": key, "expires_at": token.expires_at})

    @extend_schema(request=None, responses={204: None, **_refusals()})
    def delete(self, request: AuthenticatedRequest) -> Response:
        """Revoke the token this call carries (with a session: all of the user's)."""
        token = request.auth if isinstance(request.auth, ApiToken) else None
        services.token_revoke(user=request.user, token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomIn(serializers.Serializer[Any]):
    name = StrictCharField(max_length=120, validators=[ONE_LINE])
    slug = StrictCharField(
        max_length=60, required=False, allow_blank=True, validators=[SLUG_IN]
    )


class RoomsView(APIView):
    @extend_schema(responses={200: RoomSerializer(many=True), **_refusals()})
    def get(self, request: AuthenticatedRequest) -> Response:
        role = Membership.objects.filter(room=OuterRef("pk"), user=request.user)
        rooms = Room.objects.filter(memberships__user=request.user).annotate(
            user_role=Subquery(role.values("role")[:1])
        )
        return Response(RoomSerializer(rooms, many=True).data)

    @extend_schema(
        request=RoomIn,
        responses={201: RoomSerializer, **_refusals(400, 403, 409, 415)},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        if not services.can_create_room(user=request.user):
            raise Forbidden("Creating rooms needs the permission chat.add_room.")
        data = _valid(RoomIn, request.data)
        room = services.room_create(
            user=request.user, name=data["name"], slug=data.get("slug", "")
        )
        body = RoomSerializer(room, context={"user": request.user}).data
        return Response(body, status=status.HTTP_201_CREATED)


# A team key: something besides whitespace, on one line (what room_update keeps).
TEAM_KEY = RegexValidator(ONE_LINE_PATTERN, message="A team key, on one line.")


class RoomPatch(serializers.Serializer[Any]):
    linear_teams = serializers.ListField(
        child=StrictCharField(max_length=60, validators=[TEAM_KEY]),
        max_length=100,
        required=False,
    )
    packs = serializers.ListField(
        child=serializers.ChoiceField(choices=[]),
        max_length=100,
        required=False,
        help_text='The tool packs the room\'s agent may use: "linear", "github", '
        '"mcp:<server>" (those configured); empty: every pack.',
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The packs configured now (the schema is built per request, as is this).
        valid = tools.packs_available()
        field = self.fields["packs"]
        assert isinstance(field, serializers.ListField)
        child = field.child
        assert isinstance(child, serializers.ChoiceField)
        child.choices = valid
        child.error_messages["invalid_choice"] = (
            f'"{{input}}" is not a pack here; the packs are {", ".join(valid)}.'
        )


class RoomView(APIView):
    # A list of team keys has no form encoding worth offering.
    parser_classes = [SafeJSONParser]

    @extend_schema(responses={200: RoomDetailSerializer, **_refusals(404)})
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        body = RoomDetailSerializer(room, context={"user": request.user}).data
        return Response(body)

    @extend_schema(
        request=RoomPatch,
        responses={200: RoomDetailSerializer, **_refusals(400, 403, 404, 415)},
    )
    def patch(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        data = _valid(RoomPatch, request.data)
        room = services.room_update(room=room, actor=request.user, **data)
        body = RoomDetailSerializer(room, context={"user": request.user}).data
        return Response(body)


class MemberIn(serializers.Serializer[Any]):
    username = StrictCharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.values)


class MembersView(APIView):
    @extend_schema(
        request=MemberIn,
        responses={201: MemberSerializer, **_refusals(400, 403, 404, 409, 415)},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        data = _valid(MemberIn, request.data)
        membership = services.member_add(room=room, actor=request.user, **data)
        body = MemberSerializer(membership).data
        return Response(body, status=status.HTTP_201_CREATED)


class MemberView(APIView):
    @extend_schema(responses={204: None, **_refusals(403, 404, 409)})
    def delete(
        self, request: AuthenticatedRequest, slug: str, username: str
    ) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        services.member_remove(room=room, actor=request.user, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RequestIn(serializers.Serializer[Any]):
    text = MessageText()


class RoomRequestsView(APIView):
    @extend_schema(
        request=RequestIn,
        responses={202: RequestSerializer, **_refusals(400, 403, 404, 415)},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        data = _valid(RequestIn, request.data)
        agent_request = services.request_start(
            room=room, user=request.user, text=data["text"]
        )
        return Response(
            RequestSerializer(agent_request).data, status=status.HTTP_202_ACCEPTED
        )


class RequestView(APIView):
    @extend_schema(responses={200: RequestDetailSerializer, **_refusals(404)})
    def get(self, request: AuthenticatedRequest, request_id: str) -> Response:
        agent_request = services.request_get(request_id=request_id, user=request.user)
        return Response(RequestDetailSerializer(agent_request).data)


class RequestCancelView(APIView):
    @extend_schema(
        request=None,
        responses={200: RequestSerializer, **_refusals(403, 404, 409)},
    )
    def post(self, request: AuthenticatedRequest, request_id: str) -> Response:
        agent_request = services.request_cancel(
            request_id=request_id, user=request.user
        )
        return Response(RequestSerializer(agent_request).data)


class DecideAllIn(serializers.Serializer[Any]):
    decision = serializers.ChoiceField(choices=["approve", "deny"])
    reason = StrictCharField(
        required=False, allow_blank=True, max_length=2000, validators=[NO_NUL]
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}
                )
        return super().to_internal_value(data)


# As DecideAllIn checks it: any other field is refused (the schema says so).
DECIDE_ALL_BODY = {
    "application/json": {
        "type": "object",
        "additionalProperties": False,
        "required": ["decision"],
        "properties": {
            "decision": {"type": "string", "enum": ["approve", "deny"]},
            "reason": {"type": "string", "maxLength": 2000, "pattern": "^[^\\x00]*$"},
        },
    }
}


class RequiredBodySchema(AutoSchema):
    """A raw body schema is exact; drf-spectacular marks no raw body required."""

    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        # drf-spectacular leaves this method unannotated.
        body: dict[str, Any] | None = super()._get_request_body(  # type: ignore[no-untyped-call]
            direction
        )
        if body is not None and self.method == "POST":
            body["required"] = True
        return body


class RequestDecideView(APIView):
    schema = RequiredBodySchema()

    @extend_schema(
        request=DECIDE_ALL_BODY,
        responses={
            200: inline_serializer(
                "DecidedAll",
                {
                    "actions": ActionSerializer(many=True),
                    "refused": RefusedSerializer(many=True),
                },
            ),
            **_refusals(400, 403, 404, 409, 415),
        },
    )
    def post(self, request: AuthenticatedRequest, request_id: str) -> Response:
        data = _valid(DecideAllIn, request.data)
        done = services.request_decide_all(
            request_id=request_id,
            user=request.user,
            decision=data["decision"],
            reason=data.get("reason", ""),
            via=Action.Via.API,
        )
        return Response({"actions": done.actions, "refused": done.refused})


class ActionsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=Action.Status.values),
            OpenApiParameter(
                "room",
                {"type": "string", "pattern": SLUG},
                description="A room's slug.",
            ),
            OpenApiParameter(
                "limit", _integer(1, 500), description="At most this many (1-500)."
            ),
            OpenApiParameter(
                "awaiting",
                str,
                enum=["me"],
                description="Only pending actions the caller may still vote on, "
                "soonest to expire first.",
            ),
        ],
        responses={200: ActionSerializer(many=True), **_refusals(400)},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        awaiting = request.query_params.get("awaiting")
        if awaiting not in (None, "me"):
            raise Invalid("awaiting must be me.")
        actions = services.action_list(
            user=request.user,
            status=request.query_params.get("status"),
            room_slug=_slug_param(request, "room"),
            limit=_int_param(request, "limit", 200, 1, 500),
            awaiting_me=awaiting == "me",
        )
        return Response(ActionSerializer(actions, many=True).data)


class ActionView(APIView):
    @extend_schema(responses={200: ActionSerializer, **_refusals(404)})
    def get(self, request: AuthenticatedRequest, action_id: str) -> Response:
        action = services.action_get(action_id=action_id, user=request.user)
        return Response(ActionSerializer(action).data)


class GrantIn(serializers.Serializer[Any]):
    seconds = serializers.IntegerField(min_value=1, max_value=86400)


class ApproveIn(serializers.Serializer[Any]):
    arguments = serializers.DictField(required=False)
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000)
    grant = GrantIn(
        required=False,
        help_text="Also allow this tool on this target for `seconds` (an expiring "
        "auto rule); not with arguments.",
    )

    def validate_arguments(self, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class DenyIn(serializers.Serializer[Any]):
    reason = StrictCharField(
        required=False, allow_blank=True, max_length=2000, validators=[NO_NUL]
    )


class ActionApproveView(APIView):
    @extend_schema(
        request=ApproveIn,
        responses={
            # Not a component of its own: clients generated before grants keep
            # reading the answer as an Action (`grant` is an additional property).
            200: OpenApiResponse(
                ActionSerializer,
                description="The action as the vote left it; with `grant`, also "
                "`grant`: the rule the grant made (as GET .../policies lists it).",
            ),
            **_refusals(400, 403, 404, 409, 415),
        },
    )
    def post(self, request: AuthenticatedRequest, action_id: str) -> Response:
        data = _valid(ApproveIn, request.data)
        # The grant as sent: the service checks it whole (and its refusals are the
        # contract's, the same over the socket).
        grant = request.data.get("grant") if "grant" in data else None
        action, rule = services.action_grant(
            action_id=action_id,
            user=request.user,
            decision="approve",
            reason=data.get("reason", ""),
            arguments=data.get("arguments"),
            via=Action.Via.API,
            grant=grant,
        )
        answer = dict(ActionSerializer(action).data)
        if rule is not None:
            answer["grant"] = PolicyRuleSerializer(rule).data
        return Response(answer)


class ActionDenyView(APIView):
    @extend_schema(
        request=DenyIn,
        responses={200: ActionSerializer, **_refusals(400, 403, 404, 409, 415)},
    )
    def post(self, request: AuthenticatedRequest, action_id: str) -> Response:
        data = _valid(DenyIn, request.data)
        action = services.action_decide(
            action_id=action_id,
            user=request.user,
            decision="deny",
            reason=data.get("reason", ""),
            via=Action.Via.API,
            # A grant on a deny is refused (400), not ignored.
            grant=request.data.get("grant") if isinstance(request.data, dict) else None,
        )
        return Response(ActionSerializer(action).data)


class RoomEventsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "after", _integer(0, MAX_SEQ), description="Events after this seq."
            ),
            OpenApiParameter(
                "limit", _integer(1, 1000), description="At most this many (1-1000)."
            ),
        ],
        responses={
            200: inline_serializer(
                "EventPage",
                {
                    "events": serializers.ListField(child=serializers.DictField()),
                    "last_seq": serializers.IntegerField(),
                    "has_more": serializers.BooleanField(),
                },
            ),
            **_refusals(400, 404),
        },
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = services.room_get_for_member(slug=slug, user=request.user)
        after = _int_param(request, "after", 0, 0, MAX_SEQ)
        limit = _int_param(request, "limit", 500, 1, 1000)
        events = events_after(room.pk, after, limit=limit)
        last_seq = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
        return Response(
            {
                "events": [event_frame(event) for event in events],
                "last_seq": last_seq,
                "has_more": bool(events) and events[-1].seq < last_seq,
            }
        )


def _int_param(
    request: HttpRequest, name: str, default: int, low: int, high: int
) -> int:
    if name not in request.query_params:
        return default
    raw = request.query_params[name]
    # Digits only: Python's int() would also take " 5", "1_0" and other scripts' digits.
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise Invalid(f"{name} must be an integer.")
    value = int(raw)
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}.")
    return value


def _slug_param(request: HttpRequest, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and not slug_re.fullmatch(raw):
        raise Invalid(f"{name} must be a room's slug.")
    return raw
