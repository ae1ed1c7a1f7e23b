"""What the tool packs write: MCP servers' listings, and notices to the room."""

import logging
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.errors import Conflict, Forbidden, NotFound
from chat.models import McpListing, McpPin, Request, User
from chat.realtime import event_emit
from chat.tools import forget_listings
from chat.tools.mcp import digest, pinned_part

logger = logging.getLogger(__name__)


def mcp_listing_store(*, server: str, tools: list[dict[str, Any]]) -> None:
    """Keep what `server` listed, for every process's catalogue, and pin each
    tool's listing the first time it is seen: a later change shows against the pin
    (the tool then asks until someone accepts it, `mcp_pin_accept`)."""
    now = timezone.now()
    with transaction.atomic():
        McpListing.objects.update_or_create(
            server=server, defaults={"tools": tools, "listed_at": now}
        )
        for tool in tools:
            _pin(server=server, tool=tool, now=now)
    forget_listings()


def _pin(*, server: str, tool: dict[str, Any], now: Any) -> None:
    part = pinned_part(tool)
    listed = digest(part)
    pin, created = McpPin.objects.get_or_create(
        server=server,
        tool=str(tool.get("name", ""))[:128],
        defaults={
            "pinned": part,
            "pinned_digest": listed,
            "listed": part,
            "listed_digest": listed,
            "first_listed": now,
        },
    )
    if created or pin.listed_digest == listed:
        return
    if listed != pin.pinned_digest:
        logger.warning("MCP tool %s changed since it was pinned: it asks", pin)
    pin.listed, pin.listed_digest, pin.changed_at = part, listed, now
    pin.save(update_fields=["listed", "listed_digest", "changed_at"])


def mcp_pin_accept(*, pin_id: int, user: User, listed_digest: str) -> McpPin:
    """Accept a changed MCP tool's new listing as its pin: it follows the rules
    and its annotations again. Only holders of `chat.decide_action`; `listed_digest`
    is the listing they were shown, so a listing that changed again meanwhile is
    not accepted unseen (409)."""
    if not user.is_active or not user.has_perm("chat.decide_action"):
        raise Forbidden("Accepting a tool's listing needs chat.decide_action.")
    with transaction.atomic():
        pin = McpPin.objects.select_for_update().filter(pk=pin_id).first()
        if pin is None:
            raise NotFound("No such MCP tool pin.")
        if pin.listed_digest != listed_digest:
            raise Conflict("The tool's listing changed again: look at it again.")
        pin.pinned, pin.pinned_digest = pin.listed, pin.listed_digest
        pin.accepted_by, pin.accepted_at = user, timezone.now()
        pin.save(
            update_fields=["pinned", "pinned_digest", "accepted_by", "accepted_at"]
        )
    forget_listings()
    return pin


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
