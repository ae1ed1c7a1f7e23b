"""What the MCP servers listed, read-only: workers write it, people look at it."""

from django.contrib import admin
from django.http import HttpRequest

from chat.models import McpListing


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
