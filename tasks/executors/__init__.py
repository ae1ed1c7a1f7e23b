"""The executors behind the tool catalogue (`chat.tools`), one per pack.

A pack's executor talks to its outside service. It runs a call, may read back whether
an interrupted earlier attempt already took effect, and may read a call's target
for the approvers' preview. Every method raises `TransientError` (worth retrying)
or `PermanentError` (not); their texts are safe to show to the room.
"""

from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

from chat.tools import Args, Preview, Reading, Scope, ToolSpec, catalogue
from chat.tools.mcp import split_name

from ..errors import ServiceError
from ..mcp_client import hub
from .github import GitHubExecutor
from .linear import LinearExecutor
from .mcp import McpExecutor

# How long a turn waits for an MCP server that is still connecting.
CONNECT_WAIT = 3.0


class Executor(Protocol):
    def run(
        self,
        spec: ToolSpec,
        arguments: Args,
        action_id: UUID,
        seen: dict[str, Any] | None = None,
        sending: Callable[[bool], None] | None = None,
    ) -> dict[str, Any]:
        """Make the call; must be safe to repeat after `recover` said it did not run.

        `seen` is the preview the approvers saw: a tool that changes a record
        refuses when the record changed since (on a retry too, after `recover`
        found the earlier attempt did not take effect).

        `sending(True)` is called just before a write without an idempotency key
        leaves (it raises, and nothing is sent, when the attempt lost its claim);
        `sending(False)` once the service answered that write in a way that shows
        it can no longer land (applied, or refused).
        """
        ...

    def window(self, spec: ToolSpec) -> float:
        """How long after a write of `spec` left it may still land (the client's
        bound on reaching the service plus the longest the service may hold it):
        a retry waits that long before it reads back. 0: nothing to wait for."""
        ...

    def recover(
        self, spec: ToolSpec, arguments: Args, action_id: UUID
    ) -> dict[str, Any] | None:
        """After an interrupted attempt: its result if it took effect, else None."""
        ...

    def preview(self, spec: ToolSpec, arguments: Args) -> Reading:
        """What the call touches, read now, for the people who approve it, and the
        names its target goes by, for the room's rules."""
        ...


EXECUTORS: dict[str, type[Executor]] = {
    "linear": LinearExecutor,
    "github": GitHubExecutor,
    "mcp": McpExecutor,
}


def executor_for(spec: ToolSpec, scope: Scope) -> Executor:
    """The pack's executor, held to what the room lets its agent touch."""
    return EXECUTORS[spec.pack](scope)  # type: ignore[call-arg]


def preview_for_domain(spec: ToolSpec, arguments: Args, scope: Scope) -> Reading:
    """A reading as approvers and rules see it; a service that fails says so in the
    preview (the target is then known by its argument only)."""
    try:
        return executor_for(spec, scope).preview(spec, arguments)
    except ServiceError as exc:
        if spec.preview == Preview.NONE:
            return Reading()
        return Reading(preview={"unavailable": str(exc)})


def turn_tools(scope: Scope) -> tuple[list[ToolSpec], dict[str, str]]:
    """The tools to offer a model call now, within the room's `scope`, and why any
    were left out (by MCP server): a server that cannot be reached leaves its tools
    out, never the turn."""
    offered = list(catalogue(scope).values())
    found = hub()
    if found is None:
        return offered, {}
    left_out = {
        server: f"The MCP server {server} cannot be reached ({found.error(server)}); "
        "its tools are left out of this turn."
        for server in found.servers
        # A server the room does not use is neither waited for nor reported.
        if scope.allows_pack(f"mcp:{server}")
        and found.tools(server, wait=CONNECT_WAIT) is None
    }
    offered = [
        s for s in offered if s.pack != "mcp" or split_name(s.name)[0] not in left_out
    ]
    return offered, left_out
