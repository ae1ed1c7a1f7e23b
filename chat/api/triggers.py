"""The REST API of a room's triggers (approvers only; contract: "Triggers")."""

from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.errors import Invalid
from chat.http import AuthenticatedRequest
from chat.models import Trigger
from chat.services.triggers import EVENTS_MAX, FILTER_KEYS_MAX, NAME_MAX

from .views import _refusals

# A name on one line, possibly empty (chat.text.single_line), as a schema pattern.
ONE_LINE_OR_EMPTY = RegexValidator(r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$")


def _event() -> serializers.RegexField:
    return serializers.RegexField(r"^[A-Za-z0-9_.-]{1,100}$", max_length=100)


def _scalar() -> serializers.JSONField:
    return serializers.JSONField(
        help_text="A JSON scalar: string, number, boolean or null."
    )


def _trigger_in(name: str, *, create: bool) -> Any:
    fields: dict[str, serializers.Field[Any, Any, Any, Any]] = {
        "prompt": serializers.CharField(
            required=create,
            min_length=1,
            max_length=settings.AGENT_MAX_INPUT_CHARS,
            trim_whitespace=False,
            help_text="A template: {{ path }} of the body, {{ $event }}, "
            "{{ $delivery }}, {{ $source }}, {{ $trigger }}.",
        ),
        "events": serializers.ListField(
            child=_event(), required=False, max_length=EVENTS_MAX
        ),
        "filter": serializers.DictField(
            child=_scalar(),
            required=False,
            help_text=f"At most {FILTER_KEYS_MAX} paths (keys of [A-Za-z0-9_-] or * "
            "joined by '.') to the JSON scalar each must equal.",
        ),
        "secret": serializers.CharField(
            required=False,
            allow_null=True,
            min_length=16,
            max_length=200,
            help_text="linear / github: 16 to 200 characters; generic: whsec_ + "
            "base64 of 24 to 64 bytes. Absent (create) or null: generated.",
        ),
        "name": serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=NAME_MAX,
            validators=[ONE_LINE_OR_EMPTY],
        ),
        "enabled": serializers.BooleanField(required=False),
    }
    if create:
        fields = {
            "source": serializers.ChoiceField(Trigger.Source.choices),
            **fields,
        }
    return inline_serializer(name, fields)


TRIGGER_IN = _trigger_in("TriggerIn", create=True)
TRIGGER_PATCH = _trigger_in("TriggerPatch", create=False)


class TriggerSerializer(serializers.ModelSerializer[Trigger]):
    id = serializers.CharField(read_only=True)
    url = serializers.SerializerMethodField()
    events = serializers.ListField(child=serializers.CharField(), read_only=True)
    filter = serializers.DictField(child=_scalar(), read_only=True)
    author = serializers.SerializerMethodField(
        help_text="The room's bot, who posts the requests."
    )
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Trigger
        fields = [
            "id",
            "source",
            "name",
            "url",
            "events",
            "filter",
            "prompt",
            "enabled",
            "author",
            "created_by",
            "created",
            "last_delivery",
            "last_fired",
            "fired",
        ]
        read_only_fields = fields

    def get_url(self, trigger: Trigger) -> str:
        return f"{settings.SITE_URL}/hooks/{trigger.pk}"

    def get_author(self, trigger: Trigger) -> str:
        return services.room_bot(trigger.room).username


class TriggerWithSecretSerializer(TriggerSerializer):
    """The answer that set a secret: the only one that shows it."""

    class Meta(TriggerSerializer.Meta):
        fields = [*TriggerSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class TriggerPatchedSerializer(TriggerSerializer):
    """The PATCH answer's schema: `secret` is there only when the call set one."""

    secret = serializers.CharField(
        required=False, help_text="Only when this call set the secret."
    )

    class Meta(TriggerSerializer.Meta):
        fields = [*TriggerSerializer.Meta.fields, "secret"]


def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object.")
    return data


class TriggersView(APIView):
    @extend_schema(responses={200: TriggerSerializer(many=True), **_refusals(403, 404)})
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        triggers = services.trigger_list(room_slug=slug, user=request.user)
        return Response(TriggerSerializer(triggers, many=True).data)

    @extend_schema(
        request=TRIGGER_IN,
        responses={
            201: TriggerWithSecretSerializer,
            **_refusals(400, 403, 404, 409, 415),
        },
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        trigger = services.trigger_create(
            room_slug=slug, user=request.user, data=_object(request.data)
        )
        return Response(
            TriggerWithSecretSerializer(trigger).data, status=status.HTTP_201_CREATED
        )


class TriggerView(APIView):
    @extend_schema(responses={200: TriggerSerializer, **_refusals(403, 404)})
    def get(
        self, request: AuthenticatedRequest, slug: str, trigger_id: str
    ) -> Response:
        trigger = services.trigger_get(
            room_slug=slug, user=request.user, trigger_id=trigger_id
        )
        return Response(TriggerSerializer(trigger).data)

    @extend_schema(
        request=TRIGGER_PATCH,
        responses={
            200: TriggerPatchedSerializer,
            **_refusals(400, 403, 404, 415),
        },
        description="The answer has `secret` only when the call set it.",
    )
    def patch(
        self, request: AuthenticatedRequest, slug: str, trigger_id: str
    ) -> Response:
        trigger, secret_set = services.trigger_update(
            room_slug=slug,
            user=request.user,
            trigger_id=trigger_id,
            data=_object(request.data),
        )
        serializer = TriggerWithSecretSerializer if secret_set else TriggerSerializer
        return Response(serializer(trigger).data)

    @extend_schema(responses={204: None, **_refusals(403, 404)})
    def delete(
        self, request: AuthenticatedRequest, slug: str, trigger_id: str
    ) -> Response:
        services.trigger_delete(
            room_slug=slug, user=request.user, trigger_id=trigger_id
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
