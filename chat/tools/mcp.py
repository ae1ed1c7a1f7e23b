"""MCP servers' tools as catalogue entries, from the listings workers store.

Each tool of the server `name` is offered as `<name>__<tool>`. Annotations are the
server's claims: they set the defaults only for a server configured with
`"trust_annotations": true`, where `readOnlyHint: true` (and not `destructiveHint:
true`) runs without approval unless a rule says otherwise; every other tool asks.
A tool whose listing changed since it was pinned asks whatever rules say
(`pinned_changed`). `idempotentHint: true` lets a call cut off by a crash be repeated.
"""

import hashlib
import json
import logging
import re
from collections.abc import Collection
from typing import Any

from django.conf import settings
from jsonschema import Draft202012Validator, SchemaError

from .spec import MCP_SEPARATOR, ToolSpec

logger = logging.getLogger(__name__)

PACK = "mcp"
SEPARATOR = MCP_SEPARATOR
# OpenAI's rule for a function's name.
OFFERABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_DESCRIPTION = 1000


def configured() -> dict[str, dict[str, Any]]:
    """The servers of `AGENT_MCP_SERVERS`, by name."""
    return {server["name"]: server for server in settings.AGENT_MCP_SERVERS}


def offered_name(server: str, tool: str) -> str:
    return f"{server}{SEPARATOR}{tool}"


def split_name(name: str) -> tuple[str, str]:
    """(server, the tool's own name) of an offered `<server>__<tool>`."""
    server, _, tool = name.partition(SEPARATOR)
    return server, tool


def trusted(server: str) -> bool:
    """Whether the server's annotations are believed (its entry says so)."""
    return configured().get(server, {}).get("trust_annotations") is True


def pinned_part(tool: dict[str, Any]) -> dict[str, Any]:
    """What a pin holds of a listed tool: what it says it does and takes."""
    return {
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
        "annotations": tool.get("annotations"),
    }


def digest(part: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a pinned part."""
    canonical = json.dumps(part, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def spec_of(
    server: str, tool: dict[str, Any], *, changed: bool = False
) -> ToolSpec | None:
    """The catalogue entry of one listed tool; None when it cannot be offered.
    `changed`: its listing differs from its pin."""
    name = offered_name(server, str(tool.get("name", "")))
    schema = tool.get("inputSchema") or {"type": "object"}
    if not OFFERABLE.fullmatch(name):
        logger.warning("MCP tool %r of %s: the name cannot be offered", name, server)
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        logger.warning("MCP tool %s: its input schema is not JSON Schema", name)
        return None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        logger.warning("MCP tool %s: its input schema is not an object's", name)
        return None
    hints = tool.get("annotations") or {}
    if not isinstance(hints, dict):
        hints = {}
    believed = trusted(server)
    description = str(tool.get("description") or hints.get("title") or name)
    return ToolSpec(
        name=name,
        pack=PACK,
        description=description[:MAX_DESCRIPTION],
        parameters=schema,
        approval_free=believed
        and hints.get("readOnlyHint") is True
        and hints.get("destructiveHint") is not True,
        idempotent=hints.get("idempotentHint") is True,
        pinned_changed=changed,
    )


def specs(
    listings: dict[str, list[dict[str, Any]]],
    changed: Collection[tuple[str, str]] = (),
) -> list[ToolSpec]:
    """Entries for the listed tools of each configured server; `changed` holds the
    (server, tool) pairs whose listing differs from their pin."""
    found = []
    for server in configured():
        for tool in listings.get(server, []):
            is_changed = (server, str(tool.get("name", ""))) in changed
            spec = spec_of(server, tool, changed=is_changed)
            if spec is not None:
                found.append(spec)
    return found
