"""The Linear GraphQL client behind the agent's tools.

Every document is a module-level constant listed in `DOCUMENTS`, so a test validates
all of them against Linear's published schema. Failures surface as `TransientError`
(worth retrying) or `PermanentError` (not), with messages safe to show to the room:
they name the operation and never contain the API key.
"""

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import requests

from .errors import PermanentError, ServiceError, TransientError

_ISSUE_SELECTION = """
  id
  identifier
  title
  description
  priority
  url
  trashed
  updatedAt
  state { id name type }
  assignee { id name displayName email }
  team { id key name }
"""

ISSUE_FIELDS = "fragment IssueFields on Issue {" + _ISSUE_SELECTION + "}\n"
# searchIssues answers a distinct type with the same fields, so it needs its own.
SEARCH_RESULT_FIELDS = (
    "fragment SearchResultFields on IssueSearchResult {" + _ISSUE_SELECTION + "}\n"
)

SEARCH_ISSUES = (
    """
query SearchIssues($term: String!, $first: Int!) {
  searchIssues(term: $term, first: $first) {
    nodes { ...SearchResultFields }
  }
}
"""
    + SEARCH_RESULT_FIELDS
)

RECENT_ISSUES = (
    """
query RecentIssues($first: Int!) {
  issues(first: $first, orderBy: updatedAt) {
    nodes { ...IssueFields }
  }
}
"""
    + ISSUE_FIELDS
)

GET_ISSUE = (
    """
query Issue($id: String!) {
  issue(id: $id) { ...IssueFields }
}
"""
    + ISSUE_FIELDS
)

ISSUE_TEAM_STATES = """
query IssueTeamStates($id: String!) {
  issue(id: $id) {
    id
    identifier
    team {
      id
      key
      states(first: 100) { nodes { id name type } }
    }
  }
}
"""

TEAMS = """
query Teams {
  teams(first: 100) {
    nodes { id key name }
  }
}
"""

USERS = """
query Users {
  users(first: 250) {
    nodes { id name displayName email active }
  }
}
"""

VIEWER = """
query Viewer {
  viewer { id name displayName email }
}
"""

CREATE_ISSUE = (
    """
mutation IssueCreate($input: IssueCreateInput!) {
  issueCreate(input: $input) {
    success
    issue { ...IssueFields }
  }
}
"""
    + ISSUE_FIELDS
)

UPDATE_ISSUE = (
    """
mutation IssueUpdate($id: String!, $input: IssueUpdateInput!) {
  issueUpdate(id: $id, input: $input) {
    success
    issue { ...IssueFields }
  }
}
"""
    + ISSUE_FIELDS
)

DELETE_ISSUE = """
mutation IssueDelete($id: String!) {
  issueDelete(id: $id) {
    success
  }
}
"""

CREATE_COMMENT = """
mutation CommentCreate($input: CommentCreateInput!) {
  commentCreate(input: $input) {
    success
    comment { id body url createdAt issue { identifier } }
  }
}
"""

GET_COMMENT = """
query Comment($id: String!) {
  comment(id: $id) { id body url createdAt issue { identifier } }
}
"""

DOCUMENTS: dict[str, str] = {
    "SearchIssues": SEARCH_ISSUES,
    "RecentIssues": RECENT_ISSUES,
    "Issue": GET_ISSUE,
    "IssueTeamStates": ISSUE_TEAM_STATES,
    "Teams": TEAMS,
    "Users": USERS,
    "Viewer": VIEWER,
    "IssueCreate": CREATE_ISSUE,
    "IssueUpdate": UPDATE_ISSUE,
    "IssueDelete": DELETE_ISSUE,
    "CommentCreate": CREATE_COMMENT,
    "Comment": GET_COMMENT,
}

_RATE_LIMITED = "RATELIMITED"
_AUTHENTICATION = {"AUTHENTICATION_ERROR", "FORBIDDEN"}
_MAX_DETAIL = 300


def schema_path() -> Path:
    """Where Linear's published schema lives: `LINEAR_SCHEMA_PATH`, else the copy
    shared next to the repository (`<repo>/../shared/linear/schema.graphql`)."""
    override = os.environ.get("LINEAR_SCHEMA_PATH")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "linear" / "schema.graphql"


# What approvers see of an issue a call acts on.
PREVIEW_FIELDS = ("identifier", "title", "state", "updated_at")


class NotFoundError(PermanentError):
    """Linear answered "Entity not found" for the issue or comment asked about."""


# Writes Linear takes no idempotency id for: a retry must wait until one an
# interrupted attempt sent can no longer land before reading back.
UNKEYED_WRITES = ("issueUpdate", "issueDelete")


class LinearClient:
    """A small synchronous client for the parts of Linear the agent uses."""

    def __init__(self, api_url: str, api_key: str, timeout: float = 15.0) -> None:
        self._api_url = api_url
        self._api_key = api_key
        self._timeout = timeout
        # Hears of each write that carries no idempotency id (issueUpdate,
        # issueDelete): True just before it leaves, False once Linear answered it
        # (applied or refused, so it cannot land later). See the executors' `run`.
        self.sending: Callable[[bool], None] | None = None
        self._session = requests.Session()
        # Personal API keys go in the header as they are; only OAuth uses "Bearer".
        self._session.headers.update(
            {
                "Authorization": api_key,
                "Content-Type": "application/json",
                "User-Agent": "agentsite-linear/0.1",
            }
        )

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()

    # Reading

    def search_issues(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Issues matching `query` (Linear's full-text search); an empty query lists
        the most recently updated ones."""
        first = max(1, min(int(limit), 50))
        term = query.strip()
        if not term:
            data = self._execute("issues", RECENT_ISSUES, {"first": first})
            nodes = data["issues"]["nodes"]
        else:
            variables = {"term": term, "first": first}
            data = self._execute("searchIssues", SEARCH_ISSUES, variables)
            nodes = data["searchIssues"]["nodes"]
        return [_issue(node) for node in nodes if not node.get("trashed")]

    def get_issue(self, issue_id: str) -> dict[str, Any] | None:
        """The issue with this identifier ("ENG-3") or UUID, None if there is none.

        Issues in the trash count as gone: that is where `delete_issue` puts them.
        """
        try:
            data = self._execute("issue", GET_ISSUE, {"id": issue_id.strip()})
        except NotFoundError:
            return None
        node = data.get("issue")
        if not node or node.get("trashed"):
            return None
        return _issue(node)

    def preview(self, issue_id: str) -> dict[str, Any] | None:
        """What an action on `issue_id` touches, for approvers; None if missing."""
        issue = self.get_issue(issue_id)
        if issue is None:
            return None
        return {k: issue[k] for k in PREVIEW_FIELDS}

    def teams(self) -> list[dict[str, Any]]:
        """Every team the key can see, as `{"id", "key", "name"}`."""
        data = self._execute("teams", TEAMS)
        return [
            {"id": t["id"], "key": t["key"], "name": t["name"]}
            for t in data["teams"]["nodes"]
        ]

    def viewer(self) -> dict[str, Any]:
        """The user who owns the API key: `{"id", "name", "displayName", "email"}`."""
        return dict(self._execute("viewer", VIEWER)["viewer"])

    # Writing

    def create_issue(
        self,
        *,
        idempotency_id: str,
        title: str,
        description: str = "",
        team: str | None = None,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """Create an issue, or return the one an earlier attempt with the same
        `idempotency_id` (a UUID) already created.

        `team` is a key, name or id; by default the first team Linear lists.
        """
        issue_uuid = _require_uuid(idempotency_id)
        team_id = self._team_id(team)
        payload: dict[str, Any] = {"id": issue_uuid, "teamId": team_id}
        payload.update(title=title, description=description)
        if priority is not None:
            payload["priority"] = int(priority)
        try:
            data = self._execute("issueCreate", CREATE_ISSUE, {"input": payload})
        except PermanentError:
            # Linear refuses an id it already has: that issue is ours, from an
            # attempt whose answer was lost. Anything else is a real refusal.
            existing = self.get_issue(issue_uuid)
            if existing is None:
                raise
            return existing
        return _issue(self._payload("issueCreate", data, "issue"))

    def update_issue(
        self,
        issue_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        state: str | None = None,
        priority: int | None = None,
        assignee: str | None = None,
    ) -> dict[str, Any]:
        """Change the given fields and return the updated issue.

        `state` is a workflow state name of the issue's team ("In Progress");
        `assignee` a name, display name or email, "me" for the key's owner, or ""
        to unassign.
        """
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if description is not None:
            changes["description"] = description
        if priority is not None:
            changes["priority"] = int(priority)
        if state is not None:
            changes["stateId"] = self._state_id(issue_id, state)
        if assignee is not None:
            changes["assigneeId"] = self._user_id(assignee)
        if not changes:
            raise PermanentError("Linear issueUpdate failed: nothing to change.")
        variables = {"id": issue_id.strip(), "input": changes}
        data = self._execute("issueUpdate", UPDATE_ISSUE, variables)
        return _issue(self._payload("issueUpdate", data, "issue"))

    def delete_issue(self, issue_id: str) -> dict[str, Any]:
        """Move the issue to Linear's trash (recoverable for 30 days).

        Returns `{"deleted": identifier, "title": title}`, read before deleting so
        the answer names what went. Raises NotFoundError if there is no such issue.
        """
        issue = self.get_issue(issue_id)
        if issue is None:
            raise NotFoundError(
                f"Linear issueDelete failed: no issue {issue_id!r} "
                "(it may already be deleted)."
            )
        data = self._execute("issueDelete", DELETE_ISSUE, {"id": issue["id"]})
        if not data.get("issueDelete", {}).get("success"):
            raise PermanentError(
                "Linear issueDelete failed: Linear reported no success."
            )
        return {"deleted": issue["identifier"], "title": issue["title"]}

    def add_comment(
        self, *, idempotency_id: str, issue_id: str, body: str
    ) -> dict[str, Any]:
        """Comment on an issue once per `idempotency_id` (a UUID).

        Returns `{"id", "issue", "body", "url"}` with the issue's identifier.
        """
        comment_uuid = _require_uuid(idempotency_id)
        issue = self.get_issue(issue_id)
        if issue is None:
            raise NotFoundError(f"Linear commentCreate failed: no issue {issue_id!r}.")
        payload = {"id": comment_uuid, "issueId": issue["id"], "body": body}
        try:
            data = self._execute("commentCreate", CREATE_COMMENT, {"input": payload})
        except PermanentError:
            # As with issues: a refused id may be our own earlier comment.
            existing = self._comment(comment_uuid)
            if existing is None:
                raise
            return existing
        return _comment(self._payload("commentCreate", data, "comment"))

    # Lookups behind the public methods

    def _comment(self, comment_id: str) -> dict[str, Any] | None:
        try:
            data = self._execute("comment", GET_COMMENT, {"id": comment_id})
        except NotFoundError:
            return None
        node = data.get("comment")
        return _comment(node) if node else None

    def _team_id(self, team: str | None) -> str:
        teams = self.teams()
        if not teams:
            raise PermanentError("Linear issueCreate failed: the key sees no teams.")
        if team is None:
            return cast(str, teams[0]["id"])
        wanted = team.strip().casefold()
        for candidate in teams:
            if wanted in (v.casefold() for v in candidate.values()):
                return cast(str, candidate["id"])
        keys = ", ".join(t["key"] for t in teams)
        raise PermanentError(
            f"Linear issueCreate failed: no team {team!r}; teams are {keys}."
        )

    def _state_id(self, issue_id: str, state: str) -> str:
        try:
            data = self._execute("issue", ISSUE_TEAM_STATES, {"id": issue_id.strip()})
        except NotFoundError:
            raise NotFoundError(
                f"Linear issueUpdate failed: no issue {issue_id!r}."
            ) from None
        states = data["issue"]["team"]["states"]["nodes"]
        wanted = state.strip().casefold()
        for candidate in states:
            if candidate["name"].casefold() == wanted:
                return cast(str, candidate["id"])
        names = ", ".join(s["name"] for s in states)
        raise PermanentError(
            f"Linear issueUpdate failed: no state {state!r}; states are {names}."
        )

    def _user_id(self, assignee: str) -> str | None:
        wanted = assignee.strip().casefold()
        if not wanted:
            return None  # an empty name unassigns
        if wanted == "me":
            return cast(str, self.viewer()["id"])
        users = self._execute("users", USERS)["users"]["nodes"]
        exact = [u for u in users if wanted in _user_names(u)]
        # A first name alone is accepted when it picks out one person.
        matches = exact or [
            u for u in users if u["name"].casefold().split(" ")[0] == wanted
        ]
        if len(matches) == 1:
            return cast(str, matches[0]["id"])
        known = ", ".join(u["name"] for u in (matches or users))
        problem = "is ambiguous" if matches else "matches nobody"
        raise PermanentError(
            f"Linear issueUpdate failed: assignee {assignee!r} {problem}; "
            f"people are {known}."
        )

    # Transport

    def _execute(
        self, operation: str, document: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST one document and return its `data`, or raise a ServiceError."""
        body = {"query": document, "variables": variables or {}}
        sending = self.sending if operation in UNKEYED_WRITES else None
        if sending is not None:
            sending(True)
        try:
            response = self._session.post(
                self._api_url, json=body, timeout=self._timeout
            )
        except requests.Timeout:
            detail = f"no answer within {self._timeout:g} s"
            raise TransientError(self._message(operation, detail)) from None
        except requests.RequestException as exc:
            detail = f"could not reach Linear ({type(exc).__name__})"
            raise TransientError(self._message(operation, detail)) from None
        if sending is not None and response.status_code < 500:
            sending(False)
        return self._data(operation, response)

    def _data(self, operation: str, response: requests.Response) -> dict[str, Any]:
        """Turn an HTTP answer into `data` or the right kind of ServiceError."""
        status = response.status_code
        body = _json(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        errors = errors if isinstance(errors, list) and errors else None
        if status == 429 or status >= 500 or _has_code(errors, {_RATE_LIMITED}):
            detail = f"HTTP {status}" if status >= 400 else "rate limited"
            if errors:
                detail = f"{detail}: {_describe(errors)}"
            raise TransientError(self._message(operation, detail))
        if errors:
            raise self._refusal(operation, status, errors)
        data = body.get("data") if isinstance(body, dict) else None
        if status >= 400 or not isinstance(data, dict):
            detail = f"HTTP {status}" if status >= 400 else "unexpected answer"
            raise PermanentError(self._message(operation, detail))
        return data

    def _refusal(
        self, operation: str, status: int, errors: list[Any]
    ) -> PermanentError:
        detail = _describe(errors)
        texts = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        if any("entity not found" in text.lower() for text in texts):
            return NotFoundError(self._message(operation, detail))
        if status in (401, 403) or _has_code(errors, _AUTHENTICATION):
            detail = f"authentication failed: {detail}"
        return PermanentError(self._message(operation, detail))

    def _payload(
        self, operation: str, data: dict[str, Any], key: str
    ) -> dict[str, Any]:
        """The entity inside a mutation payload, insisting on `success`."""
        payload = data.get(operation) or {}
        if not payload.get("success") or not payload.get(key):
            raise PermanentError(self._message(operation, "Linear reported no success"))
        return cast(dict[str, Any], payload[key])

    def _message(self, operation: str, detail: str) -> str:
        """The error text for the room; a server echoing our key must not leak it."""
        text = f"Linear {operation} failed: {detail}"
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        return text


def _require_uuid(value: str) -> str:
    # Linear only honours `input.id` when it is a UUID; anything else is a bug in
    # the caller, not a Linear failure.
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"idempotency_id must be a UUID, got {value!r}") from None


def _issue(node: dict[str, Any]) -> dict[str, Any]:
    """Linear's issue node flattened to what the agent shows and reasons about."""
    assignee = node.get("assignee") or {}
    return {
        "id": node["id"],
        "identifier": node["identifier"],
        "title": node["title"],
        "description": node.get("description") or "",
        "state": (node.get("state") or {}).get("name"),
        "priority": int(node.get("priority") or 0),
        "assignee": assignee.get("name"),
        "team": (node.get("team") or {}).get("key"),
        "url": node.get("url"),
        "updated_at": node.get("updatedAt"),
    }


def _comment(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": node["id"],
        "issue": (node.get("issue") or {}).get("identifier"),
        "body": node.get("body", ""),
        "url": node.get("url"),
    }


def _user_names(user: dict[str, Any]) -> set[str]:
    return {str(user.get(k) or "").casefold() for k in ("name", "displayName", "email")}


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _has_code(errors: list[Any] | None, codes: set[str]) -> bool:
    for error in errors or []:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        if isinstance(extensions, dict) and extensions.get("code") in codes:
            return True
    return False


def _describe(errors: list[Any]) -> str:
    """The errors' human-readable messages, joined and kept short."""
    parts = []
    for error in errors[:3]:
        if not isinstance(error, dict):
            continue
        extensions = error.get("extensions") or {}
        text = extensions.get("userPresentableMessage") or error.get("message")
        parts.append(str(text or "unknown error"))
    detail = "; ".join(parts) or "unknown error"
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 1] + "…"


__all__ = [
    "DOCUMENTS",
    "LinearClient",
    "NotFoundError",
    "ServiceError",
    "TransientError",
    "PermanentError",
    "schema_path",
]
