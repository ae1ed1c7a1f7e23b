"""Triggers in the admin (contract: "Pages and admin"): listed with their counters,
an action to disable the selected ones. The secret is never shown here: it is
shown once, by the API answer that sets it."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat import services
from chat.models import Trigger


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin[Trigger]):
    list_display = ["room", "source", "name", "enabled", "last_fired", "fired"]
    list_filter = ["source", "enabled"]
    search_fields = ["name", "room__slug"]
    # `secret` is not editable, so no form shows it. The prompt, events and filter
    # are checked by the API (a template that does not parse is a 400 there).
    readonly_fields = [
        "id",
        "room",
        "source",
        "prompt",
        "events",
        "filter",
        "created_by",
        "created",
        "last_delivery",
        "last_fired",
        "fired",
    ]
    actions = ["disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Made over the API, which generates and shows the secret once.
        return False

    @admin.action(description="Disable the selected triggers")
    def disable(self, request: HttpRequest, queryset: QuerySet[Trigger]) -> None:
        count = services.triggers_disable(
            trigger_ids=[str(pk) for pk in queryset.values_list("pk", flat=True)]
        )
        self.message_user(request, f"{count} disabled.", messages.SUCCESS)
