"""MCP servers' tools as catalogue entries, from the listings workers store.

Each tool of the server `name` is offered as `<name>__<tool>`. Its MCP annotations
set the defaults: `readOnlyHint: true` runs without approval (unless a rule says
otherwise), every other tool asks; `idempotentHint: true` lets a call cut off by a
crash be repeated.
"""

import logging
import re
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


def spec_of(server: str, tool: dict[str, Any]) -> ToolSpec | None:
    """The catalogue entry of one listed tool; None when it cannot be offered."""
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
    description = str(tool.get("description") or hints.get("title") or name)
    return ToolSpec(
        name=name,
        pack=PACK,
        description=description[:MAX_DESCRIPTION],
        parameters=schema,
        approval_free=hints.get("readOnlyHint") is True,
        idempotent=hints.get("idempotentHint") is True,
    )


def specs(listings: dict[str, list[dict[str, Any]]]) -> list[ToolSpec]:
    """Entries for the listed tools of each configured server."""
    found = []
    for server in configured():
        for tool in listings.get(server, []):
            spec = spec_of(server, tool)
            if spec is not None:
                found.append(spec)
    return found
