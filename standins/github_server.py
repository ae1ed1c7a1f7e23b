"""A local stand-in for GitHub's REST API (issues of a repository), for development,
the offline demo and tests.

It answers the endpoints the GitHub pack uses, as GitHub's REST API version
2022-11-28 documents them: the authenticated user, listing, searching, reading,
creating and updating issues, and an issue's comments. Answers carry GitHub's
shapes, status codes, pagination `Link` headers and rate-limit headers; errors
carry GitHub's `{"message", "documentation_url", "status"}` bodies.

Every request is checked against JSON Schemas of the documented query parameters
and request bodies (`SCHEMAS`). What GitHub refuses is refused here too (a wrong
type is a 422); what GitHub silently ignores (an undocumented field) is accepted,
but every way a request strays from the documentation is kept in its record at
`/_control/requests`, so tests can assert a client sends exactly what GitHub
documents. Data lives in memory, seeded from `github_data` (repositories
`demo/agentsite` and `acme/payroll`; a search reads `repo:`, `org:`, `user:`, `OR`,
`NOT` and parentheses as GitHub does, so a query can reach either). Control
endpoints under `/_control/` (no authentication) read the effects log and recorded
requests, reset the data, queue faults and add issues directly.

    python -m standins.github_server --host 127.0.0.1 --port 8003 [--token T]
"""

import argparse
import contextlib
import json
import math
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode

from jsonschema import Draft202012Validator, ValidationError

from . import github_data

# A JSON object: a stored record, a request body or an answer.
JSON = dict[str, Any]
T = TypeVar("T")

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
MAX_QUERY_CHARS = 256
RATE_LIMIT = 5000
MAX_RECORDED = 1000

OPERATIONS = (
    "get_user",
    "list_issues",
    "search_issues",
    "get_issue",
    "create_issue",
    "update_issue",
    "list_comments",
    "add_comment",
)

# Where GitHub's error bodies point for each operation.
OPERATION_DOCS = {
    "get_user": f"{DOCS}/users/users#get-the-authenticated-user",
    "list_issues": f"{DOCS}/issues/issues#list-repository-issues",
    "search_issues": f"{DOCS}/search/search#search-issues-and-pull-requests",
    "get_issue": f"{DOCS}/issues/issues#get-an-issue",
    "create_issue": f"{DOCS}/issues/issues#create-an-issue",
    "update_issue": f"{DOCS}/issues/issues#update-an-issue",
    "list_comments": f"{DOCS}/issues/comments#list-issue-comments",
    "add_comment": f"{DOCS}/issues/comments#create-an-issue-comment",
}

# The `resource` GitHub names in an operation's validation errors.
RESOURCES = {
    "get_user": "User",
    "list_issues": "Issue",
    "search_issues": "Search",
    "get_issue": "Issue",
    "create_issue": "Issue",
    "update_issue": "Issue",
    "list_comments": "IssueComment",
    "add_comment": "IssueComment",
}


def now() -> str:
    """The current time in GitHub's timestamp format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Documented request shapes: JSON Schemas of each operation's query parameters and
# body, as GitHub's REST reference (version 2022-11-28) lists them. Query values
# arrive as text; those documented as integers are compared as integers.

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _shape(properties: JSON, required: tuple[str, ...] = ()) -> JSON:
    """A closed object schema: anything not listed strays from the documentation."""
    return {
        "$schema": DIALECT,
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


PAGING = {
    "per_page": {"type": "integer", "default": DEFAULT_PER_PAGE},
    "page": {"type": "integer", "default": 1},
}
LABEL = {
    # A label is named by a string or by an object (GitHub documents both).
    "type": ["string", "object"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "description": {"type": ["string", "null"]},
        "color": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}
ISSUE_FIELDS = {
    "body": {"type": ["string", "null"]},
    "assignee": {"type": ["string", "null"], "deprecated": True},
    "milestone": {"type": ["string", "integer", "null"]},
    "labels": {"type": "array", "items": LABEL},
    "assignees": {"type": "array", "items": {"type": "string"}},
    "type": {"type": ["string", "null"]},
}
SEARCH_SORTS = [
    "comments",
    "reactions",
    "reactions-+1",
    "reactions--1",
    "reactions-smile",
    "reactions-thinking_face",
    "reactions-heart",
    "reactions-tada",
    "interactions",
    "created",
    "updated",
]

SCHEMAS: dict[str, dict[str, JSON | None]] = {
    "get_user": {"query": _shape({}), "body": None},
    "list_issues": {
        "query": _shape(
            {
                "milestone": {"type": "string"},
                "state": {"enum": ["open", "closed", "all"], "default": "open"},
                "assignee": {"type": "string"},
                "type": {"type": "string"},
                "creator": {"type": "string"},
                "mentioned": {"type": "string"},
                "labels": {"type": "string"},
                "sort": {"enum": ["created", "updated", "comments"]},
                "direction": {"enum": ["asc", "desc"], "default": "desc"},
                "since": {"type": "string", "format": "date-time"},
                **PAGING,
            }
        ),
        "body": None,
    },
    "search_issues": {
        "query": _shape(
            {
                "q": {"type": "string"},
                "sort": {"enum": SEARCH_SORTS},
                "order": {"enum": ["desc", "asc"], "default": "desc"},
                **PAGING,
                "advanced_search": {"type": "string"},
            },
            required=("q",),
        ),
        "body": None,
    },
    "get_issue": {"query": _shape({}), "body": None},
    "create_issue": {
        "query": _shape({}),
        "body": _shape(
            {"title": {"type": ["string", "integer"]}, **ISSUE_FIELDS},
            required=("title",),
        ),
    },
    "update_issue": {
        "query": _shape({}),
        "body": _shape(
            {
                "title": {"type": ["string", "integer", "null"]},
                **ISSUE_FIELDS,
                "state": {"enum": ["open", "closed"]},
                "state_reason": {
                    "enum": ["completed", "not_planned", "duplicate", "reopened", None]
                },
            }
        ),
    },
    "list_comments": {
        "query": _shape({"since": {"type": "string", "format": "date-time"}, **PAGING}),
        "body": None,
    },
    "add_comment": {
        "query": _shape({}),
        "body": _shape({"body": {"type": "string"}}, required=("body",)),
    },
}

# Query parameters whose invalid values GitHub refuses; other strays it ignores.
STRICT_QUERY = {"state", "sort", "direction", "order"}

# The control endpoints' own bodies.
FAULTS_SCHEMA = _shape(
    {
        "faults": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "op": {"enum": [*OPERATIONS, "*"]},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "delay": {"type": "number", "minimum": 0},
                    "after_apply": {"type": "boolean"},
                    "count": {"type": "integer", "minimum": 1},
                    "message": {"type": "string"},
                    # A 403 or 429's kind: the primary limit exhausted (default),
                    # a secondary rate limit, or none (a plain refusal).
                    "rate_limit": {"enum": ["primary", "secondary", "none"]},
                    # Its Retry-After in seconds; null sends none.
                    "retry_after": {"type": ["integer", "null"], "minimum": 0},
                },
                "required": ["op"],
                "additionalProperties": False,
            },
        }
    },
    required=("faults",),
)
CONTROL_ISSUE_SCHEMA = _shape(
    {
        "title": {"type": "string", "minLength": 1},
        "body": {"type": ["string", "null"]},
        "labels": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": ["open", "closed"]},
        "user": {"type": "string"},
    },
    required=("title",),
)


@dataclass
class Stray:
    """One way a request differs from the documented shape."""

    kind: str  # "unknown" (GitHub ignores it), "missing" or "invalid" (refused)
    field: str
    value: Any
    text: str


def strays(schema: JSON, instance: Any, noun: str) -> list[Stray]:
    """Every difference between `instance` and `schema`; `noun` names its parts
    ("body field", "query parameter") in the problems' texts."""
    validator = Draft202012Validator(
        schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    found: dict[str, Stray] = {}
    for error in validator.iter_errors(instance):
        for stray in _describe(error, noun):
            found.setdefault(stray.text, stray)
    return list(found.values())


def _describe(error: ValidationError, noun: str) -> list[Stray]:
    where = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}"
        for part in error.absolute_path
    ).lstrip(".")
    top = str(error.absolute_path[0]) if error.absolute_path else ""
    schema: Any = error.schema
    instance: Any = error.instance
    if error.validator == "additionalProperties":
        known = schema.get("properties", {})
        return [
            Stray("unknown", name, value, f"unknown {noun} {_join(where, name)!r}")
            for name, value in instance.items()
            if name not in known
        ]
    if error.validator == "required":
        required: Any = error.validator_value
        return [
            Stray("missing", name, None, f"{noun} {_join(where, name)!r} is required")
            for name in required
            if name not in instance
        ]
    return [Stray("invalid", top, instance, f"{noun} {where!r}: {error.message}")]


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


# Errors shaped like GitHub's


class ApiError(Exception):
    """An answer GitHub would give instead of the resource."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[JSON] | None = None,
        docs: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.docs = docs

    def reply(self, docs: str = DOCS) -> "Reply":
        body = error_body(self.status, self.message, self.errors, self.docs or docs)
        return Reply(self.status, body)


def error_body(
    status: int, message: str, errors: list[JSON] | None = None, docs: str = DOCS
) -> JSON:
    """GitHub's error body; `status` is a string there."""
    body: dict[str, Any] = {"message": message}
    if errors is not None:
        body["errors"] = errors
    body["documentation_url"] = docs
    body["status"] = str(status)
    return body


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation_failed(resource: str, *errors: JSON) -> ApiError:
    """GitHub's 422 with `errors` like `{"field": "title", "code": "missing_field"}`."""
    return ApiError(
        422, "Validation Failed", [{"resource": resource, **e} for e in errors]
    )


def invalid_value(resource: str, name: str, value: Any) -> ApiError:
    return validation_failed(
        resource, {"field": name, "code": "invalid", "value": value}
    )


# The store


class Store:
    """Everything the stand-in knows, guarded by one lock.

    Endpoints run under the lock, so they see and change a consistent store without
    locking themselves.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: deque[JSON] = deque(maxlen=MAX_RECORDED)
        self.reset()

    def reset(self) -> None:
        """Reseed the data and forget effects, faults and recorded requests."""
        with self.lock:
            seeded = github_data.seed()
            self.users: dict[str, JSON] = seeded["users"]
            self.repositories: dict[str, JSON] = seeded["repositories"]
            self.comment_ids = max(
                (c for r in self.repositories.values() for c in r["comments"]),
                default=github_data.COMMENT_ID_BASE,
            )
            self.effects: list[JSON] = []
            self.faults: list[JSON] = []
            self.used = {"core": 0, "search": 0}
            self.window_ends = int(time.time()) + 3600
            self.requests.clear()

    # Lookups

    def find_repository(self, params: dict[str, str]) -> JSON | None:
        """The repository a path names, by owner/name (case-insensitive) or id."""
        if params.get("repo_id"):
            wanted = int(params["repo_id"])
            return next(
                (r for r in self.repositories.values() if r["id"] == wanted), None
            )
        return self.find_repository_named(f"{params['owner']}/{params['repo']}")

    def find_repository_named(self, full_name: str) -> JSON | None:
        wanted = full_name.casefold()
        return next(
            (r for n, r in self.repositories.items() if n.casefold() == wanted), None
        )

    def find_user(self, login: str) -> JSON | None:
        """A user by login, which GitHub compares case-insensitively."""
        wanted = login.casefold()
        return next((u for n, u in self.users.items() if n.casefold() == wanted), None)

    @property
    def bot(self) -> JSON:
        return self.users[github_data.BOT_LOGIN]

    # Changes

    def add_issue(self, repo: JSON, fields: JSON) -> JSON:
        """Store a new issue, numbered after the repository's last one."""
        number = max(repo["issues"], default=0) + 1
        stamp = now()
        closed = fields.get("state") == "closed"
        issue = {
            "id": repo["issue_id_base"] + number,
            "number": number,
            "title": fields["title"],
            "body": fields.get("body"),
            "user": fields.get("user") or github_data.BOT_LOGIN,
            "labels": self.ensure_labels(repo, fields.get("labels") or []),
            "assignees": list(fields.get("assignees") or []),
            "state": "closed" if closed else "open",
            "state_reason": "completed" if closed else None,
            "created_at": stamp,
            "updated_at": stamp,
            "closed_at": stamp if closed else None,
            "locked": False,
        }
        repo["issues"][number] = issue
        return issue

    def ensure_labels(self, repo: JSON, names: list[str]) -> list[str]:
        """The labels' names as the repository spells them, creating unknown ones
        (GitHub does), without duplicates."""
        chosen: list[str] = []
        for name in names:
            label = repo["labels"].get(name.casefold())
            if label is None:
                label_id = github_data.LABEL_ID_BASE + len(repo["labels"]) + 1
                label = {
                    "id": label_id,
                    "name": name,
                    "color": "ededed",
                    "default": False,
                    "description": None,
                }
                repo["labels"][name.casefold()] = label
            if label["name"] not in chosen:
                chosen.append(label["name"])
        return chosen

    def add_comment(self, repo: JSON, issue: JSON, body: str) -> JSON:
        self.comment_ids += 1
        stamp = now()
        comment = {
            "id": self.comment_ids,
            "issue": issue["number"],
            "user": github_data.BOT_LOGIN,
            "body": body,
            "created_at": stamp,
            "updated_at": stamp,
        }
        repo["comments"][comment["id"]] = comment
        issue["updated_at"] = stamp
        return comment

    def record_effect(self, op: str, number: int, fields: JSON) -> None:
        """Append an applied change to the effects log."""
        self.effects.append({"op": op, "number": number, "fields": fields, "at": now()})

    # Faults

    def add_faults(self, faults: list[JSON]) -> None:
        """Queue faults; each answers `count` matching requests (default 1)."""
        with self.lock:
            for fault in faults:
                self.faults.append({"count": 1, **fault})

    def take_fault(self, op: str) -> JSON | None:
        """The first queued fault for `op` (or for every operation, "*")."""
        with self.lock:
            for fault in self.faults:
                if fault["op"] in ("*", op):
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                    return dict(fault)
        return None

    # Rate limits: counted, never enforced (a fault stands in for exhaustion).

    def count_request(self, op: str) -> None:
        with self.lock:
            self.used[_rate_resource(op)] += 1

    def rate_headers(self, op: str | None) -> dict[str, str]:
        resource = _rate_resource(op)
        used = self.used[resource]
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(max(0, RATE_LIMIT - used)),
            "X-RateLimit-Reset": str(self.window_ends),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": resource,
        }


def _rate_resource(op: str | None) -> str:
    return "search" if op == "search_issues" else "core"


# GitHub's JSON for the stored records. `base` is the server's own URL, which
# plays the part of https://api.github.com in every API link.


def user_json(base: str, user: JSON) -> JSON:
    login = user["login"]
    return {
        "login": login,
        "id": user["id"],
        "node_id": github_data.node_id("User", user["id"]),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user['id']}?v=4",
        "gravatar_id": "",
        "url": f"{base}/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": user["type"],
        "site_admin": False,
    }


def repo_api(base: str, repo: JSON) -> str:
    return f"{base}/repos/{repo['owner']}/{repo['name']}"


def label_json(base: str, repo: JSON, name: str) -> JSON:
    label = repo["labels"][name.casefold()]
    return {
        "id": label["id"],
        "node_id": github_data.node_id("Label", label["id"]),
        "url": f"{repo_api(base, repo)}/labels/{quote(label['name'])}",
        "name": label["name"],
        "color": label["color"],
        "default": label["default"],
        "description": label["description"],
    }


def comment_count(repo: JSON, number: int) -> int:
    return sum(1 for c in repo["comments"].values() if c["issue"] == number)


def issue_json(base: str, store: Store, repo: JSON, issue: JSON) -> JSON:
    url = f"{repo_api(base, repo)}/issues/{issue['number']}"
    author = store.users[issue["user"]]
    assignees = [user_json(base, store.users[login]) for login in issue["assignees"]]
    html = f"https://github.com/{repo['owner']}/{repo['name']}"
    return {
        "id": issue["id"],
        "node_id": github_data.node_id("Issue", issue["id"]),
        "url": url,
        "repository_url": repo_api(base, repo),
        "labels_url": url + "/labels{/name}",
        "comments_url": f"{url}/comments",
        "events_url": f"{url}/events",
        "html_url": f"{html}/issues/{issue['number']}",
        "number": issue["number"],
        "title": issue["title"],
        "body": issue["body"],
        "state": issue["state"],
        "state_reason": issue["state_reason"],
        "labels": [label_json(base, repo, name) for name in issue["labels"]],
        "user": user_json(base, author),
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "milestone": None,
        "comments": comment_count(repo, issue["number"]),
        "locked": issue["locked"],
        "active_lock_reason": None,
        "created_at": issue["created_at"],
        "updated_at": issue["updated_at"],
        "closed_at": issue["closed_at"],
        "author_association": author["association"],
        "timeline_url": f"{url}/timeline",
        "performed_via_github_app": None,
    }


def comment_json(base: str, store: Store, repo: JSON, comment: JSON) -> JSON:
    api = repo_api(base, repo)
    author = store.users[comment["user"]]
    html = f"https://github.com/{repo['owner']}/{repo['name']}"
    return {
        "id": comment["id"],
        "node_id": github_data.node_id("IssueComment", comment["id"]),
        "url": f"{api}/issues/comments/{comment['id']}",
        "html_url": f"{html}/issues/{comment['issue']}#issuecomment-{comment['id']}",
        "issue_url": f"{api}/issues/{comment['issue']}",
        "body": comment["body"],
        "user": user_json(base, author),
        "created_at": comment["created_at"],
        "updated_at": comment["updated_at"],
        "author_association": author["association"],
        "performed_via_github_app": None,
    }


# One API request as the endpoints see it, and their answers


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    store: Store
    base: str  # the server's URL
    params: dict[str, str]  # from the path
    query: dict[str, Any]  # the last value of each parameter, numbers as ints
    pairs: list[tuple[str, str]]  # the query string as sent, for `Link`
    body: JSON  # the JSON body ({} without one)

    def repository(self) -> JSON:
        repo = self.store.find_repository(self.params)
        if repo is None:
            raise not_found()
        return repo

    def issue(self, repo: JSON) -> JSON:
        issue: JSON | None = repo["issues"].get(int(self.params["number"]))
        if issue is None:
            raise not_found()
        return issue

    def issue_json(self, repo: JSON, issue: JSON) -> JSON:
        return issue_json(self.base, self.store, repo, issue)


def paginate(call: Call, items: list[T], path: str) -> tuple[list[T], dict[str, str]]:
    """One page of `items` and, when there are others, GitHub's `Link` header with
    its prev, next, last and first relations, linking to `path` on this server."""
    per_page = _positive(call.query.get("per_page"), DEFAULT_PER_PAGE)
    per_page = min(per_page, MAX_PER_PAGE)
    page = _positive(call.query.get("page"), 1)
    last = max(1, math.ceil(len(items) / per_page))
    window = items[(page - 1) * per_page : page * per_page]
    relations = []
    if page > 1:
        relations.append(("prev", page - 1))
    if page < last:
        relations += [("next", page + 1), ("last", last)]
    if page > 1:
        relations.append(("first", 1))
    if not relations:
        return window, {}
    links = [f'<{_page_url(call, path, n)}>; rel="{rel}"' for rel, n in relations]
    return window, {"Link": ", ".join(links)}


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and value > 0 else default


def _page_url(call: Call, path: str, page: int) -> str:
    """`path` with the request's query, its `page` replaced."""
    pairs = [(k, v) for k, v in call.pairs if k != "page"] + [("page", str(page))]
    return f"{call.base}{path}?{urlencode(pairs)}"


def parse_time(value: str) -> datetime:
    """An ISO 8601 time; one without a zone is taken as UTC."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def since_filter(call: Call, resource: str) -> Callable[[JSON], bool]:
    """Whether a record was updated at or after the `since` parameter."""
    since = call.query.get("since")
    if since is None:
        return lambda record: True
    try:
        moment = parse_time(str(since))
    except ValueError:
        raise invalid_value(resource, "since", since) from None
    return lambda record: parse_time(record["updated_at"]) >= moment


# Endpoints


def get_user(call: Call) -> Reply:
    user = call.store.bot
    return Reply(
        200,
        {
            **user_json(call.base, user),
            "name": user["name"],
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "twitter_username": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": user["created_at"],
            "updated_at": user["created_at"],
        },
    )


def list_issues(call: Call) -> Reply:
    repo = call.repository()
    recent = since_filter(call, "Issue")
    chosen = [
        issue
        for issue in repo["issues"].values()
        if listed(call, issue) and recent(issue)
    ]
    chosen = sort_issues(
        repo,
        chosen,
        call.query.get("sort") or "created",
        call.query.get("direction") or "desc",
    )
    window, headers = paginate(call, chosen, f"/repositories/{repo['id']}/issues")
    return Reply(200, [call.issue_json(repo, i) for i in window], headers)


def listed(call: Call, issue: JSON) -> bool:
    """Whether the issue passes the list's state, labels, creator, assignee,
    milestone, mentioned and type filters."""
    query = call.query
    state = query.get("state") or "open"
    wanted = [n.strip().casefold() for n in query.get("labels", "").split(",")]
    has = {name.casefold() for name in issue["labels"]}
    return (
        state in ("all", issue["state"])
        and all(name in has for name in wanted if name)
        and _same_login(query.get("creator"), [issue["user"]])
        and _assigned(query.get("assignee"), issue["assignees"])
        # No issue has a milestone or a type here.
        and query.get("milestone") in (None, "none")
        and query.get("type") in (None, "none")
        and _mentions(query.get("mentioned"), issue)
    )


def _mentions(login: str | None, issue: JSON) -> bool:
    return login is None or f"@{login}".casefold() in (issue["body"] or "").casefold()


def _same_login(wanted: str | None, logins: list[str]) -> bool:
    if wanted is None:
        return True
    return wanted.casefold() in (login.casefold() for login in logins)


def _assigned(wanted: str | None, assignees: list[str]) -> bool:
    if wanted == "*":
        return bool(assignees)
    if wanted == "none":
        return not assignees
    return _same_login(wanted, assignees)


SORT_KEYS: dict[str, Callable[[JSON, JSON], Any]] = {
    "created": lambda repo, issue: issue["created_at"],
    "updated": lambda repo, issue: issue["updated_at"],
    "comments": lambda repo, issue: comment_count(repo, issue["number"]),
}


def sort_issues(
    repo: JSON, issues: list[JSON], sort: str, direction: str
) -> list[JSON]:
    """Issues by `sort` (ties by number), ascending or descending."""
    key = SORT_KEYS.get(sort, SORT_KEYS["created"])
    return sorted(
        issues,
        key=lambda issue: (key(repo, issue), issue["number"]),
        reverse=direction != "asc",
    )


def get_issue(call: Call) -> Reply:
    repo = call.repository()
    return Reply(200, call.issue_json(repo, call.issue(repo)))


def create_issue(call: Call) -> Reply:
    repo = call.repository()
    body = call.body
    fields = {
        "title": _title(body.get("title")),
        "body": body.get("body"),
        "labels": label_names(repo, body.get("labels") or []),
        "assignees": _assignees(call.store, body) or [],
    }
    _check_milestone_and_type(body)
    issue = call.store.add_issue(repo, fields)
    call.store.record_effect("create_issue", issue["number"], body)
    location = f"{repo_api(call.base, repo)}/issues/{issue['number']}"
    return Reply(201, call.issue_json(repo, issue), {"Location": location})


def update_issue(call: Call) -> Reply:
    repo = call.repository()
    issue = call.issue(repo)
    body = call.body
    # Check everything before changing anything.
    changes: dict[str, Any] = {}
    if body.get("title") is not None:
        changes["title"] = _title(body["title"])
    if "body" in body:
        changes["body"] = body["body"]
    if "labels" in body:
        changes["labels"] = label_names(repo, body["labels"])
    assignees = _assignees(call.store, body)
    if assignees is not None:
        changes["assignees"] = assignees
    _check_milestone_and_type(body)
    changes.update(state_change(issue, body.get("state"), body.get("state_reason")))
    if "labels" in changes:
        changes["labels"] = call.store.ensure_labels(repo, changes["labels"])
    changed = {k: v for k, v in changes.items() if issue[k] != v}
    if changed:
        issue.update(changed)
        issue["updated_at"] = now()
    call.store.record_effect("update_issue", issue["number"], body)
    return Reply(200, call.issue_json(repo, issue))


CLOSING_REASONS = ("completed", "not_planned", "duplicate")


def state_change(issue: JSON, state: str | None, reason: str | None) -> JSON:
    """The fields a PATCH's `state` and `state_reason` change: closing stamps
    `closed_at` (the reason defaults to completed), reopening clears it."""
    if state == "closed" and issue["state"] == "open":
        return {
            "state": "closed",
            "closed_at": now(),
            "state_reason": reason if reason in CLOSING_REASONS else "completed",
        }
    if state == "closed" and reason in CLOSING_REASONS:
        return {"state_reason": reason}  # already closed, for another reason now
    if state == "open" and issue["state"] == "closed":
        return {"state": "open", "closed_at": None, "state_reason": "reopened"}
    return {}


def _title(value: Any) -> str:
    """The title as text; GitHub takes integers too, and refuses a blank one."""
    title = str(value) if value is not None else ""
    if not title.strip():
        raise validation_failed("Issue", {"field": "title", "code": "missing_field"})
    return title


def label_names(repo: JSON, labels: list[Any]) -> list[str]:
    """The names of the labels a body lists, by name or by an existing label's id."""
    names = []
    for label in labels:
        if isinstance(label, dict) and "name" not in label:
            known = [
                found["name"]
                for found in repo["labels"].values()
                if found["id"] == label.get("id")
            ]
            if not known:
                raise invalid_value("Issue", "labels", label)
            label = known[0]
        name = label["name"] if isinstance(label, dict) else label
        if not name.strip():
            raise invalid_value("Issue", "labels", label)
        names.append(name.strip())
    return names


def _assignees(store: Store, body: JSON) -> list[str] | None:
    """The logins `assignees` (or the deprecated `assignee`) name; None when the
    body names none. Everyone known may be assigned; others are refused."""
    if "assignees" in body:
        wanted = body["assignees"]
    elif "assignee" in body:
        wanted = [body["assignee"]] if body["assignee"] else []
    else:
        return None
    logins = []
    for login in wanted:
        user = store.find_user(login)
        if user is None:
            raise invalid_value("Issue", "assignees", login)
        if user["login"] not in logins:
            logins.append(user["login"])
    return logins


def _check_milestone_and_type(body: JSON) -> None:
    """The repository has no milestones and no issue types: naming one is refused."""
    for name in ("milestone", "type"):
        if body.get(name) is not None:
            raise invalid_value("Issue", name, body[name])


def list_comments(call: Call) -> Reply:
    repo = call.repository()
    issue = call.issue(repo)
    recent = since_filter(call, "IssueComment")
    comments = [
        c
        for c in sorted(repo["comments"].values(), key=lambda c: c["id"])
        if c["issue"] == issue["number"] and recent(c)
    ]
    path = f"/repositories/{repo['id']}/issues/{issue['number']}/comments"
    window, headers = paginate(call, comments, path)
    items = [comment_json(call.base, call.store, repo, c) for c in window]
    return Reply(200, items, headers)


def add_comment(call: Call) -> Reply:
    repo = call.repository()
    issue = call.issue(repo)
    text = call.body.get("body")
    if not isinstance(text, str) or not text.strip():
        error = {"field": "body", "code": "missing_field"}
        raise validation_failed("IssueComment", error)
    comment = call.store.add_comment(repo, issue, text)
    call.store.record_effect("add_comment", issue["number"], call.body)
    answer = comment_json(call.base, call.store, repo, comment)
    return Reply(201, answer, {"Location": answer["url"]})


# Search: GitHub's issue search syntax, the part of it the stand-in understands.
#
# As GitHub does: a space between parts is AND; `OR` joins alternatives (AND binds
# tighter); parentheses group, five levels deep at most; `NOT` or `-` negates what
# follows. Within one run of ANDed parts, repeated `repo:`, `org:` and `user:`
# qualifiers name the repositories searched, each of them (`repo:a repo:b` searches
# both), and an alternative without any searches every repository the token reads.
# A phrase in double quotes is text, whatever it holds (`"repo:a/b"`, `"OR"`).

# Words and phrases, each perhaps negated (-) and perhaps a qualifier (name:value),
# and parentheses.
SEARCH_TOKEN = re.compile(
    r'(-?)(?:([a-zA-Z][\w-]*):("[^"]*"?|[^\s()]*)|"([^"]*)"?|([^\s()]+))|([()])'
)
MAX_NESTING = 5
SCOPES = {"repo", "org", "user"}
# Qualifiers GitHub knows that this stand-in cannot evaluate: refused, so a test
# relying on one learns it at once instead of getting a silently wrong answer.
UNSUPPORTED = {
    "archived",
    "base",
    "closed",
    "commenter",
    "comments",
    "created",
    "draft",
    "head",
    "interactions",
    "involves",
    "language",
    "linked",
    "mentions",
    "milestone",
    "parent-issue",
    "project",
    "reactions",
    "reason",
    "review",
    "review-requested",
    "reviewed-by",
    "sort",
    "status",
    "sub-issue",
    "team",
    "team-review-requested",
    "updated",
}
KINDS = {"issue": True, "pr": False, "pull-request": False}
Predicate = Callable[[JSON, JSON], bool]  # (repository, issue) -> matches
# (repository, issue, the text terms are looked for in) -> matches
Test = Callable[[JSON, JSON, str], bool]


@dataclass
class Search:
    """A parsed `q`: a test of each issue, and what ranking and `in:` need."""

    test: Test = lambda r, i, text: True
    terms: list[str] = field(default_factory=list)  # every term not negated
    fields: set[str] = field(default_factory=set)  # from in:, else all three
    kind_given: bool = False

    def matches(self, repo: JSON, issue: JSON) -> bool:
        return self.test(repo, issue, self.text(repo, issue))

    def text(self, repo: JSON, issue: JSON) -> str:
        """What terms are looked for in: by default title, body and comments."""
        fields = self.fields or {"title", "body", "comments"}
        parts = []
        if "title" in fields:
            parts.append(issue["title"])
        if "body" in fields:
            parts.append(issue["body"] or "")
        if "comments" in fields:
            parts += [
                c["body"]
                for c in repo["comments"].values()
                if c["issue"] == issue["number"]
            ]
        return "\n".join(parts).casefold()


def search_refused(message: str) -> ApiError:
    error = {"message": message, "resource": "Search", "field": "q", "code": "invalid"}
    return validation_failed("Search", error)


@dataclass
class Part:
    """One token of `q`: an operator, a parenthesis, a qualifier or a term."""

    kind: str  # "op", "(", ")", "qualifier", "term"
    text: str = ""
    value: str = ""
    negated: bool = False


def parse_search(store: Store, q: str) -> Search:
    """Parse GitHub's search syntax, refusing what GitHub or the stand-in would."""
    if len(q) > MAX_QUERY_CHARS:
        raise search_refused(f"The search is longer than {MAX_QUERY_CHARS} characters.")
    search = Search()
    parser = _Parser(store, search, _tokens(q))
    search.test = parser.alternatives(depth=0)
    if parser.parts:
        raise search_refused("The search has an unbalanced parenthesis.")
    if not search.kind_given:
        raise ApiError(
            422,
            "Query must include 'is:issue' or 'is:pull-request'",
            docs=OPERATION_DOCS["search_issues"],
        )
    return search


def _tokens(q: str) -> list[Part]:
    parts = []
    for match in SEARCH_TOKEN.finditer(q):
        negated, name, value, phrase, word, paren = match.groups()
        if paren:
            parts.append(Part(paren))
        elif name is not None and name.lower() in KNOWN_QUALIFIERS:
            parts.append(
                Part("qualifier", name.lower(), value.strip('"'), bool(negated))
            )
        elif word in ("OR", "AND", "NOT") and not negated:
            parts.append(Part("op", word))
        else:
            # A phrase, a word, or a name:value GitHub does not know (plain text).
            term = phrase if phrase is not None else match.group(0).removeprefix("-")
            if term:
                parts.append(Part("term", term.casefold(), negated=bool(negated)))
    return parts


class _Parser:
    """Recursive descent over the parts: alternatives of runs of ANDed units."""

    def __init__(self, store: Store, search: Search, parts: list[Part]) -> None:
        self.store, self.search, self.parts = store, search, parts

    def alternatives(self, depth: int) -> Test:
        runs = [self.run(depth)]
        while self.parts and self.parts[0].kind == "op" and self.parts[0].text == "OR":
            self.parts.pop(0)
            runs.append(self.run(depth))
        if len(runs) == 1:
            return runs[0]
        return lambda r, i, text: any(run(r, i, text) for run in runs)

    def run(self, depth: int) -> Test:
        tests: list[Test] = []
        scopes: list[Predicate] = []
        while self.parts and not self._ends_run():
            part = self.parts[0]
            if part.kind == "op" and part.text == "AND":
                self.parts.pop(0)
                continue
            if part.kind == "qualifier" and part.text in SCOPES and not part.negated:
                self.parts.pop(0)
                scopes.append(QUALIFIERS[part.text](self.store, part.value))
                continue
            tests.append(self.unit(depth))
        if not tests and not scopes:
            raise search_refused("The search has an empty part around OR or ( ).")
        if scopes:
            # Each repository named is searched: they widen, never narrow.
            tests.append(lambda r, i, text: any(scope(r, i) for scope in scopes))
        return lambda r, i, text: all(test(r, i, text) for test in tests)

    def unit(self, depth: int) -> Test:
        part = self.parts.pop(0)
        if part.kind == "op" and part.text == "NOT":
            if not self.parts:
                raise search_refused("NOT must be followed by something to exclude.")
            inner = self.unit(depth)
            return lambda r, i, text: not inner(r, i, text)
        if part.kind == "(":
            if depth >= MAX_NESTING:
                raise search_refused(
                    f"Parentheses nest at most {MAX_NESTING} levels deep."
                )
            inner = self.alternatives(depth + 1)
            if not self.parts or self.parts.pop(0).kind != ")":
                raise search_refused("The search has an unbalanced parenthesis.")
            return inner
        if part.kind == "qualifier":
            predicate = _qualifier(self.store, self.search, part)
            return lambda r, i, text: predicate(r, i)
        if part.kind == "term":
            if not part.negated:
                self.search.terms.append(part.text)
            term, negated = part.text, part.negated
            return lambda r, i, text: (term in text) != negated
        raise search_refused(f"The search has a misplaced {part.kind or part.text}.")

    def _ends_run(self) -> bool:
        part = self.parts[0]
        return part.kind == ")" or (part.kind == "op" and part.text == "OR")


def _qualifier(store: Store, search: Search, part: Part) -> Predicate:
    name, value, negated = part.text, part.value, part.negated
    if name == "in" and not negated:
        search.fields |= _in_fields(value)
        return lambda r, i: True
    if name in UNSUPPORTED or name == "in":
        sign = "-" if negated else ""
        raise search_refused(
            f"The GitHub stand-in does not support the qualifier {sign}{name}:{value}."
        )
    if name in ("is", "type") and value.lower() in KINDS and not negated:
        search.kind_given = True
    test = QUALIFIERS[name](store, value)
    return (lambda r, i: not test(r, i)) if negated else test


def _in_fields(value: str) -> set[str]:
    fields = {part.strip().lower() for part in value.split(",")}
    if not fields <= {"title", "body", "comments"}:
        raise search_refused(f"The GitHub stand-in does not support in:{value}.")
    return fields


def _repo_qualifier(store: Store, value: str) -> Predicate:
    repo = store.find_repository_named(value)
    if repo is None:
        raise search_refused(
            "The listed users and repositories cannot be searched either because "
            "the resources do not exist or you do not have permission to view them."
        )
    return lambda r, i: r is repo


def _is_qualifier(store: Store, value: str) -> Predicate:
    value = value.lower()
    if value in KINDS:
        return lambda r, i: KINDS[value]  # every record here is an issue
    if value in ("open", "closed"):
        return lambda r, i: i["state"] == value
    if value in ("locked", "unlocked"):
        return lambda r, i: i["locked"] == (value == "locked")
    raise search_refused(f"The GitHub stand-in does not support is:{value}.")


def _type_qualifier(store: Store, value: str) -> Predicate:
    if value.lower() not in KINDS:
        raise search_refused(f"The GitHub stand-in does not support type:{value}.")
    return _is_qualifier(store, value)


def _state_qualifier(store: Store, value: str) -> Predicate:
    if value.lower() not in ("open", "closed"):
        raise search_refused(f"The GitHub stand-in does not support state:{value}.")
    return _is_qualifier(store, value)


def _label_qualifier(store: Store, value: str) -> Predicate:
    # label:a,b matches issues with either label.
    wanted = {name.strip().casefold() for name in value.split(",")}
    return lambda r, i: any(name.casefold() in wanted for name in i["labels"])


def _login(value: str) -> str:
    """A login; `@me` is the token's user."""
    return github_data.BOT_LOGIN if value == "@me" else value


def _author_qualifier(store: Store, value: str) -> Predicate:
    login = _login(value)
    return lambda r, i: _same_login(login, [i["user"]])


def _assignee_qualifier(store: Store, value: str) -> Predicate:
    login = _login(value)
    return lambda r, i: _same_login(login, i["assignees"])


def _owner_qualifier(store: Store, value: str) -> Predicate:
    return lambda r, i: r["owner"].casefold() == value.casefold()


def _no_qualifier(store: Store, value: str) -> Predicate:
    lacking: dict[str, Predicate] = {
        "label": lambda r, i: not i["labels"],
        "assignee": lambda r, i: not i["assignees"],
        "milestone": lambda r, i: True,
    }
    if value.lower() not in lacking:
        raise search_refused(f"The GitHub stand-in does not support no:{value}.")
    return lacking[value.lower()]


QUALIFIERS: dict[str, Callable[[Store, str], Predicate]] = {
    "repo": _repo_qualifier,
    "user": _owner_qualifier,
    "org": _owner_qualifier,
    "is": _is_qualifier,
    "type": _type_qualifier,
    "state": _state_qualifier,
    "label": _label_qualifier,
    "author": _author_qualifier,
    "assignee": _assignee_qualifier,
    "no": _no_qualifier,
}
KNOWN_QUALIFIERS = {*QUALIFIERS, "in", *UNSUPPORTED}


def search_issues(call: Call) -> Reply:
    q = call.query.get("q")
    if not isinstance(q, str) or not q.strip():
        raise validation_failed("Search", {"field": "q", "code": "missing"})
    search = parse_search(call.store, q)
    hits = [
        (repo, issue)
        for repo in call.store.repositories.values()
        for issue in repo["issues"].values()
        if search.matches(repo, issue)
    ]
    hits = rank(search, hits, call.query.get("sort"), call.query.get("order"))
    window, headers = paginate(call, hits, "/search/issues")
    items = [{**call.issue_json(r, i), "score": 1.0} for r, i in window]
    body = {"total_count": len(hits), "incomplete_results": False, "items": items}
    return Reply(200, body, headers)


def rank(
    search: Search, hits: list[tuple[JSON, JSON]], sort: str | None, order: str | None
) -> list[tuple[JSON, JSON]]:
    """Hits in the order asked for; by default, best match: hits with every term in
    the title first, then the most recently updated."""
    if sort in SORT_KEYS:
        key = SORT_KEYS[sort]
        return sorted(
            hits,
            key=lambda hit: (key(*hit), hit[1]["number"]),
            reverse=order != "asc",
        )
    if sort:  # reactions and interactions: none here, so ties throughout
        return sorted(hits, key=lambda hit: hit[1]["number"], reverse=order != "asc")
    newest = sorted(
        hits, key=lambda hit: (hit[1]["updated_at"], hit[1]["number"]), reverse=True
    )
    return sorted(
        newest,
        key=lambda hit: not all(t in hit[1]["title"].casefold() for t in search.terms),
    )


# Routes

# A repository is named by owner and name, or (in GitHub's own `Link` headers) by id.
REPO = r"/(?:repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)|repositories/(?P<repo_id>\d+))"
ISSUE = REPO + r"/issues/(?P<number>\d+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    op: str
    endpoint: Callable[[Call], Reply]


ROUTES = [
    Route("GET", re.compile(r"/user"), "get_user", get_user),
    Route("GET", re.compile(REPO + r"/issues"), "list_issues", list_issues),
    Route("POST", re.compile(REPO + r"/issues"), "create_issue", create_issue),
    Route("GET", re.compile(ISSUE), "get_issue", get_issue),
    Route("PATCH", re.compile(ISSUE), "update_issue", update_issue),
    Route("GET", re.compile(ISSUE + "/comments"), "list_comments", list_comments),
    Route("POST", re.compile(ISSUE + "/comments"), "add_comment", add_comment),
    Route("GET", re.compile(r"/search/issues"), "search_issues", search_issues),
]


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a request and its path parameters (percent-decoded)."""
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match and route.method == method:
            params = {k: unquote(v) for k, v in match.groupdict().items() if v}
            return route, params
    return None


# Checking a request against the documented shapes


def header_problems(headers: Any) -> list[str]:
    """What a request's headers lack that GitHub documents as expected."""
    problems = []
    version = headers.get("X-GitHub-Api-Version")
    if version is None:
        problems.append(f"header X-GitHub-Api-Version is missing (want {API_VERSION})")
    elif version.strip() != API_VERSION:
        problems.append(
            f"header X-GitHub-Api-Version is {version!r}, not {API_VERSION}"
        )
    if not headers.get("User-Agent"):
        problems.append("header User-Agent is missing (GitHub answers 403 without it)")
    return problems


def query_values(pairs: list[tuple[str, str]], schema: JSON) -> dict[str, Any]:
    """The last value of each parameter (as GitHub reads them), as an integer where
    the parameter is documented as one and the text is a number."""
    values: dict[str, Any] = dict(pairs)
    for name, value in values.items():
        documented = schema["properties"].get(name, {})
        if documented.get("type") == "integer" and re.fullmatch(r"-?\d+", value):
            values[name] = int(value)
    return values


def check_request(
    op: str, pairs: list[tuple[str, str]], body: JSON | None, problems: list[str]
) -> dict[str, Any]:
    """The request's query values, after adding every way it strays from GitHub's
    documentation to `problems`; raises the 422 GitHub answers to what it refuses."""
    query_schema, body_schema = SCHEMAS[op]["query"], SCHEMAS[op]["body"]
    assert query_schema is not None
    query = query_values(pairs, query_schema)
    refused = check_query(pairs, query, query_schema, problems)
    if body_schema is not None:
        refused += check_body(body or {}, body_schema, problems)
    if refused:
        unique = {(e["field"], e["code"]): e for e in refused}
        raise validation_failed(RESOURCES[op], *unique.values())
    return query


def check_query(
    pairs: list[tuple[str, str]], query: JSON, schema: JSON, problems: list[str]
) -> list[JSON]:
    """Add the query's strays to `problems`; the errors of those GitHub refuses."""
    names = [name for name, _ in pairs]
    problems += [
        f"query parameter {name!r} is given {names.count(name)} times"
        for name in sorted(set(names))
        if names.count(name) > 1
    ]
    refused = []
    for stray in strays(schema, query, "query parameter"):
        problems.append(stray.text)
        if stray.kind == "missing":
            refused.append({"field": stray.field, "code": "missing"})
        elif stray.kind == "invalid" and stray.field in STRICT_QUERY:
            refused.append({"field": stray.field, "code": "invalid"})
    return refused


def check_body(body: JSON, schema: JSON, problems: list[str]) -> list[JSON]:
    """Add the body's strays to `problems`; the errors of those GitHub refuses (all
    but undocumented fields, which it ignores)."""
    refused = []
    for stray in strays(schema, body, "body field"):
        problems.append(stray.text)
        if stray.kind == "missing":
            refused.append({"field": stray.field, "code": "missing_field"})
        elif stray.kind == "invalid":
            refused.append(
                {"field": stray.field, "code": "invalid", "value": stray.value}
            )
    return refused


NOT_JSON = object()  # a body that is not a JSON object


def parse_body(raw: bytes) -> Any:
    """The JSON object a request carries, None without a body, else NOT_JSON."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return NOT_JSON
    return body if isinstance(body, dict) else NOT_JSON


def _recorded_body(raw: bytes) -> Any:
    """The body as the requests log keeps it: JSON as such, else its text."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


# HTTP


# GitHub ends a request it has processed for ten seconds, unapplied ("Timeouts" in
# its REST troubleshooting docs): a `delay` fault longer than this plays that.
HOLD_LIMIT = 10.0


class GitHubStandin(ThreadingHTTPServer):
    """The HTTP server; `store` holds the data, `url` plays https://api.github.com."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str | None = None) -> None:
        super().__init__(address, Handler)
        self.token = token
        self.store = Store()
        self.hold_limit = HOLD_LIMIT

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class Handler(BaseHTTPRequestHandler):
    """Routes the API and the /_control/ endpoints."""

    server: GitHubStandin
    protocol_version = "HTTP/1.1"  # keep-alive, as HTTP clients' pools expect
    operation: str | None = None
    record: JSON | None = None

    def setup(self) -> None:
        super().setup()
        # A reply is two writes (headers, then body): with Nagle's algorithm the
        # body waits for the client's delayed ACK of the headers, about 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        # Read the whole body first, so the connection stays usable after an error.
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query_string = self.path.partition("?")
        self.operation, self.record = None, None
        if path.startswith("/_control/"):
            return self.control(method, path.removeprefix("/_control/"), raw)
        self.record = {
            "method": method,
            "path": path,
            "query": parse_qs(query_string, keep_blank_values=True),
            "body": _recorded_body(raw),
            "operation": None,
            "status": None,
            "problems": header_problems(self.headers),
        }
        try:
            reply = self.api(method, path, query_string, raw)
        except ApiError as exc:
            reply = exc.reply(OPERATION_DOCS.get(self.operation or "", DOCS))
        except Exception:  # a bug here: answer as GitHub does, and show it
            traceback.print_exc()
            reply = Reply(500, error_body(500, "Server Error"))
        self.send_reply(reply)

    # The API

    def api(self, method: str, path: str, query_string: str, raw: bytes) -> Reply:
        """Authenticate, route, check, apply faults and answer one API request."""
        assert self.record is not None
        store = self.server.store
        credentials = self.credentials()
        if credentials == "bad":
            raise unauthorized("Bad credentials")
        found = find_route(method, path)
        if found is None:
            self.record["problems"].append(f"no such endpoint: {method} {path}")
            raise not_found()
        route, params = found
        self.operation = self.record["operation"] = route.op
        if credentials == "missing":
            raise unauthorized("Requires authentication")
        store.count_request(route.op)
        takes_body = SCHEMAS[route.op]["body"] is not None
        if raw.strip() and not takes_body:
            self.record["problems"].append(f"{route.op} takes no body (it is ignored)")
        body = parse_body(raw) if takes_body else None
        if body is NOT_JSON:
            self.record["problems"].append("the body is not a JSON object")
            raise ApiError(400, "Problems parsing JSON")
        pairs = parse_qsl(query_string, keep_blank_values=True)
        query = check_request(route.op, pairs, body, self.record["problems"])
        call = Call(store, self.server.url, params, query, pairs, body or {})
        return self.run(route, call)

    def run(self, route: Route, call: Call) -> Reply:
        """Apply the endpoint, honouring a queued fault for its operation."""
        store = self.server.store
        fault = store.take_fault(route.op) or {}
        delay = float(fault.get("delay") or 0)
        if delay > self.server.hold_limit:
            # As GitHub does with a request it takes more than ten seconds to
            # process: it ends it, unapplied, and answers a timeout.
            time.sleep(self.server.hold_limit)
            return Reply(502, error_body(502, "Server Error"))
        if delay:
            time.sleep(delay)
        if fault.get("status") and not fault.get("after_apply"):
            return fault_reply(fault)
        with store.lock:
            reply = route.endpoint(call)
        if fault.get("status"):
            return fault_reply(fault)  # applied, but the answer is lost
        return reply

    def credentials(self) -> str:
        """ "ok", "missing" or "bad": `Bearer <token>` and `token <token>` are read."""
        given = (self.headers.get("Authorization") or "").strip()
        if not given:
            return "missing"
        scheme, _, token = given.partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "token") or not token:
            return "bad"
        if self.server.token is not None and token != self.server.token:
            return "bad"
        return "ok"

    # Control endpoints (tests only, no authentication)

    def control(self, method: str, name: str, raw: bytes) -> None:
        store = self.server.store
        routes: dict[tuple[str, str], Callable[[Any], Reply]] = {
            ("GET", "health"): lambda _: Reply(200, {"ok": True}),
            ("GET", "effects"): lambda _: Reply(200, {"effects": list(store.effects)}),
            ("GET", "requests"): lambda _: Reply(
                200, {"requests": list(store.requests)}
            ),
            ("POST", "reset"): self.control_reset,
            ("POST", "faults"): self.control_faults,
            ("POST", "issues"): self.control_issue,
        }
        route = routes.get((method, name))
        if route is None:
            return self.send_reply(
                Reply(404, {"error": f"no {method} /_control/{name}"})
            )
        with store.lock:
            reply = route(_recorded_body(raw))
        self.send_reply(reply)

    def control_reset(self, _request: Any) -> Reply:
        self.server.store.reset()
        return Reply(200, {"ok": True})

    def control_faults(self, request: Any) -> Reply:
        """Queue faults: `{"faults": [{"op", "status", "delay", "after_apply",
        "count", "message", "rate_limit", "retry_after"}]}`."""
        problems = strays(FAULTS_SCHEMA, request, "field")
        if problems:
            return Reply(400, {"error": "; ".join(p.text for p in problems)})
        self.server.store.add_faults(request["faults"])
        return Reply(200, {"faults": self.server.store.faults})

    def control_issue(self, request: Any) -> Reply:
        """Add an issue directly, not as an effect: `{"title", "body", "labels",
        "state", "user"}` (the user defaults to octocat)."""
        problems = strays(CONTROL_ISSUE_SCHEMA, request, "field")
        if problems:
            return Reply(400, {"error": "; ".join(p.text for p in problems)})
        store = self.server.store
        user = store.find_user(request.get("user", "octocat"))
        if user is None:
            return Reply(400, {"error": f"unknown user {request['user']!r}"})
        repo = store.repositories[github_data.REPOSITORY]
        issue = store.add_issue(repo, {**request, "user": user["login"]})
        return Reply(200, issue_json(self.server.url, store, repo, issue))

    # Answers and logging

    def send_reply(self, reply: Reply) -> None:
        store = self.server.store
        if self.record is not None:
            # Kept before the answer goes out: a client that reads the log right
            # after its answer finds the request there.
            self.record["status"] = reply.status
            store.requests.append(self.record)
        payload = json.dumps(reply.body).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(payload)),
            **store.rate_headers(self.operation),
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": API_VERSION,
            "X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
            **reply.headers,
        }
        # A client that gave up waiting (an injected delay) has closed the socket.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # One line per request; never the headers, which hold the token.
        path = self.path.split("?")[0]
        sys.stderr.write(
            f"github-standin {self.command} {path} {code} {self.operation or '-'}\n"
        )

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write("github-standin " + (fmt % args) + "\n")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, docs=DOCS)


SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you "
    "try again. If you reach out to GitHub Support for help, please include the "
    "request ID {}."
)


def fault_reply(fault: JSON) -> Reply:
    """An injected failure in GitHub's error shape. A 403 or 429 is, by its
    `rate_limit`: `primary` (default) the primary limit exhausted, to be retried
    after a second (`X-RateLimit-Remaining: 0`); `secondary` GitHub's secondary
    rate limit (its message, the remaining count untouched, `Retry-After` as
    `retry_after` says, 60 by default, none when null); `none` a plain refusal."""
    status = int(fault["status"])
    message = fault.get("message") or _reason(status)
    headers: dict[str, str] = {}
    kind = fault.get("rate_limit", "primary")
    retry_after = fault.get("retry_after", 1 if kind == "primary" else 60)
    if status in (403, 429) and kind == "primary":
        headers = {
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + 1),
        }
    if status in (403, 429) and kind == "secondary" and not fault.get("message"):
        message = SECONDARY_MESSAGE.format(uuid.uuid4().hex[:20].upper())
    if status in (403, 429) and kind != "none" and retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Reply(status, error_body(status, message), headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def make_server(host: str, port: int, token: str | None = None) -> GitHubStandin:
    """A bound server (port 0 picks a free one); call serve_forever() to run it.
    With `token`, only that token is accepted; without, any non-empty one."""
    return GitHubStandin((host, port), token=token)


def serve_in_thread(server: GitHubStandin) -> threading.Thread:
    """Serve from a daemon thread; stop: server.shutdown(), server.server_close()."""
    thread = threading.Thread(
        target=server.serve_forever, name="github-standin", daemon=True
    )
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument(
        "--token", default=None, help="accept only this token (default: any)"
    )
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, token=args.token)
    # Scripts read this line to learn the port: printed once bound, and flushed.
    print(f"github standin listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
