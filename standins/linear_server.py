"""A local stand-in for Linear's GraphQL API, for development and tests.

Documents are parsed, validated and executed by graphql-core against Linear's
published schema (or, where that file is absent, `linear_subset.graphql`), so a
document Linear would refuse is refused here too. Data lives in memory, seeded from
`linear_data`. Control endpoints under `/_control/` let tests read the effects log,
inject faults and add issues with hostile text.

    python -m standins.linear_server --host 127.0.0.1 --port 8002 [--api-key K]
"""

import argparse
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import graphql
from graphql import GraphQLError, GraphQLScalarType, GraphQLSchema

from . import linear_data, linear_webhooks

SUBSET_PATH = Path(__file__).with_name("linear_subset.graphql")
DEFAULT_PAGE = 50
MAX_PAGE = 250
PRIORITY_LABELS = ["No priority", "Urgent", "High", "Medium", "Low"]
UPDATABLE = {"title", "description", "priority", "stateId", "assigneeId"}


def schema_path() -> Path:
    """Linear's published schema: `LINEAR_SCHEMA_PATH`, else the shared copy next to
    the repository (`<repo>/../shared/linear/schema.graphql`)."""
    override = os.environ.get("LINEAR_SCHEMA_PATH")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "linear" / "schema.graphql"


def now() -> str:
    """The current time in Linear's timestamp format."""
    return linear_data.iso(datetime.now(UTC))


# Errors shaped like Linear's


def not_found(kind: str) -> GraphQLError:
    """Linear's answer for an id or identifier that names nothing."""
    return GraphQLError(
        f"Entity not found: {kind}",
        extensions={
            "type": "invalid input",
            "code": "INVALID_INPUT",
            "userError": True,
            "userPresentableMessage": f"Could not find referenced {kind}.",
        },
    )


def invalid(message: str) -> GraphQLError:
    """Linear's answer for input it understands but refuses."""
    return GraphQLError(
        message,
        extensions={
            "type": "invalid input",
            "code": "INVALID_INPUT",
            "userError": True,
            "userPresentableMessage": message,
        },
    )


def error_body(message: str, code: str, **extra: Any) -> dict:
    """A GraphQL error response body with one error."""
    return {"errors": [{"message": message, "extensions": {"code": code, **extra}}]}


# The store


class Store:
    """Everything the stand-in knows, guarded by one lock.

    Whole GraphQL executions run under the lock, so resolvers see and change a
    consistent store without locking themselves.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: deque[dict] = deque(maxlen=500)
        self.reset()

    def reset(self) -> None:
        """Reseed the data and forget effects, faults and recorded requests."""
        with self.lock:
            seeded = linear_data.seed()
            for kind, typename in [
                ("teams", "Team"),
                ("states", "WorkflowState"),
                ("users", "User"),
                ("issues", "Issue"),
            ]:
                for record in seeded[kind].values():
                    record["__typename"] = typename
            self.teams: dict[str, dict] = seeded["teams"]
            self.states: dict[str, dict] = seeded["states"]
            self.users: dict[str, dict] = seeded["users"]
            self.issues: dict[str, dict] = seeded["issues"]
            self.comments: dict[str, dict] = {}
            # Ids per kind; Linear never reuses one, even of something deleted.
            self.taken_ids = {
                "Issue": set(self.issues),
                "Comment": set(),
                "Webhook": set(),
            }
            # Registered with webhookCreate; what each POST to them answered.
            self.webhooks: dict[str, dict] = {}
            self.webhook_deliveries: list[dict] = []
            self.sequences = {team_id: 0 for team_id in self.teams}
            for issue in self.issues.values():
                team_id = issue["teamId"]
                self.sequences[team_id] = max(self.sequences[team_id], issue["number"])
            self.viewer_id = linear_data.stable_uuid("user:agent")
            self.effects: list[dict] = []
            self.faults: list[dict] = []
            self.sync_id = 1000.0
            self.requests.clear()

    # Lookups

    def find_issue(self, ref: str) -> dict | None:
        """An issue by UUID or identifier (case-insensitive), as Linear accepts."""
        ref = ref.strip()
        if ref in self.issues:
            return self.issues[ref]
        wanted = ref.upper()
        return next(
            (i for i in self.issues.values() if i["identifier"] == wanted), None
        )

    def require_issue(self, ref: str) -> dict:
        """The issue `ref` names, or Linear's not-found error."""
        issue = self.find_issue(ref)
        if issue is None:
            raise not_found("Issue")
        return issue

    def find_team(self, ref: str) -> dict | None:
        """A team by id or key."""
        if ref in self.teams:
            return self.teams[ref]
        return next(
            (t for t in self.teams.values() if t["key"].upper() == ref.upper()), None
        )

    def team_states(self, team_id: str) -> list[dict]:
        """The team's workflow states in board order."""
        states = [s for s in self.states.values() if s["teamId"] == team_id]
        return sorted(states, key=lambda s: s["position"])

    # Changes

    def claim_id(self, requested: str | None, kind: str) -> str:
        """The id for a new entity: the caller's (honoured once) or a fresh one."""
        try:
            claimed = str(uuid.UUID(requested) if requested else uuid.uuid4())
        except ValueError:
            raise invalid("Argument Validation Error: id must be a UUID.") from None
        if claimed in self.taken_ids[kind]:
            raise invalid(f"{kind} with id {claimed} already exists.")
        self.taken_ids[kind].add(claimed)
        return claimed

    def add_issue(self, team: dict, issue_id: str, fields: dict) -> dict:
        """Store a new issue, numbered next in its team's sequence."""
        self.sequences[team["id"]] += 1
        number = self.sequences[team["id"]]
        backlog = self.team_states(team["id"])[0]
        stamp = now()
        record = {
            "__typename": "Issue",
            "id": issue_id,
            "identifier": f"{team['key']}-{number}",
            "number": number,
            "title": fields.get("title") or "",
            "teamId": team["id"],
            "description": fields.get("description"),
            "priority": fields.get("priority") or 0,
            "stateId": fields.get("stateId") or backlog["id"],
            "assigneeId": fields.get("assigneeId"),
            "creatorId": self.viewer_id,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        self.issues[issue_id] = record
        return record

    def record_effect(self, op: str, entity: dict, identifier: str, data: dict) -> None:
        """Append an applied mutation to the effects log."""
        self.effects.append(
            {
                "op": op,
                "id": entity["id"],
                "identifier": identifier,
                "input": data,
                "at": now(),
            }
        )

    def next_sync_id(self) -> float:
        """Linear's `lastSyncId`, which grows with every change."""
        self.sync_id += 1
        return self.sync_id

    # Faults

    def add_faults(self, faults: list[dict]) -> None:
        """Queue faults; each answers `count` matching requests (default 1)."""
        with self.lock:
            for fault in faults:
                self.faults.append({"count": 1, **fault})

    def take_fault(self, fields: list[str]) -> dict | None:
        """The first queued fault matching one of the document's root fields."""
        with self.lock:
            for fault in self.faults:
                if fault.get("op", "*") == "*" or fault.get("op") in fields:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                    return dict(fault)
        return None


# Filtering, ordering and pagination

# Filter fields that point at another entity: (kind, how to reach it).
RELATIONS = {
    "issue": {
        "team": ("team", lambda s, r: s.teams.get(r["teamId"])),
        "state": ("state", lambda s, r: s.states.get(r["stateId"])),
        "assignee": ("user", lambda s, r: s.users.get(r["assigneeId"] or "")),
        "creator": ("user", lambda s, r: s.users.get(r["creatorId"] or "")),
    },
    "state": {"team": ("team", lambda s, r: s.teams.get(r["teamId"]))},
    "team": {},
    "user": {},
}
COMPUTED = {"user": {"isMe": lambda s, r: r["id"] == s.viewer_id}}


def _fold(value: Any) -> str:
    return str(value if value is not None else "").casefold()


def _ordered(value: Any, expected: Any, test: Any) -> bool:
    return value is not None and test(value, expected)


COMPARATORS = {
    "eq": lambda v, e: v == e,
    "neq": lambda v, e: v != e,
    "in": lambda v, e: v in e,
    "nin": lambda v, e: v not in e,
    "null": lambda v, e: (v is None) == e,
    "eqIgnoreCase": lambda v, e: _fold(v) == _fold(e),
    "neqIgnoreCase": lambda v, e: _fold(v) != _fold(e),
    "contains": lambda v, e: e in (v or ""),
    "notContains": lambda v, e: e not in (v or ""),
    "containsIgnoreCase": lambda v, e: _fold(e) in _fold(v),
    "notContainsIgnoreCase": lambda v, e: _fold(e) not in _fold(v),
    "startsWith": lambda v, e: (v or "").startswith(e),
    "startsWithIgnoreCase": lambda v, e: _fold(v).startswith(_fold(e)),
    "endsWith": lambda v, e: (v or "").endswith(e),
    "lt": lambda v, e: _ordered(v, e, lambda a, b: a < b),
    "lte": lambda v, e: _ordered(v, e, lambda a, b: a <= b),
    "gt": lambda v, e: _ordered(v, e, lambda a, b: a > b),
    "gte": lambda v, e: _ordered(v, e, lambda a, b: a >= b),
}


def matches(store: Store, kind: str, record: dict, condition: dict | None) -> bool:
    """Whether `record` passes a Linear filter like `{"state": {"name": {...}}}`."""
    return all(
        _matches_field(store, kind, record, key, value)
        for key, value in (condition or {}).items()
    )


def _matches_field(store: Store, kind: str, record: dict, key: str, value: Any) -> bool:
    if key == "and":
        return all(matches(store, kind, record, part) for part in value)
    if key == "or":
        return any(matches(store, kind, record, part) for part in value)
    if key in RELATIONS[kind]:
        related_kind, reach = RELATIONS[kind][key]
        return _matches_related(store, related_kind, reach(store, record), value)
    if key in COMPUTED.get(kind, {}):
        return compare(COMPUTED[kind][key](store, record), value)
    if key not in record:
        raise invalid(f"The Linear stand-in cannot filter {kind}s on {key!r}.")
    return compare(record[key], value)


def _matches_related(
    store: Store, kind: str, related: dict | None, value: dict
) -> bool:
    rest = {k: v for k, v in value.items() if k != "null"}
    if "null" in value and value["null"] != (related is None):
        return False
    if related is None:
        return "null" in value and not rest
    return matches(store, kind, related, rest)


def compare(value: Any, comparator: dict) -> bool:
    """Apply a Linear comparator such as `{"eqIgnoreCase": "todo"}`."""
    for name, expected in comparator.items():
        test = COMPARATORS.get(name)
        if test is None:
            raise invalid(f"The Linear stand-in does not support {name!r} filters.")
        if not test(value, expected):
            return False
    return True


def connection(items: list[dict], args: dict) -> dict:
    """A Relay connection over `items`, paged with first/after or last/before."""
    ids = [item["id"] for item in items]
    start = ids.index(args["after"]) + 1 if args.get("after") in ids else 0
    end = ids.index(args["before"]) if args.get("before") in ids else len(items)
    if args.get("last") is not None:
        start = max(start, end - min(args["last"], MAX_PAGE))
    else:
        end = min(end, start + min(args.get("first") or DEFAULT_PAGE, MAX_PAGE))
    window = items[start:end]
    return {
        "nodes": window,
        "edges": [{"node": item, "cursor": item["id"]} for item in window],
        "pageInfo": {
            "startCursor": window[0]["id"] if window else None,
            "endCursor": window[-1]["id"] if window else None,
            "hasPreviousPage": start > 0,
            "hasNextPage": end < len(items),
        },
    }


def newest_first(issues: list[dict], order_by: str | None) -> list[dict]:
    """Issues sorted by `orderBy` (createdAt unless updatedAt), newest first."""
    key = "updatedAt" if order_by == "updatedAt" else "createdAt"
    return sorted(issues, key=lambda issue: issue[key], reverse=True)


# Query resolvers (graphql-core passes `info.context`, the Store)


def resolve_issue(_: Any, info: Any, id: str) -> dict:
    return info.context.require_issue(id)


def resolve_issues(_: Any, info: Any, **args: Any) -> dict:
    store = info.context
    chosen = [
        i
        for i in store.issues.values()
        if matches(store, "issue", i, args.get("filter"))
    ]
    return connection(newest_first(chosen, args.get("orderBy")), args)


def resolve_search_issues(_: Any, info: Any, term: str, **args: Any) -> dict:
    """Every word of `term` must appear in the identifier, title or description;
    title hits rank first, then the most recently updated."""
    store = info.context
    words = [w.casefold() for w in term.split()]
    hits = []
    for issue in store.issues.values():
        text = _fold(f"{issue['identifier']} {issue['title']} {issue['description']}")
        team_ok = not args.get("teamId") or issue["teamId"] == args["teamId"]
        if team_ok and all(w in text for w in words):
            if matches(store, "issue", issue, args.get("filter")):
                hits.append(issue)
    hits = newest_first(hits, args.get("orderBy") or "updatedAt")
    hits.sort(key=lambda i: not all(w in _fold(i["title"]) for w in words))
    result = connection(hits, args)
    result["totalCount"] = float(len(hits))
    result["archivePayload"] = {
        "archive": "{}",
        "totalCount": 0.0,
        "databaseVersion": 0.0,
        "includesDependencies": [],
    }
    return result


def resolve_team(_: Any, info: Any, id: str) -> dict:
    team = info.context.find_team(id)
    if team is None:
        raise not_found("Team")
    return team


def _listing(kind: str, attribute: str) -> Any:
    """A resolver for a top-level list (`teams`, `users`, `workflowStates`)."""

    def resolve(_: Any, info: Any, **args: Any) -> dict:
        store = info.context
        records = list(getattr(store, attribute).values())
        chosen = [r for r in records if matches(store, kind, r, args.get("filter"))]
        return connection(chosen, args)

    return resolve


def resolve_viewer(_: Any, info: Any) -> dict:
    return info.context.users[info.context.viewer_id]


def resolve_comment(_: Any, info: Any, id: str | None = None, **_args: Any) -> dict:
    comment = info.context.comments.get(id or "")
    if comment is None:
        raise not_found("Comment")
    return comment


# Mutation resolvers


def resolve_issue_create(_: Any, info: Any, input: dict) -> dict:
    store = info.context
    team = store.find_team(input["teamId"])
    if team is None or team["id"] != input["teamId"]:
        raise not_found("Team")
    if not (input.get("title") or "").strip():
        raise invalid("Argument Validation Error: title should not be empty.")
    _check_fields(store, team["id"], input)
    issue_id = store.claim_id(input.get("id"), "Issue")
    issue = store.add_issue(team, issue_id, input)
    store.record_effect("issueCreate", issue, issue["identifier"], dict(input))
    _announce(store, "create", issue, team)
    return {"success": True, "lastSyncId": store.next_sync_id(), "issue": issue}


def _announce(store: Store, action: str, issue: dict, team: dict) -> None:
    """Send the issue's event to every enabled webhook subscribed to issues of its
    team (one scoped to no team hears every team)."""
    for hook in store.webhooks.values():
        if not hook["enabled"] or "Issue" not in hook["resourceTypes"]:
            continue
        if hook["teamId"] and hook["teamId"] != team["id"]:
            continue
        body = linear_webhooks.issue_body(
            action, issue, team, store.states[issue["stateId"]], hook, issue_url(issue)
        )
        linear_webhooks.send_later(hook, body, store.webhook_deliveries)


def resolve_webhook_create(_: Any, info: Any, input: dict) -> dict:
    store = info.context
    url = input.get("url") or ""
    if not url.startswith(("http://", "https://")):
        raise invalid("Argument Validation Error: url must be a URL address.")
    team_id = input.get("teamId")
    if team_id is not None:
        team = store.find_team(team_id)
        if team is None:
            raise not_found("Team")
        team_id = team["id"]
    stamp = now()
    hook = {
        "__typename": "Webhook",
        "id": store.claim_id(input.get("id"), "Webhook"),
        "url": url,
        "label": input.get("label"),
        "enabled": input.get("enabled", True) is not False,
        "secret": input.get("secret") or linear_webhooks.new_secret(),
        "resourceTypes": list(input.get("resourceTypes") or []),
        "teamId": team_id,
        "teamIds": [team_id] if team_id else [],
        "allPublicTeams": bool(input.get("allPublicTeams")),
        "archivedAt": None,
        "creator": None,
        "failures": [],
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    store.webhooks[hook["id"]] = hook
    store.record_effect("webhookCreate", hook, url, {**input, "secret": "<hidden>"})
    return {"success": True, "lastSyncId": store.next_sync_id(), "webhook": hook}


def resolve_webhook_delete(_: Any, info: Any, id: str) -> dict:
    store = info.context
    hook = store.webhooks.pop(id, None)
    if hook is None:
        raise not_found("Webhook")
    store.record_effect("webhookDelete", hook, hook["url"], {"id": id})
    return {"success": True, "lastSyncId": store.next_sync_id(), "entityId": id}


def resolve_issue_update(_: Any, info: Any, id: str, input: dict) -> dict:
    store = info.context
    issue = store.require_issue(id)
    unsupported = sorted(set(input) - UPDATABLE)
    if unsupported:
        raise invalid(f"The Linear stand-in cannot update {', '.join(unsupported)}.")
    _check_fields(store, issue["teamId"], input)
    issue.update(input)
    issue["updatedAt"] = now()
    store.record_effect("issueUpdate", issue, issue["identifier"], dict(input))
    return {"success": True, "lastSyncId": store.next_sync_id(), "issue": issue}


def resolve_issue_delete(
    _: Any, info: Any, id: str, permanentlyDelete: bool | None = None
) -> dict:
    store = info.context
    issue = store.require_issue(id)
    # Linear would keep a trashed copy for 30 days; here it is simply gone.
    del store.issues[issue["id"]]
    data = {} if permanentlyDelete is None else {"permanentlyDelete": permanentlyDelete}
    store.record_effect("issueDelete", issue, issue["identifier"], data)
    return {"success": True, "lastSyncId": store.next_sync_id(), "entity": issue}


def resolve_comment_create(_: Any, info: Any, input: dict) -> dict:
    store = info.context
    issue = store.require_issue(input.get("issueId") or "")
    if not (input.get("body") or "").strip():
        raise invalid("Argument Validation Error: body should not be empty.")
    comment_id = store.claim_id(input.get("id"), "Comment")
    stamp = now()
    comment = {
        "__typename": "Comment",
        "id": comment_id,
        "body": input["body"],
        "issueId": issue["id"],
        "userId": store.viewer_id,
        "createdAt": stamp,
        "updatedAt": stamp,
        "url": f"{issue_url(issue)}#comment-{comment_id[:8]}",
    }
    store.comments[comment_id] = comment
    store.record_effect("commentCreate", comment, issue["identifier"], dict(input))
    return {"success": True, "lastSyncId": store.next_sync_id(), "comment": comment}


def _check_fields(store: Store, team_id: str, data: dict) -> None:
    """Refuse states of another team, unknown people and priorities beyond 0-4."""
    state_id = data.get("stateId")
    if state_id is not None and store.states.get(state_id, {}).get("teamId") != team_id:
        raise not_found("WorkflowState")
    assignee_id = data.get("assigneeId")
    if assignee_id is not None and assignee_id not in store.users:
        raise not_found("User")
    priority = data.get("priority")
    if priority is not None and not 0 <= priority <= 4:
        raise invalid("Argument Validation Error: priority must be between 0 and 4.")


# Field resolvers for relations and derived values


def issue_url(issue: dict) -> str:
    slug = "-".join("".join(c if c.isalnum() else " " for c in issue["title"]).split())
    return (
        f"https://linear.app/{linear_data.ORGANIZATION}/issue/"
        f"{issue['identifier']}/{slug.lower()[:60]}"
    )


def _related(attribute: str, key: str) -> Any:
    def resolve(record: dict, info: Any, **_args: Any) -> dict | None:
        return getattr(info.context, attribute).get(record.get(key) or "")

    return resolve


def _team_states(team: dict, info: Any, **args: Any) -> dict:
    store = info.context
    states = [
        s
        for s in store.team_states(team["id"])
        if matches(store, "state", s, args.get("filter"))
    ]
    return connection(states, args)


def _team_issues(team: dict, info: Any, **args: Any) -> dict:
    store = info.context
    issues = [
        i
        for i in store.issues.values()
        if i["teamId"] == team["id"] and matches(store, "issue", i, args.get("filter"))
    ]
    return connection(newest_first(issues, args.get("orderBy")), args)


ISSUE_FIELDS = {
    "state": _related("states", "stateId"),
    "team": _related("teams", "teamId"),
    "assignee": _related("users", "assigneeId"),
    "creator": _related("users", "creatorId"),
    "url": lambda issue, _info: issue_url(issue),
    "branchName": lambda issue, _info: issue["identifier"].lower(),
    "priorityLabel": lambda issue, _info: PRIORITY_LABELS[issue["priority"]],
    "labelIds": lambda _issue, _info: [],
    "previousIdentifiers": lambda _issue, _info: [],
}

FIELD_RESOLVERS = {
    "Query": {
        "issue": resolve_issue,
        "issues": resolve_issues,
        "searchIssues": resolve_search_issues,
        "team": resolve_team,
        "teams": _listing("team", "teams"),
        "users": _listing("user", "users"),
        "workflowStates": _listing("state", "states"),
        "viewer": resolve_viewer,
        "comment": resolve_comment,
    },
    "Mutation": {
        "issueCreate": resolve_issue_create,
        "issueUpdate": resolve_issue_update,
        "issueDelete": resolve_issue_delete,
        "commentCreate": resolve_comment_create,
        "webhookCreate": resolve_webhook_create,
        "webhookDelete": resolve_webhook_delete,
    },
    "Webhook": {"team": _related("teams", "teamId")},
    "Issue": ISSUE_FIELDS,
    "IssueSearchResult": ISSUE_FIELDS,
    "Team": {"states": _team_states, "issues": _team_issues},
    "WorkflowState": {"team": _related("teams", "teamId")},
    "User": {"isMe": lambda user, info: user["id"] == info.context.viewer_id},
    "Comment": {
        "issue": _related("issues", "issueId"),
        "user": _related("users", "userId"),
    },
}


BUILT_IN = set(graphql.specified_scalar_types)
SCALAR_HOOKS = ("serialize", "parse_value", "coerce_output_value", "coerce_input_value")


def _pass_through(value: Any, *_args: Any) -> Any:
    return value


@lru_cache(maxsize=4)
def load_schema(path: str) -> GraphQLSchema:
    """Build the schema from SDL at `path` and wire the stand-in's resolvers in.

    Cached: building Linear's full schema takes a couple of seconds, and resolvers
    find the store through the execution context, so servers can share it.
    """
    schema = graphql.build_schema(Path(path).read_text(encoding="utf-8"))
    for type_name, resolvers in FIELD_RESOLVERS.items():
        fields = getattr(schema.get_type(type_name), "fields", {})
        for field_name, resolver in resolvers.items():
            if field_name in fields:
                fields[field_name].resolve = resolver
    # Custom scalars (DateTime, JSON, TimelessDate...) carry plain JSON values here:
    # timestamps are already ISO strings. graphql-core 3.3 renamed the hooks.
    for named in schema.type_map.values():
        if isinstance(named, GraphQLScalarType) and named.name not in BUILT_IN:
            for hook in SCALAR_HOOKS:
                if hasattr(named, hook):
                    setattr(named, hook, _pass_through)
    return schema


def default_schema() -> GraphQLSchema:
    """Linear's published schema when it is present, else the shipped subset."""
    path = schema_path()
    return load_schema(str(path if path.is_file() else SUBSET_PATH))


# HTTP


class LinearStandin(ThreadingHTTPServer):
    """The HTTP server; `store` holds the data, `url` is the GraphQL endpoint."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        api_key: str | None = None,
        schema: GraphQLSchema | None = None,
    ) -> None:
        super().__init__(address, Handler)
        self.api_key = api_key
        self.schema = schema or default_schema()
        self.store = Store()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/graphql"


class Handler(BaseHTTPRequestHandler):
    """Routes /graphql and the /_control/ endpoints."""

    server: LinearStandin
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
    operation = "-"

    def setup(self) -> None:
        super().setup()
        # A reply is two writes (headers, then body): with Nagle's algorithm the
        # body waits for the client's delayed ACK of the headers, about 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.operation = "-"
        store = self.server.store
        routes = {
            "/_control/effects": lambda: {"effects": list(store.effects)},
            "/_control/requests": lambda: {"requests": list(store.requests)},
            "/_control/health": lambda: {"ok": True},
            "/_control/webhook_deliveries": lambda: {
                "deliveries": list(store.webhook_deliveries)
            },
        }
        with store.lock:
            answer = routes.get(self.path.split("?")[0])
            if answer is None:
                return self.send_json(404, {"error": f"no GET {self.path}"})
            self.send_json(200, answer())

    def do_POST(self) -> None:
        self.operation = "-"
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        routes = {
            "/graphql": self.graphql,
            "/_control/reset": self.control_reset,
            "/_control/faults": self.control_faults,
            "/_control/issues": self.control_issue,
        }
        route = routes.get(self.path.split("?")[0])
        if route is None:
            return self.send_json(404, {"error": f"no POST {self.path}"})
        route(body)

    # GraphQL

    def graphql(self, raw: bytes) -> None:
        """Authenticate, parse, validate, apply faults and execute one request."""
        store = self.server.store
        request = _json_or_text(raw)
        with store.lock:
            store.requests.append({"headers": dict(self.headers), "body": request})
        refusal = self.authenticate()
        if refusal is not None:
            return self.send_json(400, refusal)
        if not isinstance(request, dict) or not isinstance(request.get("query"), str):
            body = error_body("Must provide query string.", "BAD_USER_INPUT")
            return self.send_json(400, body)
        prepared = self.prepare(request)
        if prepared is not None:
            self.run(request, *prepared)

    def authenticate(self) -> dict | None:
        """None when the Authorization header is acceptable, else Linear's error."""
        given = (self.headers.get("Authorization") or "").strip()
        if not given:
            message = "Authentication required, not authenticated"
        elif self.server.api_key is not None and given != self.server.api_key:
            message = "Authentication failed: invalid API key"
        else:
            return None
        return error_body(
            message,
            "AUTHENTICATION_ERROR",
            type="authentication error",
            userPresentableMessage="You need to authenticate to access this operation.",
        )

    def prepare(self, request: dict) -> tuple[Any, list[str]] | None:
        """The parsed, validated document and its root fields; None once refused."""
        schema = self.server.schema
        try:
            document = graphql.parse(request["query"])
        except GraphQLError as exc:
            self.send_json(400, error_body(exc.message, "GRAPHQL_PARSE_FAILED"))
            return None
        problems = graphql.validate(schema, document)
        if problems:
            code = {"code": "GRAPHQL_VALIDATION_FAILED"}
            errors = [{**p.formatted, "extensions": code} for p in problems]
            self.send_json(400, {"errors": errors})
            return None
        fields = root_fields(document, request.get("operationName"))
        self.operation = ",".join(fields) or "-"
        return document, fields

    def run(self, request: dict, document: Any, fields: list[str]) -> None:
        """Execute, honouring a queued fault for one of the root fields."""
        store = self.server.store
        fault = store.take_fault(fields) or {}
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault.get("status") and not fault.get("after_apply"):
            return self.send_fault(fault)
        with store.lock:
            result = graphql.execute(
                self.server.schema,
                document,
                context_value=store,
                variable_values=request.get("variables") or {},
                operation_name=request.get("operationName"),
            )
        if fault.get("status"):
            return self.send_fault(fault)  # applied, but the answer is lost
        self.send_json(200, result.formatted)

    def send_fault(self, fault: dict) -> None:
        """An injected failure: Linear-style JSON for 4xx, a proxy's text for 5xx."""
        status = int(fault["status"])
        if status >= 500:
            text = fault.get("message") or f"{status} {_reason(status)}"
            return self.send_text(status, text)
        code = fault.get("code") or (
            "RATELIMITED" if status == 429 else "INVALID_INPUT"
        )
        message = fault.get("message") or (
            "Rate limit exceeded" if status == 429 else "Injected failure"
        )
        self.send_json(status, error_body(message, code))

    # Control endpoints (tests only)

    def control_reset(self, _raw: bytes) -> None:
        self.server.store.reset()
        self.send_json(200, {"ok": True})

    def control_faults(self, raw: bytes) -> None:
        request = _json_or_text(raw)
        faults = request.get("faults") if isinstance(request, dict) else None
        if not isinstance(faults, list) or not all(isinstance(f, dict) for f in faults):
            return self.send_json(400, {"error": 'expected {"faults": [{...}]}'})
        self.server.store.add_faults(faults)
        self.send_json(200, {"faults": self.server.store.faults})

    def control_issue(self, raw: bytes) -> None:
        """Add an issue directly (not an effect): `{"title", "description", "team"}`."""
        request = _json_or_text(raw)
        if not isinstance(request, dict) or not request.get("title"):
            return self.send_json(400, {"error": 'expected {"title": ...}'})
        store = self.server.store
        with store.lock:
            team = store.find_team(str(request.get("team") or "ENG"))
            if team is None:
                return self.send_json(400, {"error": "unknown team"})
            fields = {k: request.get(k) for k in ("title", "description", "priority")}
            issue_id = store.claim_id(None, "Issue")
            issue = store.add_issue(team, issue_id, fields)
            self.send_json(200, {k: issue[k] for k in ("id", "identifier", "title")})

    # Answers and logging

    def send_json(self, status: int, body: Any) -> None:
        self.send_bytes(status, json.dumps(body).encode(), "application/json")

    def send_text(self, status: int, text: str) -> None:
        self.send_bytes(status, text.encode(), "text/plain; charset=utf-8")

    def send_bytes(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # One line per request; the request line never holds the Authorization.
        sys.stderr.write(
            f"linear-standin {self.command} {self.path} {code} {self.operation}\n"
        )

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write("linear-standin " + (fmt % args) + "\n")


def root_fields(document: graphql.DocumentNode, name: str | None) -> list[str]:
    """The top-level fields the chosen operation asks for, which faults match on."""
    operation = graphql.get_operation_ast(document, name)
    if operation is None:
        return []
    selections = operation.selection_set.selections
    return [s.name.value for s in selections if isinstance(s, graphql.FieldNode)]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def make_server(host: str, port: int, api_key: str | None = None) -> LinearStandin:
    """A bound server (port 0 picks a free one); call serve_forever() to run it."""
    return LinearStandin((host, port), api_key=api_key)


def serve_in_thread(server: LinearStandin) -> threading.Thread:
    """Serve from a daemon thread; stop: server.shutdown(), server.server_close()."""
    thread = threading.Thread(
        target=server.serve_forever, name="linear-standin", daemon=True
    )
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--api-key", default=None, help="accept only this key")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, api_key=args.api_key)
    print(f"linear standin listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
