"""The tool catalogue: every tool offered to the model, as data.

A tool belongs to a pack (Linear today); the pack's executor, which talks to the
outside service, lives in the worker package (`worker.packs`) and is looked up there
by the pack's name. The domain needs only what is here: the name, the schema the
arguments must fit, whether the tool asks for approval by default, and how its
preview is made, so that approval rules and an approver's edit are checked without
the worker.
"""

import json
from collections.abc import Callable
from typing import Any

from .linear import LINEAR_TOOLS
from .spec import (
    Args,
    CheckedCall,
    InvalidCall,
    Preview,
    Scope,
    ToolSpec,
    unstorable,
)

__all__ = [
    "TOOLS",
    "Args",
    "CheckedCall",
    "InvalidCall",
    "Preview",
    "Scope",
    "ToolSpec",
    "check_call",
    "openai_tools",
    "preview_call",
    "register_previewer",
    "validate",
]

# Every tool offered to the model, by name, in the order offered.
TOOLS: dict[str, ToolSpec] = {spec.name: spec for spec in LINEAR_TOOLS}


# How each pack reads a call's target for the approvers, registered by the worker
# package when its app loads (the domain never imports it): a preview of an edited
# call is taken where the edit is made, in the web process.
Previewer = Callable[[ToolSpec, Args, Scope], "dict[str, Any] | None"]
PREVIEWERS: dict[str, Previewer] = {}


def register_previewer(pack: str, previewer: Previewer) -> None:
    PREVIEWERS[pack] = previewer


def preview_call(
    spec: ToolSpec, arguments: Args, scope: Scope
) -> dict[str, Any] | None:
    """What the call touches, read now, within the room's `scope`; None when its
    pack shows nothing more."""
    previewer = PREVIEWERS.get(spec.pack)
    return previewer(spec, arguments, scope) if previewer else None


def openai_tools() -> list[dict[str, Any]]:
    return [spec.openai_spec() for spec in TOOLS.values()]


def validate(name: str, arguments: object) -> ToolSpec:
    """Return the tool if `arguments` fit its schema, else raise InvalidCall."""
    spec = TOOLS.get(name)
    if spec is None:
        raise InvalidCall(f"Unknown tool {name!r}. Available: {', '.join(TOOLS)}.")
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


def check_call(*, call_id: str, name: str, arguments: str) -> CheckedCall:
    """Parse and validate a call; an invalid one answers the model, never an action."""
    checked = CheckedCall(id=call_id, name=name, arguments=arguments)
    try:
        parsed = json.loads(arguments or "{}")
        checked.spec = validate(name, parsed)
        checked.parsed = parsed
    except (json.JSONDecodeError, RecursionError):
        # RecursionError: nested deeper than the parser goes; no tool takes that.
        checked.error = f"The arguments of {name} are not valid JSON."
    except InvalidCall as exc:
        checked.error = str(exc)
    return checked
