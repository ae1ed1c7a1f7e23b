"""Webhooks and the outbox in the admin: failed deliveries, with their last error,
and an action that sends them again (`services.delivery_resend`)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat import services
from chat.models import Delivery, Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin[Webhook]):
    list_display = ["url", "room", "format", "events", "created"]
    list_filter = ["format"]
    # The secret is shown once, when the webhook is created over the API.
    exclude = ["secret", "previous_secret"]
    readonly_fields = ["created_by", "created", "previous_secret_until"]
    search_fields = ["url", "room__slug"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin[Delivery]):
    list_display = [
        "created",
        "event",
        "channel",
        "room",
        "status",
        "attempts",
        "last_error",
    ]
    list_filter = ["status", "channel", "event"]
    search_fields = ["id", "key", "to"]
    readonly_fields = [
        "id",
        "key",
        "channel",
        "event",
        "room",
        "webhook",
        "to",
        "subject",
        "body",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "lease_until",
        "sent_at",
        "created",
    ]
    # Whose attempt it is, for the sender's writes only: nothing to read or edit.
    exclude = ["lease_token"]
    actions = ["resend"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Send the selected deliveries again")
    def resend(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = services.delivery_resend(
            delivery_ids=[str(pk) for pk in queryset.values_list("pk", flat=True)]
        )
        self.message_user(request, f"{count} queued again.", messages.SUCCESS)
