"""The audit trail in the admin: read-only, filterable, exported as the API does."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString

from chat.models import AuditRecord
from chat.services import audit

from .common import DeciderMayViewMixin, pretty


@admin.register(AuditRecord)
class AuditRecordAdmin(DeciderMayViewMixin, admin.ModelAdmin[AuditRecord]):
    """Append-only: nobody adds, changes or deletes a record here, a superuser
    neither (a record goes only with its room). The export actions write the
    selection exactly as `GET /api/rooms/<slug>/audit` does."""

    list_display = (
        "record_id",
        "at",
        "room",
        "kind",
        "actor",
        "via",
        "tool",
        "decision",
        "reason",
    )
    list_filter = ("room", "kind", "via", "actor", "at")
    list_select_related = ("room",)
    date_hierarchy = "at"
    search_fields = ("actor", "tool", "reason", "=action_ref", "=request_ref")
    ordering = ("room", "seq")
    fields = (
        "record_id",
        "room",
        "at",
        "kind",
        "actor",
        "via",
        "request_ref",
        "action_ref",
        "tool",
        "arguments_pretty",
        "preview_pretty",
        "decision",
        "reason",
        "rule_pretty",
        "data_pretty",
    )
    readonly_fields = fields
    actions = ("export_csv", "export_jsonl")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="id", ordering="seq")
    def record_id(self, record: AuditRecord) -> str:
        return record.public_id

    @admin.display(description="arguments")
    def arguments_pretty(self, record: AuditRecord) -> SafeString | str:
        return pretty(record.arguments)

    @admin.display(description="preview")
    def preview_pretty(self, record: AuditRecord) -> SafeString | str:
        return pretty(record.preview)

    @admin.display(description="rule")
    def rule_pretty(self, record: AuditRecord) -> SafeString | str:
        return pretty(record.rule)

    @admin.display(description="data")
    def data_pretty(self, record: AuditRecord) -> SafeString | str:
        return pretty(record.data)

    @admin.action(description="Export selected records as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[AuditRecord]
    ) -> HttpResponse:
        return _export(queryset, "csv")

    @admin.action(
        description="Export selected records as JSON lines", permissions=["view"]
    )
    def export_jsonl(
        self, request: HttpRequest, queryset: QuerySet[AuditRecord]
    ) -> HttpResponse:
        return _export(queryset, "jsonl")


def _export(queryset: QuerySet[AuditRecord], fmt: str) -> HttpResponse:
    records = queryset.order_by("room_id", "seq").iterator(chunk_size=500)
    response = HttpResponse(
        "".join(audit.audit_export(records, fmt)), content_type=audit.FORMATS[fmt]
    )
    response["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    return response


__all__ = ["AuditRecordAdmin"]
