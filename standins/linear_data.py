"""Seed data for the local Linear stand-in: two teams, their workflow states, a few
people and twenty issues that read like a real product backlog.

Every id is a uuid5 of a readable name, so ids stay the same across restarts and tests
can compute them (`issue_uuid("ENG-3")`).
"""

import uuid
from datetime import UTC, datetime, timedelta

NAMESPACE = uuid.UUID("5b0e4c38-3f53-4f0a-9a57-6c7a3c1d2e10")
ORGANIZATION = "agentsite"
BASE_TIME = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

TEAMS = [
    {"key": "ENG", "name": "Engineering", "description": "Product engineering."},
    {"key": "DES", "name": "Design", "description": "Product and brand design."},
]

# (name, type, colour) in board order; the type values are Linear's.
STATES = [
    ("Backlog", "backlog", "#bec2c8"),
    ("Todo", "unstarted", "#e2e2e2"),
    ("In Progress", "started", "#f2c94c"),
    ("In Review", "started", "#0f783c"),
    ("Done", "completed", "#5e6ad2"),
    ("Canceled", "canceled", "#95a2b3"),
]

# The first user owns the API key: `viewer` answers with them.
USERS = [
    ("agent", "Agentsite Bot", "agent@agentsite.example"),
    ("maya", "Maya Chen", "maya.chen@agentsite.example"),
    ("tomas", "Tomás Rivera", "tomas.rivera@agentsite.example"),
    ("priya", "Priya Nair", "priya.nair@agentsite.example"),
    ("jonas", "Jonas Weber", "jonas.weber@agentsite.example"),
]

# (identifier, title, state, priority, assignee display name, description)
ISSUES = [
    (
        "ENG-1",
        "Set up CI pipeline for the monorepo",
        "Done",
        2,
        "jonas",
        "Run lint, type checks and the unit tests on every pull request. Cache the "
        "virtualenv between runs so a green build takes under five minutes.",
    ),
    (
        "ENG-2",
        "Rate limit the public search endpoint",
        "In Progress",
        2,
        "tomas",
        "A single client sent 40k search requests in ten minutes last Tuesday. Add a "
        "per-token limit of 60 requests a minute and answer 429 with Retry-After.",
    ),
    (
        "ENG-3",
        "Login fails on Safari",
        "Todo",
        1,
        "maya",
        "Users on Safari 17 report that the login button does nothing after they enter "
        "valid credentials. The console shows the auth iframe's cookie being blocked. "
        "Reproduce in a private window with cross-site tracking prevention on.",
    ),
    (
        "ENG-4",
        "Migrate session storage from Redis 6 to Valkey",
        "Backlog",
        3,
        None,
        "Redis 6 reaches end of life this year. Move session storage to Valkey 8 and "
        "keep existing sessions valid during the switch.",
    ),
    (
        "ENG-5",
        "Flaky test: test_checkout_applies_discount",
        "In Review",
        3,
        "priya",
        "The test fails about one run in twenty on CI. It depends on the wall clock "
        "crossing midnight in the promotion's time zone; freeze the time instead.",
    ),
    (
        "ENG-6",
        "Add pagination to the audit log API",
        "Todo",
        3,
        "tomas",
        "Large workspaces get a 30 MB response from /api/audit. Add cursor pagination "
        "with a default page size of 100 and document it.",
    ),
    (
        "ENG-7",
        "Upgrade Django to 5.2 LTS",
        "In Progress",
        2,
        "jonas",
        "We are two minor versions behind. Upgrade, fix the deprecation warnings and "
        "run the full regression suite before merging.",
    ),
    (
        "ENG-8",
        "Password reset emails arrive twice",
        "Todo",
        2,
        "maya",
        "Several users received two reset emails a few seconds apart. The Celery task "
        "is retried after a broker timeout even though the first send succeeded.",
    ),
    (
        "ENG-9",
        "Memory leak in the websocket worker",
        "In Progress",
        1,
        "priya",
        "Worker memory grows by about 200 MB an hour until the container is killed. "
        "Heap snapshots point at presence subscriptions that are never released.",
    ),
    (
        "ENG-10",
        "Document the deploy rollback procedure",
        "Backlog",
        4,
        None,
        "The rollback steps live in one engineer's head. Write them down in the "
        "runbook, including how to revert a migration safely.",
    ),
    (
        "ENG-11",
        "Remove the legacy v1 webhooks",
        "Canceled",
        0,
        None,
        "Two enterprise customers still depend on v1 webhooks. Revisit after they "
        "have migrated.",
    ),
    (
        "ENG-12",
        "Export issues to CSV times out for large teams",
        "Backlog",
        3,
        "tomas",
        "Exports over 10k rows exceed the 30 second request timeout. Generate the file "
        "in a background job and email a download link.",
    ),
    (
        "DES-1",
        "Redesign the onboarding checklist",
        "In Progress",
        2,
        "priya",
        "Only a third of new workspaces finish onboarding. Reduce the checklist to "
        "four steps and show progress at the top of the sidebar.",
    ),
    (
        "DES-2",
        "Dark mode colour tokens fail contrast checks",
        "Todo",
        2,
        "priya",
        "Secondary text on the dark surface has a contrast ratio of 3.1. Adjust the "
        "tokens so every text colour meets WCAG AA.",
    ),
    (
        "DES-3",
        "Empty state illustrations for the dashboard",
        "Backlog",
        4,
        None,
        "New users see blank cards on the dashboard. Draw three small illustrations "
        "that explain what each card will show.",
    ),
    (
        "DES-4",
        "Icon set for the new integrations page",
        "In Review",
        3,
        "priya",
        "Twelve integration icons in the 24 px grid, exported as SVG with the current "
        "stroke width.",
    ),
    (
        "DES-5",
        "Mobile nav overlaps the cookie banner",
        "Todo",
        1,
        "maya",
        "On screens narrower than 380 px the bottom navigation covers the accept "
        "button of the cookie banner, so visitors cannot dismiss it.",
    ),
    (
        "DES-6",
        "Update the brand guidelines PDF",
        "Done",
        4,
        "priya",
        "Replace the old logo lockups and add the new typography scale.",
    ),
    (
        "DES-7",
        "Usability test plan for the billing settings",
        "Backlog",
        3,
        None,
        "Plan five moderated sessions with admins of paying workspaces. Focus on "
        "changing plans and downloading invoices.",
    ),
    (
        "DES-8",
        "Settings page typography audit",
        "Canceled",
        0,
        None,
        "Superseded by the design system migration, which replaces every heading "
        "style on the settings pages.",
    ),
]


def stable_uuid(name: str) -> str:
    """The deterministic id the stand-in gives the entity called `name`."""
    return str(uuid.uuid5(NAMESPACE, name))


def issue_uuid(identifier: str) -> str:
    """The id of a seeded issue, from its identifier like "ENG-3"."""
    return stable_uuid(identifier)


def iso(moment: datetime) -> str:
    """Linear's timestamp format: UTC with milliseconds and a Z."""
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def seed() -> dict:
    """Fresh records for the store: teams, states, users and issues by id."""
    created = iso(BASE_TIME - timedelta(days=90))
    teams = {stable_uuid(f"team:{t['key']}"): _team(t, created) for t in TEAMS}
    states = {}
    for team_id, team in teams.items():
        for position, (name, kind, colour) in enumerate(STATES):
            state_id = stable_uuid(f"state:{team['key']}:{name}")
            states[state_id] = {
                "id": state_id,
                "name": name,
                "type": kind,
                "color": colour,
                "position": float(position),
                "teamId": team_id,
                "createdAt": created,
                "updatedAt": created,
                "description": None,
            }
    users = {stable_uuid(f"user:{u[0]}"): _user(u, created) for u in USERS}
    issues = {}
    for index, row in enumerate(ISSUES):
        record = _issue(row, index)
        issues[record["id"]] = record
    return {"teams": teams, "states": states, "users": users, "issues": issues}


def _team(team: dict, created: str) -> dict:
    return {
        "id": stable_uuid(f"team:{team['key']}"),
        "key": team["key"],
        "name": team["name"],
        "displayName": team["name"],
        "description": team["description"],
        "private": False,
        "createdAt": created,
        "updatedAt": created,
        "archivedAt": None,
    }


def _user(user: tuple, created: str) -> dict:
    handle, name, email = user
    return {
        "id": stable_uuid(f"user:{handle}"),
        "name": name,
        "displayName": handle,
        "email": email,
        "active": True,
        "admin": handle == "agent",
        "createdAt": created,
        "updatedAt": created,
        "archivedAt": None,
        "url": f"https://linear.app/{ORGANIZATION}/profiles/{handle}",
    }


def _issue(row: tuple, index: int) -> dict:
    identifier, title, state, priority, assignee, description = row
    key, number = identifier.split("-")
    created = BASE_TIME + timedelta(days=index % 12, hours=index)
    updated = created + timedelta(days=2, hours=3 * (index % 5))
    return {
        "id": issue_uuid(identifier),
        "identifier": identifier,
        "number": int(number),
        "title": title,
        "description": description,
        "priority": priority,
        "teamId": stable_uuid(f"team:{key}"),
        "stateId": stable_uuid(f"state:{key}:{state}"),
        "assigneeId": stable_uuid(f"user:{assignee}") if assignee else None,
        "creatorId": stable_uuid("user:maya"),
        "createdAt": iso(created),
        "updatedAt": iso(updated),
    }
