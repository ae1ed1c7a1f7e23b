"""The GitHub pack's executor: each tool of `chat.tools.github` as REST calls.

A create carries a hidden marker naming the action, so `recover` finds an issue an
interrupted attempt already made instead of opening a second one; a comment carries
the marker too. Updates and comments refuse to act on an issue that changed since
the approvers saw it.

GitHub takes no idempotency key, so a marker is found only once its write has
landed: a retry waits out `window` after an earlier attempt's write before it reads
back (`tasks.steps`), or it would create the issue again while GitHub still held
the first create.
"""

import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings

from chat.tools import Args, Preview, Reading, Scope, ToolSpec

from ..errors import PermanentError
from ..github_client import GitHubClient, reach

Run = Callable[[GitHubClient, Args, uuid.UUID], dict[str, Any]]


# Beyond the bounds, for clocks that differ between workers and a slow network.
MARGIN = 1.0
WRITES = {"github_create_issue", "github_update_issue", "github_add_comment"}


def github_client(sending: Callable[[bool], None] | None = None) -> GitHubClient:
    return GitHubClient(
        settings.GITHUB_API_URL,
        settings.GITHUB_TOKEN,
        settings.GITHUB_REPOSITORY,
        timeout=settings.GITHUB_TIMEOUT,
        connect_timeout=settings.GITHUB_CONNECT_TIMEOUT,
        sending=sending,
    )


def _search(client: GitHubClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    issues = client.search_issues(
        args["query"], state=args.get("state", "open"), limit=args.get("limit", 10)
    )
    return {"issues": issues, "count": len(issues)}


def _get(client: GitHubClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    issue = client.get_issue(args["number"])
    if issue is None:
        return {"error": f"No issue #{args['number']} in {client.repository}."}
    return {"issue": issue}


def _create(client: GitHubClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    issue = client.create_issue(
        action_id=str(action_id),
        title=args["title"],
        body=args.get("body", ""),
        labels=args.get("labels"),
    )
    return {"created": issue}


def _update(client: GitHubClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    fields = {k: v for k, v in args.items() if k != "number"}
    return {"updated": client.update_issue(args["number"], **fields)}


def _comment(client: GitHubClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    comment = client.add_comment(args["number"], args["body"], action_id=str(action_id))
    return {"commented": comment}


RUN: dict[str, Run] = {
    "github_search_issues": _search,
    "github_get_issue": _get,
    "github_create_issue": _create,
    "github_update_issue": _update,
    "github_add_comment": _comment,
}


class GitHubExecutor:
    """Each method opens its own pooled client and closes it (a retry's `recover`
    is not always followed by `run`)."""

    def __init__(self, scope: Scope | None = None) -> None:
        pass

    def run(
        self,
        spec: ToolSpec,
        arguments: Args,
        action_id: uuid.UUID,
        seen: dict[str, Any] | None = None,
        sending: Callable[[bool], None] | None = None,
    ) -> dict[str, Any]:
        with github_client(sending) as client:
            if seen and spec.preview == Preview.TARGET:
                _check_unchanged(client, arguments[spec.target_argument], seen)
            return RUN[spec.name](client, arguments, action_id)

    def window(self, spec: ToolSpec) -> float:
        if spec.name not in WRITES:
            return 0.0
        # GitHub has a write within `reach`, and ends a request it has processed
        # for ten seconds (GITHUB_HOLD_SECONDS): landed by then, or never.
        bound = reach(settings.GITHUB_CONNECT_TIMEOUT) + settings.GITHUB_HOLD_SECONDS
        return float(bound + MARGIN)

    def recover(
        self, spec: ToolSpec, arguments: Args, action_id: uuid.UUID
    ) -> dict[str, Any] | None:
        with github_client() as client:
            if spec.name == "github_create_issue":
                created = client.find_created(str(action_id))
                return {"created": created} if created else None
            if spec.name == "github_add_comment":
                comment = client.find_comment(arguments["number"], str(action_id))
                return {"commented": comment} if comment else None
            if spec.name == "github_update_issue":
                return _recover_update(client, arguments)
        # Reads change nothing when repeated.
        return None

    def preview(self, spec: ToolSpec, arguments: Args) -> Reading:
        if spec.preview == Preview.CREATES:
            return Reading(
                {
                    "creates": arguments["title"],
                    "repository": settings.GITHUB_REPOSITORY,
                    "labels": arguments.get("labels", []),
                }
            )
        if spec.target is None:
            return Reading()
        # An issue's number is its one name; "#12" is how people write it.
        number = arguments[spec.target]
        names = (str(number), f"#{number}")
        if spec.preview != Preview.TARGET:
            return Reading(names=names)
        with github_client() as client:
            found = client.preview(number)
        return Reading(found or {"identifier": f"#{number}", "missing": True}, names)


def _recover_update(client: GitHubClient, args: Args) -> dict[str, Any] | None:
    """The issue, when it already shows every field the update asked for (an
    interrupted attempt applied it); otherwise None, and the retry is held to the
    approvers' preview, so an applied update changed again since is not resent."""
    issue = client.get_issue(args["number"])
    if issue is None:
        return None
    for field, wanted in args.items():
        if field == "number":
            continue
        if field == "labels":
            if sorted(issue.get("labels") or []) != sorted(wanted):
                return None
        elif issue.get(field) != wanted:
            return None
    return {"updated": issue}


def _check_unchanged(client: GitHubClient, number: int, seen: dict[str, Any]) -> None:
    if not seen.get("updated_at"):
        return
    now = client.preview(number)
    if now is not None and now["updated_at"] != seen["updated_at"]:
        raise PermanentError(
            f"#{number} changed after it was shown for approval (last updated "
            f"{now['updated_at']}, shown as of {seen['updated_at']}); nothing was "
            "done. Propose the change again so people approve what it is now."
        )
