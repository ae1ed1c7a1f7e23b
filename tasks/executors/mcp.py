"""The MCP pack's executor: a call of `<server>__<tool>` is the server's tools/call.

MCP offers no way to read back what an interrupted call did. So a call is marked
as sent (in Redis) just before it leaves; after a crash, a call that was sent is
repeated only when its tool says `idempotentHint: true`, and otherwise ends failed
with an error saying it may or may not have run. A call still held by its server
when the retry comes cannot be sent twice, then: the retry does not send it.
"""

import json
import uuid
from collections.abc import Callable
from typing import Any

from mcp_types import TextContent

from chat.redis_client import redis_client, redis_key
from chat.tools import Args, Reading, Scope, ToolSpec
from chat.tools.mcp import split_name

from ..errors import PermanentError
from ..mcp_client import hub

# Long enough for any retry of the action to find the mark.
SENT_TTL = 7 * 24 * 3600
RESULT_CHARS = 20_000


def _sent_key(action_id: uuid.UUID) -> str:
    return redis_key("mcp-sent", action_id)


class McpExecutor:
    def __init__(self, scope: Scope | None = None) -> None:
        found = hub()
        if found is None:
            raise PermanentError("No MCP servers are configured (AGENT_MCP_SERVERS).")
        self.hub = found

    def run(
        self,
        spec: ToolSpec,
        arguments: Args,
        action_id: uuid.UUID,
        seen: dict[str, Any] | None = None,
        sending: Callable[[bool], None] | None = None,
    ) -> dict[str, Any]:
        # The call is marked sent in Redis instead (`sending` writes the database,
        # which the hub's event loop, where the mark is made, may not).
        server, tool = split_name(spec.name)

        def sent() -> None:
            redis_client().set(_sent_key(action_id), "1", ex=SENT_TTL)

        answer = self.hub.call(server, tool, arguments, sent)
        text = "\n".join(
            block.text for block in answer.content if isinstance(block, TextContent)
        )
        if answer.is_error:
            raise PermanentError(
                f"{spec.name} answered an error: {text[:2000] or '(no text)'}"
            )
        result: dict[str, Any] = {"text": text[:RESULT_CHARS]}
        if answer.structured_content is not None:
            structured = answer.structured_content
            if len(json.dumps(structured, default=str)) <= RESULT_CHARS:
                result["structured"] = structured
        others = [b.type for b in answer.content if getattr(b, "type", "") != "text"]
        if others:
            result["other_content"] = others
        return result

    def window(self, spec: ToolSpec) -> float:
        # Nothing to wait for: a sent call is never sent again unless its tool
        # says repeating is safe.
        return 0.0

    def recover(
        self, spec: ToolSpec, arguments: Args, action_id: uuid.UUID
    ) -> dict[str, Any] | None:
        if spec.idempotent or not redis_client().exists(_sent_key(action_id)):
            return None  # never sent, or safe to send again
        raise PermanentError(
            f"The call of {spec.name} was cut off (the worker stopped or the "
            "connection broke) after it was sent: it may or may not have run. It was "
            "not repeated, because the tool does not say it is safe to repeat "
            "(idempotentHint). Check the service before asking again."
        )

    def preview(self, spec: ToolSpec, arguments: Args) -> Reading:
        return Reading()
