"""The REST API of a room's webhooks (approvers only)."""

from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.api.fields import NO_NUL
from chat.errors import Invalid
from chat.http import AuthenticatedRequest
from chat.models import Webhook
from chat.services.webhooks import ROTATION_OVERLAP_MAX

from .views import _refusals

WEBHOOK_IN = inline_serializer(
    "WebhookIn",
    {
        "url": serializers.URLField(max_length=2000),
        "secret": serializers.CharField(
            required=False, min_length=16, max_length=200, validators=[NO_NUL]
        ),
        "events": serializers.ListField(
            child=serializers.ChoiceField(list(Webhook.EVENTS)),
            required=False,
            allow_empty=False,
            min_length=1,
        ),
        "format": serializers.ChoiceField(Webhook.Format.values, required=False),
    },
)

ROTATE_IN = inline_serializer(
    "WebhookRotateIn",
    {
        "secret": serializers.CharField(
            required=False, min_length=16, max_length=200, validators=[NO_NUL]
        ),
        "overlap": serializers.IntegerField(
            required=False, min_value=0, max_value=ROTATION_OVERLAP_MAX
        ),
    },
)


class WebhookSerializer(serializers.ModelSerializer[Webhook]):
    id = serializers.CharField(read_only=True)
    events = serializers.ListField(child=serializers.CharField(), read_only=True)
    previous_secret_until = serializers.SerializerMethodField(
        help_text="While a secret rotates: until when the previous one also signs."
    )

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "format", "created", "previous_secret_until"]
        read_only_fields = fields

    def get_previous_secret_until(self, hook: Webhook) -> datetime | None:
        until = hook.previous_secret_until
        return until if until is not None and until > timezone.now() else None


class CreatedWebhookSerializer(WebhookSerializer):
    """The answer to a creation, the only one that shows the secret."""

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhooksView(APIView):
    @extend_schema(responses={200: WebhookSerializer(many=True), **_refusals(403, 404)})
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        hooks = services.webhook_list(room_slug=slug, user=request.user)
        return Response(WebhookSerializer(hooks, many=True).data)

    @extend_schema(
        request=WEBHOOK_IN,
        responses={201: CreatedWebhookSerializer, **_refusals(400, 403, 404, 415)},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        data: Any = request.data if isinstance(request.data, dict) else {}
        hook = services.webhook_create(
            room_slug=slug,
            user=request.user,
            url=data.get("url"),
            secret=data.get("secret"),
            events=data.get("events"),
            format=data.get("format"),
        )
        return Response(
            CreatedWebhookSerializer(hook).data, status=status.HTTP_201_CREATED
        )


class WebhookView(APIView):
    @extend_schema(responses={204: None, **_refusals(403, 404)})
    def delete(
        self, request: AuthenticatedRequest, slug: str, webhook_id: str
    ) -> Response:
        services.webhook_delete(
            room_slug=slug, user=request.user, webhook_id=webhook_id
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateView(APIView):
    @extend_schema(
        request=ROTATE_IN,
        responses={200: CreatedWebhookSerializer, **_refusals(400, 403, 404, 415)},
    )
    def post(
        self, request: AuthenticatedRequest, slug: str, webhook_id: str
    ) -> Response:
        data: Any = request.data
        if not isinstance(data, dict):
            raise Invalid("The body must be a JSON object.")
        hook = services.webhook_rotate(
            room_slug=slug,
            user=request.user,
            webhook_id=webhook_id,
            secret=data.get("secret"),
            overlap=data.get("overlap"),
        )
        return Response(CreatedWebhookSerializer(hook).data)
