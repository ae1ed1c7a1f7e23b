"""Schedules in the admin: what each one posts and when, and an action that
disables the selected ones (`services.schedules_disable`)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat import services
from chat.models import Schedule


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin[Schedule]):
    list_display = [
        "__str__",
        "room",
        "cron",
        "timezone",
        "enabled",
        "next_run",
        "last_run",
        "skipped",
    ]
    list_filter = ["enabled"]
    search_fields = ["name", "room__slug", "cron"]
    # Changed over the API (or the room's page), whose checks and next-slot
    # computation this page would bypass.
    readonly_fields = [
        "id",
        "room",
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
    actions = ["disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Disable the selected schedules")
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = services.schedules_disable(
            schedule_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(request, f"{count} disabled.", messages.SUCCESS)
