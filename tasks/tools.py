"""The tools the agent may call: their schemas, whether they need approval, and what
they do on Linear.

Each tool's `run` must be safe to repeat after a crash: creating tools pass Linear an
idempotency id derived from the action, and `recover` reads back whether an earlier
attempt already took effect before a retry repeats it.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from jsonschema import Draft202012Validator

from chat.text import storable

from .linear import LinearClient

Args = dict[str, Any]
IDENTIFIER = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "The issue's identifier, like ENG-3.",
}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict
    run: Callable[[LinearClient, Args, uuid.UUID], dict]
    # Read back after an interrupted attempt: the result if the effect already
    # happened, None if the tool should run (again).
    recover: Callable[[LinearClient, Args, uuid.UUID], dict | None] | None = None
    # The target issue, for approvers to see what they approve.
    targets_issue: bool = False

    @property
    def needs_approval(self) -> bool:
        return self.name in settings.AGENT_APPROVAL_TOOLS

    def openai_spec(self) -> dict:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _object(properties: dict, required: list[str]) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _idempotency_id(action_id: uuid.UUID, purpose: str) -> str:
    return str(uuid.uuid5(action_id, purpose))


def _search(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict:
    issues = client.search_issues(args["query"], limit=args.get("limit", 10))
    return {"issues": issues, "count": len(issues)}


def _get(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict:
    issue = client.get_issue(args["id"])
    if issue is None:
        return {"error": f"No issue {args['id']} exists."}
    return {"issue": issue}


def _create(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict:
    issue = client.create_issue(
        idempotency_id=_idempotency_id(action_id, "issue"),
        title=args["title"],
        description=args.get("description", ""),
        team=args.get("team"),
        priority=args.get("priority"),
    )
    return {"created": issue}


def _recover_create(
    client: LinearClient, args: Args, action_id: uuid.UUID
) -> dict | None:
    issue = client.get_issue(_idempotency_id(action_id, "issue"))
    return {"created": issue} if issue else None


def _update(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict:
    fields = {k: v for k, v in args.items() if k != "id"}
    return {"updated": client.update_issue(args["id"], **fields)}


def _delete(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict:
    return client.delete_issue(args["id"])


def _recover_delete(
    client: LinearClient, args: Args, action_id: uuid.UUID
) -> dict | None:
    # Gone already: an earlier attempt deleted it (the preview names what it was).
    if client.get_issue(args["id"]) is None:
        return {"deleted": args["id"]}
    return None


def _comment(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict:
    comment = client.add_comment(
        idempotency_id=_idempotency_id(action_id, "comment"),
        issue_id=args["id"],
        body=args["body"],
    )
    return {"commented": comment}


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in [
        Tool(
            name="search_issues",
            description="Search Linear issues by text; an empty query lists recent.",
            parameters=_object(
                {
                    "query": {"type": "string", "maxLength": 200},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                },
                ["query"],
            ),
            run=_search,
        ),
        Tool(
            name="get_issue",
            description="Read one Linear issue with its description.",
            parameters=_object({"id": IDENTIFIER}, ["id"]),
            run=_get,
        ),
        Tool(
            name="create_issue",
            description="Create a Linear issue.",
            parameters=_object(
                {
                    "title": {"type": "string", "minLength": 1, "maxLength": 255},
                    "description": {"type": "string", "maxLength": 10000},
                    "team": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 10,
                        "description": "Team key, like ENG.",
                    },
                    "priority": {"type": "integer", "minimum": 0, "maximum": 4},
                },
                ["title"],
            ),
            run=_create,
            recover=_recover_create,
        ),
        Tool(
            name="update_issue",
            description=(
                "Change an issue's title, description, state, priority or assignee."
            ),
            parameters={
                **_object(
                    {
                        "id": IDENTIFIER,
                        "title": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": {"type": "string", "maxLength": 10000},
                        "state": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 60,
                            "description": "Workflow state name, like Done.",
                        },
                        "priority": {"type": "integer", "minimum": 0, "maximum": 4},
                        "assignee": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 120,
                        },
                    },
                    ["id"],
                ),
                "minProperties": 2,
            },
            run=_update,
            targets_issue=True,
        ),
        Tool(
            name="delete_issue",
            description="Delete a Linear issue.",
            parameters=_object({"id": IDENTIFIER}, ["id"]),
            run=_delete,
            recover=_recover_delete,
            targets_issue=True,
        ),
        Tool(
            name="add_comment",
            description="Add a comment to a Linear issue.",
            parameters=_object(
                {
                    "id": IDENTIFIER,
                    "body": {"type": "string", "minLength": 1, "maxLength": 10000},
                },
                ["id", "body"],
            ),
            run=_comment,
            targets_issue=True,
        ),
    ]
}


class InvalidCall(Exception):
    """A tool call the model (or an approver's edit) got wrong; the text says how."""


def validate(name: str, arguments: object) -> Tool:
    """Return the tool if `arguments` fit its schema, else raise InvalidCall."""
    tool = TOOLS.get(name)
    if tool is None:
        raise InvalidCall(f"Unknown tool {name!r}. Available: {', '.join(TOOLS)}.")
    if not isinstance(arguments, dict):
        raise InvalidCall(f"Arguments of {name} must be a JSON object.")
    errors = sorted(
        Draft202012Validator(tool.parameters).iter_errors(arguments),
        key=lambda e: list(e.path),
    )
    if errors:
        details = "; ".join(_describe(error) for error in errors[:5])
        raise InvalidCall(f"Invalid arguments for {name}: {details}.")
    if _unstorable(arguments):
        # PostgreSQL cannot store NUL or broken Unicode; no issue field needs them.
        raise InvalidCall(
            f"Invalid arguments for {name}: NUL characters or invalid Unicode."
        )
    return tool


def _unstorable(value: object) -> bool:
    if isinstance(value, str):
        return not storable(value)
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.path)
    return f"{where}: {error.message}" if where else error.message


def linear_client() -> LinearClient:
    # Without a key the local stand-in is used; it still wants a credential.
    return LinearClient(
        settings.LINEAR_API_URL,
        settings.LINEAR_API_KEY or "demo-key",
        timeout=settings.LINEAR_TIMEOUT,
    )


def preview(tool: Tool, arguments: Args) -> dict | None:
    """What the action touches, read now, so approvers see more than the arguments."""
    if tool.name == "create_issue":
        return {"creates": arguments["title"], "team": arguments.get("team")}
    if not tool.targets_issue:
        return None
    return linear_client().preview(arguments["id"]) or {
        "identifier": arguments["id"],
        "missing": True,
    }
