"""What the MCP servers listed, read-only: workers write it, people look at it; and
each tool's pin, where a changed listing is compared and accepted."""

import difflib
import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chat import services
from chat.errors import Conflict, Forbidden, NotFound
from chat.models import McpListing, McpPin

from .common import DECIDE_PERM, DeciderMayViewMixin, admin_user, pretty

PARTS = ("description", "inputSchema", "annotations")


@admin.register(McpListing)
class McpListingAdmin(admin.ModelAdmin[McpListing]):
    list_display = ["server", "tool_names", "listed_at"]
    readonly_fields = ["server", "tools", "listed_at"]

    @admin.display(description="tools")
    def tool_names(self, listing: McpListing) -> str:
        return ", ".join(str(tool.get("name")) for tool in listing.tools)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: McpListing | None = None
    ) -> bool:
        return False


def difference(pin: McpPin) -> SafeString:
    """The pinned and the listed description, schema and annotations, line by line:
    removed lines marked `-`, added `+`."""
    rows = []
    for part in PARTS:
        old, new = pin.pinned.get(part), pin.listed.get(part)
        if old == new:
            continue
        lines = difflib.unified_diff(
            _lines(old), _lines(new), "pinned", "listed now", lineterm="", n=3
        )
        rows.append((part, format_html_join("\n", "{}", ((_line(x),) for x in lines))))
    return format_html(
        '<table class="chat-pin-diff">{}</table>',
        format_html_join(
            "", '<tr><th>{}</th><td><pre class="chat-diff">{}</pre></td></tr>', rows
        ),
    )


def _lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.splitlines() or [""]
    return json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()


def _line(line: str) -> SafeString:
    if line.startswith("+") and not line.startswith("+++"):
        return format_html("<ins>{}</ins>", line)
    if line.startswith("-") and not line.startswith("---"):
        return format_html("<del>{}</del>", line)
    return format_html("{}", line)


@admin.register(McpPin)
class McpPinAdmin(DeciderMayViewMixin, admin.ModelAdmin[McpPin]):
    list_display = ["__str__", "changed_display", "first_listed", "accepted_at"]
    list_filter = ["server"]
    search_fields = ["server", "tool"]
    fields = (
        "server",
        "tool",
        "changed_display",
        "pinned_view",
        "listed_view",
        "first_listed",
        "changed_at",
        "accepted_by",
        "accepted_at",
    )
    readonly_fields = fields

    @admin.display(description="changed", boolean=True)
    def changed_display(self, pin: McpPin) -> bool:
        return pin.changed

    @admin.display(description="pinned")
    def pinned_view(self, pin: McpPin) -> SafeString | str:
        return pretty(pin.pinned)

    @admin.display(description="listed now")
    def listed_view(self, pin: McpPin) -> SafeString | str:
        return pretty(pin.listed)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: McpPin | None = None
    ) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        accept = path(
            "<path:object_id>/accept/",
            self.admin_site.admin_view(self._accept_view),
            name="chat_mcppin_accept",
        )
        # Before the defaults: their `<path:object_id>/` would swallow it.
        return [accept, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        pin = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if pin is not None and pin.changed:
            context["pin_changed"] = True
            context["pin_difference"] = difference(pin)
            context["listed_digest"] = pin.listed_digest
            context["accept_allowed"] = request.user.has_perm(DECIDE_PERM)
            context["accept_url"] = reverse(
                "admin:chat_mcppin_accept", args=[quote(pin.pk)]
            )
        return super().change_view(request, object_id, form_url, context)

    def _accept_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            pin = services.mcp_pin_accept(
                pin_id=int(unquote(object_id)),
                user=admin_user(request),
                listed_digest=request.POST.get("listed_digest", ""),
            )
        except ValueError:
            raise Http404("No such MCP tool pin.") from None
        except NotFound as exc:
            raise Http404(exc.detail) from None
        except Forbidden:
            raise PermissionDenied from None
        except Conflict as exc:
            messages.warning(request, exc.detail)
            return redirect("admin:chat_mcppin_change", quote(object_id))
        self.log_change(request, pin, f"Accepted the new listing of {pin}.")
        messages.success(request, f"{pin}: the new listing is accepted.")
        return redirect("admin:chat_mcppin_change", quote(pin.pk))
