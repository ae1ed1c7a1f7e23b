"""Seed data for the local GitHub stand-in: the repository `demo/agentsite`, with
GitHub's default labels, a few people and six issues that read like a real backlog,
and a second one the token can also read, `acme/payroll` (two issues no search of
`demo/agentsite` may ever return: the agent's tools are confined to one repository).

Ids and timestamps are fixed, so answers stay the same across restarts and tests can
name what they expect (issue #5 is the closed one, #2 has two comments).
"""

import base64
import copy
from typing import Any

REPOSITORY = "demo/agentsite"
REPOSITORY_ID = 900_000_001
ISSUE_ID_BASE = 2_900_000_000
OTHER_REPOSITORY = "acme/payroll"
OTHER_REPOSITORY_ID = 900_000_002
OTHER_ISSUE_ID_BASE = 2_910_000_000
COMMENT_ID_BASE = 2_700_000_000
LABEL_ID_BASE = 7_000_000_000

# The user the API token belongs to: `GET /user` answers with them, and they author
# whatever the API creates.
BOT_LOGIN = "agentsite-bot"

# (login, id, display name, type, author_association in demo/agentsite)
USERS = [
    (BOT_LOGIN, 190_000_001, "Agentsite Bot", "User", "COLLABORATOR"),
    ("octocat", 583_231, "The Octocat", "User", "MEMBER"),
    ("mona", 1_000_201, "Mona Lisa", "User", "CONTRIBUTOR"),
    ("hubot", 1_000_202, "Hubot", "User", "NONE"),
]

# GitHub's default labels of a new repository: (name, colour, description).
LABELS = [
    ("bug", "d73a4a", "Something isn't working"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("good first issue", "7057ff", "Good for newcomers"),
]

# number: (title, author, labels, created, updated, closed or None, body or None)
ISSUES = {
    1: (
        "Login page times out on Safari",
        "octocat",
        ["bug"],
        "2025-03-03T09:00:00Z",
        "2025-03-10T12:00:00Z",
        None,
        "On Safari 17 the login spinner runs for 30 seconds and then shows "
        '"Request timed out". Chrome and Firefox log in at once. It started after '
        "the session cookie moved to SameSite=None.",
    ),
    2: (
        "Flaky CI on main",
        "mona",
        ["bug"],
        "2025-03-04T10:30:00Z",
        "2025-03-11T08:15:00Z",
        None,
        "About one run in five fails in test_checkout_applies_discount with a "
        "timeout. Re-running the job passes. Looks like the Redis fixture starts "
        "before the port is free.",
    ),
    3: (
        "Add dark mode to the dashboard",
        "hubot",
        ["enhancement"],
        "2025-03-05T14:00:00Z",
        "2025-03-05T14:00:00Z",
        None,
        "Follow the system preference and offer a toggle in the settings. The "
        "charts need a palette that keeps enough contrast on dark backgrounds.",
    ),
    4: (
        "Document the webhook retry policy",
        "mona",
        ["documentation", "good first issue"],
        "2025-03-06T16:45:00Z",
        "2025-03-09T11:00:00Z",
        None,
        "Integrators ask how often a failed webhook delivery is retried and for how "
        "long. Describe the backoff schedule and the headers of each delivery.",
    ),
    5: (
        "Crash when uploading an empty CSV",
        "octocat",
        ["bug"],
        "2025-03-07T08:20:00Z",
        "2025-03-08T17:30:00Z",
        "2025-03-08T17:30:00Z",
        "Uploading a CSV with a header row and no data rows answers a 500. "
        "Expected: a message saying the file has no rows.",
    ),
    6: (
        "Typo in the README install steps",
        "hubot",
        ["documentation", "good first issue"],
        "2025-03-08T13:10:00Z",
        "2025-03-08T13:10:00Z",
        None,
        None,
    ),
}

# The other repository's issues: words the demo's issues hold too ("login", "bug"),
# so a search that leaks finds them.
OTHER_ISSUES = {
    1: (
        "Salary bands for 2026 (confidential)",
        "octocat",
        ["bug"],
        "2025-03-02T09:00:00Z",
        "2025-03-12T09:00:00Z",
        None,
        "Login to the payroll export and attach the salary bands here. Do not share.",
    ),
    2: (
        "Payroll login bug: contractor rates visible to everyone",
        "mona",
        ["bug"],
        "2025-03-03T09:00:00Z",
        "2025-03-12T10:00:00Z",
        None,
        "Any logged-in user sees the contractor rates table.",
    ),
}

# (issue number, author, created, body), oldest first.
COMMENTS = [
    (
        2,
        "hubot",
        "2025-03-05T09:12:00Z",
        "Seen again on run 4821. The Redis container logs 'address already in use'.",
    ),
    (
        2,
        "octocat",
        "2025-03-11T08:15:00Z",
        "I'll pin the fixture to a random free port and see if it goes away.",
    ),
    (4, "octocat", "2025-03-09T11:00:00Z", "Happy to review a first draft of this."),
    (5, "mona", "2025-03-08T17:30:00Z", "Fixed by validating the row count first."),
]


def node_id(kind: str, number: int) -> str:
    """A GitHub global node id in the legacy format: base64 of "0<len>:<Kind><id>"."""
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def seed() -> dict[str, Any]:
    """Fresh records for the store: users by login and repositories by full name."""
    users = {
        login: {
            "login": login,
            "id": user_id,
            "name": name,
            "type": kind,
            "association": association,
            "created_at": "2024-06-01T12:00:00Z",
        }
        for login, user_id, name, kind, association in USERS
    }
    labels = {
        name.casefold(): {
            "id": LABEL_ID_BASE + position,
            "name": name,
            "color": color,
            "default": True,
            "description": description,
        }
        for position, (name, color, description) in enumerate(LABELS, start=1)
    }
    repository = _repository(REPOSITORY, REPOSITORY_ID, ISSUE_ID_BASE, ISSUES, labels)
    other = _repository(
        OTHER_REPOSITORY,
        OTHER_REPOSITORY_ID,
        OTHER_ISSUE_ID_BASE,
        OTHER_ISSUES,
        copy.deepcopy(labels),
    )
    for position, (number, author, created, body) in enumerate(COMMENTS, start=1):
        comment_id = COMMENT_ID_BASE + position
        repository["comments"][comment_id] = {
            "id": comment_id,
            "issue": number,
            "user": author,
            "body": body,
            "created_at": created,
            "updated_at": created,
        }
    return {
        "users": users,
        "repositories": {REPOSITORY: repository, OTHER_REPOSITORY: other},
    }


def _repository(
    full_name: str,
    repo_id: int,
    issue_ids: int,
    issues: dict[int, tuple[Any, ...]],
    labels: dict[str, Any],
) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": repo_id,
        "owner": owner,
        "name": name,
        # Issue ids are unique across repositories, as GitHub's are.
        "issue_id_base": issue_ids,
        "labels": labels,
        "issues": {n: _issue(n, row, issue_ids) for n, row in issues.items()},
        "comments": {},
    }


def _issue(number: int, row: tuple[Any, ...], id_base: int) -> dict[str, Any]:
    title, author, labels, created, updated, closed, body = row
    return {
        "id": id_base + number,
        "number": number,
        "title": title,
        "body": body,
        "user": author,
        "labels": list(labels),
        "assignees": [],
        "state": "closed" if closed else "open",
        "state_reason": "completed" if closed else None,
        "created_at": created,
        "updated_at": updated,
        "closed_at": closed,
        "locked": False,
    }
