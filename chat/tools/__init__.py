"""The tool catalogue: every tool offered to the model, as data.

A tool belongs to a pack (Linear, GitHub, MCP servers); the pack's executor, which
talks to the outside service, lives in the worker package (`tasks.executors`) and is
looked up there by the pack's name. The domain needs only what is here: the name,
the schema the arguments must fit, whether the tool asks for approval by default,
and how its preview is made, so that approval rules and an approver's edit are
checked without the worker.
"""

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import github, linear, mcp
from .github import GITHUB_TOOLS
from .linear import LINEAR_TOOLS
from .spec import (
    Args,
    CheckedCall,
    InvalidCall,
    Preview,
    Reading,
    Scope,
    ToolSpec,
    name_of,
    unstorable,
)

__all__ = [
    "Args",
    "CheckedCall",
    "InvalidCall",
    "Preview",
    "Reading",
    "Scope",
    "ToolSpec",
    "catalogue",
    "check_call",
    "forget_listings",
    "name_of",
    "openai_tools",
    "packs_available",
    "preview_call",
    "register_previewer",
    "target_names",
    "validate",
]

# How long a process trusts the MCP listings it read from the database: a worker
# that relists a server writes the new listing and forgets its own copy at once.
# The specs are built once per read (each compiles its schema's validator).
LISTINGS_TTL = 2.0
_listings: tuple[float, list[ToolSpec]] | None = None


def _mcp_specs() -> list[ToolSpec]:
    global _listings
    if not mcp.configured():
        return []
    if _listings is None or _listings[0] < time.monotonic():
        from django.db.models import F

        from chat.models import McpListing, McpPin

        servers = list(mcp.configured())
        rows = McpListing.objects.filter(server__in=servers)
        changed = set(
            McpPin.objects.filter(server__in=servers)
            .exclude(pinned_digest=F("listed_digest"))
            .values_list("server", "tool")
        )
        specs = mcp.specs({row.server: list(row.tools) for row in rows}, changed)
        _listings = (time.monotonic() + LISTINGS_TTL, specs)
    return _listings[1]


def forget_listings() -> None:
    global _listings
    _listings = None


def catalogue(scope: Scope | None = None) -> dict[str, ToolSpec]:
    """Every tool offered to the model, by name, in the order offered: Linear's,
    GitHub's when its pack is on, then each MCP server's as last listed; with a
    room's `scope`, only those of the packs it allows."""
    specs: list[ToolSpec] = list(LINEAR_TOOLS)
    if github.enabled():
        specs += GITHUB_TOOLS
    specs += _mcp_specs()
    return {spec.name: spec for spec in specs if scope is None or scope.allows(spec)}


def packs_available() -> list[str]:
    """The packs a room's scope may name: those configured, each MCP server apart."""
    found = [linear.PACK]
    if github.enabled():
        found.append(github.PACK)
    found += [f"{mcp.PACK}:{server}" for server in mcp.configured()]
    return found


# How each pack reads a call's target for the approvers and the rules, registered
# by the worker package when its app loads (the domain never imports it): an edited
# call is read where the edit is made, in the web process.
Previewer = Callable[[ToolSpec, Args, Scope], Reading]
PREVIEWERS: dict[str, Previewer] = {}


def register_previewer(pack: str, previewer: Previewer) -> None:
    PREVIEWERS[pack] = previewer


def preview_call(spec: ToolSpec, arguments: Args, scope: Scope) -> Reading:
    """What the call touches, read now, within the room's `scope`: the preview
    (None when its pack shows nothing more) and every name of its target, the
    argument's own value first."""
    previewer = PREVIEWERS.get(spec.pack)
    reading = previewer(spec, arguments, scope) if previewer else Reading()
    return Reading(reading.preview, target_names(spec, arguments, reading.names))


def target_names(
    spec: ToolSpec, arguments: Args, known: Iterable[str] = ()
) -> tuple[str, ...]:
    """The names a rule's value for the call's target may match: the argument as
    given and what its pack knows the target by, compared trimmed and caseless."""
    if spec.target is None or spec.target not in arguments:
        return ()
    names = [name_of(arguments[spec.target]), *(name_of(n) for n in known)]
    return tuple(dict.fromkeys(n for n in names if n))


def openai_tools(specs: Iterable[ToolSpec] | None = None) -> list[dict[str, Any]]:
    chosen = catalogue().values() if specs is None else specs
    return [spec.openai_spec() for spec in chosen]


def validate(name: str, arguments: object, scope: Scope | None = None) -> ToolSpec:
    """Return the tool if `arguments` fit its schema, else raise InvalidCall; a tool
    outside the room's `scope` is as unknown as one that does not exist."""
    tools = catalogue(scope)
    spec = tools.get(name)
    if spec is None:
        raise InvalidCall(f"Unknown tool {name!r}. Available: {', '.join(tools)}.")
    if not isinstance(arguments, dict):
        raise InvalidCall(f"Arguments of {name} must be a JSON object.")
    errors = spec.errors(arguments)
    if errors:
        raise InvalidCall(f"Invalid arguments for {name}: {'; '.join(errors[:5])}.")
    if unstorable(arguments):
        # PostgreSQL cannot store NUL or broken Unicode; no tool's field needs them.
        raise InvalidCall(
            f"Invalid arguments for {name}: NUL characters or invalid Unicode."
        )
    return spec


def check_call(
    *, call_id: str, name: str, arguments: str, scope: Scope | None = None
) -> CheckedCall:
    """Parse and validate a call within the room's `scope`; an invalid one answers
    the model, never an action."""
    checked = CheckedCall(id=call_id, name=name, arguments=arguments)
    try:
        parsed = json.loads(arguments or "{}")
        checked.spec = validate(name, parsed, scope)
        checked.parsed = parsed
    except (json.JSONDecodeError, RecursionError):
        # RecursionError: nested deeper than the parser goes; no tool takes that.
        checked.error = f"The arguments of {name} are not valid JSON."
    except InvalidCall as exc:
        checked.error = str(exc)
    return checked
