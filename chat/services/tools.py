"""What the tool packs write: MCP servers' listings, and notices to the room."""

import uuid
from typing import Any

from django.utils import timezone

from chat.models import McpListing, Request
from chat.realtime import event_emit
from chat.tools import forget_listings


def mcp_listing_store(*, server: str, tools: list[dict[str, Any]]) -> None:
    """Keep what `server` listed, for every process's catalogue."""
    McpListing.objects.update_or_create(
        server=server, defaults={"tools": tools, "listed_at": timezone.now()}
    )
    forget_listings()


def request_notice(*, request: Request, text: str) -> None:
    """Tell the room something about its turn that is not the agent's answer (a
    pack left out): a durable `notice` event."""
    event_emit(
        room_id=request.room_id,
        type="notice",
        payload={
            "id": str(uuid.uuid4()),
            "request": str(request.pk),
            "text": text,
            "created": timezone.now(),
        },
    )
