"""The Linear pack's tools as the model sees them; `tasks.executors.linear` runs
them."""

from .spec import Preview, ToolSpec, object_schema

PACK = "linear"

IDENTIFIER = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "The issue's identifier, like ENG-3.",
}
TITLE = {"type": "string", "minLength": 1, "maxLength": 255}
DESCRIPTION = {"type": "string", "maxLength": 10000}
PRIORITY = {"type": "integer", "minimum": 0, "maximum": 4}


LINEAR_TOOLS = [
    ToolSpec(
        name="search_issues",
        pack=PACK,
        description="Search Linear issues by text; an empty query lists recent.",
        parameters=object_schema(
            {
                "query": {"type": "string", "maxLength": 200},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            ["query"],
        ),
        approval_free=True,
    ),
    ToolSpec(
        name="get_issue",
        pack=PACK,
        target="id",
        description="Read one Linear issue with its description.",
        parameters=object_schema({"id": IDENTIFIER}, ["id"]),
        approval_free=True,
    ),
    ToolSpec(
        name="create_issue",
        pack=PACK,
        description="Create a Linear issue.",
        parameters=object_schema(
            {
                "title": TITLE,
                "description": DESCRIPTION,
                "team": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 10,
                    "description": "Team key, like ENG.",
                },
                "priority": PRIORITY,
            },
            ["title"],
        ),
        preview=Preview.CREATES,
    ),
    ToolSpec(
        name="update_issue",
        pack=PACK,
        target="id",
        description=(
            "Change an issue's title, description, state, priority or assignee."
        ),
        parameters={
            **object_schema(
                {
                    "id": IDENTIFIER,
                    "title": TITLE,
                    "description": DESCRIPTION,
                    "state": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 60,
                        "description": "Workflow state name, like Done.",
                    },
                    "priority": PRIORITY,
                    "assignee": {"type": "string", "minLength": 1, "maxLength": 120},
                },
                ["id"],
            ),
            "minProperties": 2,
        },
        preview=Preview.TARGET,
    ),
    ToolSpec(
        name="delete_issue",
        pack=PACK,
        target="id",
        description="Delete a Linear issue.",
        parameters=object_schema({"id": IDENTIFIER}, ["id"]),
        preview=Preview.TARGET,
    ),
    ToolSpec(
        name="add_comment",
        pack=PACK,
        target="id",
        description="Add a comment to a Linear issue.",
        parameters=object_schema(
            {
                "id": IDENTIFIER,
                "body": {"type": "string", "minLength": 1, "maxLength": 10000},
            },
            ["id", "body"],
        ),
        preview=Preview.TARGET,
    ),
]
