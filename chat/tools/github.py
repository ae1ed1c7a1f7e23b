"""The GitHub pack's tools (issues of `GITHUB_REPOSITORY`); `tasks.executors.github`
runs them. The pack is on only when both `GITHUB_TOKEN` and `GITHUB_REPOSITORY` are
set."""

from django.conf import settings

from .spec import Preview, ToolSpec, object_schema

PACK = "github"

NUMBER = {
    "type": "integer",
    "minimum": 1,
    "maximum": 2**31 - 1,
    "description": "The issue's number, like 12 for #12.",
}
TITLE = {"type": "string", "minLength": 1, "maxLength": 256}
BODY = {"type": "string", "maxLength": 60000}
LABELS = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 50},
    "maxItems": 20,
    "uniqueItems": True,
    "description": "Label names; on an update they replace the issue's labels.",
}


GITHUB_TOOLS = [
    ToolSpec(
        name="github_search_issues",
        pack=PACK,
        description=(
            "Search the GitHub repository's issues by text (every word is matched "
            "as text: search qualifiers and OR are not read); an empty query lists "
            "recent ones."
        ),
        parameters=object_schema(
            {
                "query": {"type": "string", "maxLength": 200},
                "state": {"type": "string", "enum": ["open", "closed", "all"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            ["query"],
        ),
        approval_free=True,
    ),
    ToolSpec(
        name="github_get_issue",
        pack=PACK,
        description="Read one GitHub issue with its body and recent comments.",
        parameters=object_schema({"number": NUMBER}, ["number"]),
        approval_free=True,
        target="number",
    ),
    ToolSpec(
        name="github_create_issue",
        pack=PACK,
        description="Open a GitHub issue in the repository.",
        parameters=object_schema(
            {"title": TITLE, "body": BODY, "labels": LABELS}, ["title"]
        ),
        preview=Preview.CREATES,
    ),
    ToolSpec(
        name="github_update_issue",
        pack=PACK,
        description=(
            "Change a GitHub issue's title, body, state (open or closed) or labels."
        ),
        parameters={
            **object_schema(
                {
                    "number": NUMBER,
                    "title": TITLE,
                    "body": BODY,
                    "state": {"type": "string", "enum": ["open", "closed"]},
                    "labels": LABELS,
                },
                ["number"],
            ),
            "minProperties": 2,
        },
        preview=Preview.TARGET,
        target="number",
    ),
    ToolSpec(
        name="github_add_comment",
        pack=PACK,
        description="Comment on a GitHub issue.",
        parameters=object_schema(
            {
                "number": NUMBER,
                "body": {"type": "string", "minLength": 1, "maxLength": 60000},
            },
            ["number", "body"],
        ),
        preview=Preview.TARGET,
        target="number",
    ),
]


def enabled() -> bool:
    return bool(settings.GITHUB_TOKEN and settings.GITHUB_REPOSITORY)
