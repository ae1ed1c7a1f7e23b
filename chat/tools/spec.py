"""What a tool is, as data: its name, pack, schema, default approval and preview."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from jsonschema import Draft202012Validator

from chat.text import storable

Args = dict[str, Any]
# Between an MCP server's name and its tool's in the name offered to the model.
MCP_SEPARATOR = "__"


class Preview:
    """How approvers are shown what a call touches, beside its arguments."""

    NONE = "none"  # the arguments say it all (reads)
    CREATES = "creates"  # a new record: its title and where it goes
    TARGET = "target"  # an existing record, read from the service at proposal time


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    pack: str
    preview: str = Preview.NONE
    # The argument naming the record a call acts on (an issue's identifier or
    # number): a TARGET preview reads it, and a rule's value for it matches every
    # name of that record. None: the tool acts on no one record.
    target: str | None = None
    # Declared by the pack for tools that only read: they need no approval by default.
    approval_free: bool = False
    # Safe to repeat when a crash cut a call off (MCP's `idempotentHint`); packs
    # that read back what an interrupted call did (`recover`) need not say.
    idempotent: bool = False
    # An MCP tool whose description, schema or annotations changed since it was
    # first listed (or last accepted): it asks, whatever rules say.
    pinned_changed: bool = False
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_validator", Draft202012Validator(self.parameters))

    @property
    def scope_pack(self) -> str:
        """The pack as a room's scope names it: each MCP server is a pack of its own,
        `mcp:<server>` (its tools are offered as `<server>__<tool>`)."""
        if self.pack == "mcp":
            return f"mcp:{self.name.partition(MCP_SEPARATOR)[0]}"
        return self.pack

    @property
    def needs_approval(self) -> bool:
        """Whether a call asks for approval under a room without rules.

        The tools in AGENT_APPROVAL_TOOLS ask; the others run at once only when
        their pack declares them approval-free (reads): a tool added later asks,
        and so does one whose listing changed since it was pinned.
        """
        return (
            self.name in settings.AGENT_APPROVAL_TOOLS
            or not self.approval_free
            or self.pinned_changed
        )

    @property
    def target_argument(self) -> str:
        """The target's argument, for the tools that have one (TARGET previews)."""
        assert self.target is not None, f"{self.name} names no target"
        return self.target

    def openai_spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def errors(self, arguments: Args) -> list[str]:
        found = sorted(
            self._validator.iter_errors(arguments), key=lambda e: list(e.path)
        )
        return [_describe(error) for error in found]


@dataclass(frozen=True)
class Scope:
    """What a room lets its agent touch outside: its tool packs (empty: every pack
    configured) and Linear team keys (empty: any)."""

    linear_teams: tuple[str, ...] = ()
    packs: tuple[str, ...] = ()

    @classmethod
    def of(cls, room: Any) -> Scope:
        return cls(
            linear_teams=tuple(room.linear_teams or ()),
            packs=tuple(room.packs or ()),
        )

    def allows_team(self, key: str | None) -> bool:
        if not self.linear_teams:
            return True
        allowed = {t.casefold() for t in self.linear_teams}
        return key is not None and key.casefold() in allowed

    def allows_pack(self, pack: str) -> bool:
        return not self.packs or pack in self.packs

    def allows(self, spec: ToolSpec) -> bool:
        """Whether the room's agent may be offered (and run) the tool."""
        return self.allows_pack(spec.scope_pack)


@dataclass(frozen=True)
class Reading:
    """What a proposed or edited call touches, read from its service: the preview
    approvers see, and every name of its target that the pack knows (a Linear
    issue's identifier and id), which the room's rules match."""

    preview: dict[str, Any] | None = None
    names: tuple[str, ...] = ()


def name_of(value: object) -> str:
    """A target's name as rules compare it: trimmed, without regard to case."""
    return str(value).strip().casefold()


class InvalidCall(Exception):
    """A tool call the model (or an approver's edit) got wrong; the text says how."""


@dataclass
class CheckedCall:
    """A tool call of the model's answer, checked: a tool and arguments, or an error."""

    id: str
    name: str
    arguments: str  # as the model sent them, for the model's context
    spec: ToolSpec | None = None
    parsed: Args | None = None
    error: str = ""


def object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The parameters of a tool: exactly these properties, the `required` ones."""
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def unstorable(value: object) -> bool:
    if isinstance(value, str):
        return not storable(value)
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    return False


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.path)
    return f"{where}: {error.message}" if where else error.message
