"""The Linear pack's executor: each tool of `chat.tools.linear` as GraphQL calls.

Creating tools pass Linear an idempotency id derived from the action, so a repeat
after a crash finds the record instead of making a second; `recover` reads back
whether an earlier attempt already took effect before a retry repeats it.
"""

import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings

from chat.tools import Args, Preview, Reading, Scope, ToolSpec

from ..errors import PermanentError
from ..linear_client import PREVIEW_FIELDS, LinearClient

Run = Callable[[LinearClient, Args, uuid.UUID], dict[str, Any]]
Recover = Callable[[LinearClient, Args, uuid.UUID], dict[str, Any] | None]


# Beyond the bounds, for clocks that differ between workers and a slow network.
MARGIN = 1.0
# Writes without an idempotency id (creates and comments carry one).
UNKEYED = {"update_issue", "delete_issue"}


def linear_client() -> LinearClient:
    # Without a key the local stand-in is used; it still wants a credential.
    return LinearClient(
        settings.LINEAR_API_URL,
        settings.LINEAR_API_KEY or "demo-key",
        timeout=settings.LINEAR_TIMEOUT,
    )


def _idempotency_id(action_id: uuid.UUID, purpose: str) -> str:
    return str(uuid.uuid5(action_id, purpose))


def _search(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    issues = client.search_issues(args["query"], limit=args.get("limit", 10))
    return {"issues": issues, "count": len(issues)}


def _get(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    issue = client.get_issue(args["id"])
    if issue is None:
        return {"error": f"No issue {args['id']} exists."}
    return {"issue": issue}


def _create(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
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
) -> dict[str, Any] | None:
    issue = client.get_issue(_idempotency_id(action_id, "issue"))
    return {"created": issue} if issue else None


def _update(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    fields = {k: v for k, v in args.items() if k != "id"}
    return {"updated": client.update_issue(args["id"], **fields)}


def _recover_update(
    client: LinearClient, args: Args, action_id: uuid.UUID
) -> dict[str, Any] | None:
    """The issue, when it already shows every field the update asked for: an
    interrupted attempt applied it (Linear applies an update whole). Otherwise None,
    and the retry is held to the approvers' preview (`updatedAt`), so an update
    that did apply and was changed again since is refused, never sent twice."""
    issue = client.get_issue(args["id"])
    if issue is None:
        return None
    fields = {k: v for k, v in args.items() if k != "id"}
    return (
        {"updated": issue}
        if all(_shows(issue, k, v) for k, v in fields.items())
        else None
    )


def _shows(issue: dict[str, Any], field: str, wanted: Any) -> bool:
    """Whether the issue as read shows `field` set to `wanted` (as Linear stores
    it: states and people by name, case aside; "" unassigns)."""
    if field == "priority":
        return issue.get("priority") == int(wanted)
    if field == "state":
        return str(issue.get("state") or "").casefold() == str(wanted).casefold()
    if field == "assignee":
        if wanted == "":
            return issue.get("assignee") is None
        return str(issue.get("assignee") or "").casefold() == str(wanted).casefold()
    return bool(issue.get(field) == wanted)


def _delete(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    return client.delete_issue(args["id"])


def _recover_delete(
    client: LinearClient, args: Args, action_id: uuid.UUID
) -> dict[str, Any] | None:
    # Gone already: an earlier attempt deleted it (the preview names what it was).
    if client.get_issue(args["id"]) is None:
        return {"deleted": args["id"]}
    return None


def _comment(client: LinearClient, args: Args, action_id: uuid.UUID) -> dict[str, Any]:
    comment = client.add_comment(
        idempotency_id=_idempotency_id(action_id, "comment"),
        issue_id=args["id"],
        body=args["body"],
    )
    return {"commented": comment}


RUN: dict[str, Run] = {
    "search_issues": _search,
    "get_issue": _get,
    "create_issue": _create,
    "update_issue": _update,
    "delete_issue": _delete,
    "add_comment": _comment,
}
# Tools that change an existing issue: they refuse to act on one that changed since
# its preview was shown to the approvers.
FRESHNESS_CHECKED = {"update_issue", "delete_issue"}
RECOVER: dict[str, Recover] = {
    "create_issue": _recover_create,
    "update_issue": _recover_update,
    "delete_issue": _recover_delete,
}


class LinearExecutor:
    def __init__(self, scope: Scope | None = None) -> None:
        self.client = linear_client()
        self.scope = scope or Scope()

    def run(
        self,
        spec: ToolSpec,
        arguments: Args,
        action_id: uuid.UUID,
        seen: dict[str, Any] | None = None,
        sending: Callable[[bool], None] | None = None,
    ) -> dict[str, Any]:
        self.client.sending = sending
        try:
            return self._run(spec, arguments, action_id, seen)
        finally:
            self.client.sending = None

    def window(self, spec: ToolSpec) -> float:
        if spec.name not in UNKEYED:
            return 0.0
        # requests' timeout bounds connecting and each send: Linear has the request
        # within two of them, and applies it within the hold it is granted.
        reach = 2 * settings.LINEAR_TIMEOUT
        return float(reach + settings.LINEAR_HOLD_SECONDS + MARGIN)

    def _run(
        self,
        spec: ToolSpec,
        arguments: Args,
        action_id: uuid.UUID,
        seen: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if spec.preview == Preview.CREATES:
            # The team the preview named, so the run cannot pick another one.
            arguments = {**arguments, "team": self._team(arguments.get("team"))}
        elif spec.preview == Preview.TARGET:
            self._check_in_scope(arguments[spec.target_argument])
        if seen and spec.name in FRESHNESS_CHECKED:
            self._check_unchanged(arguments[spec.target_argument], seen)
        return self._within_scope(RUN[spec.name](self.client, arguments, action_id))

    def _team(self, asked: str | None) -> str:
        """The key of the team a new issue goes to: the one asked for, else the
        room's first, else Linear's first; refused outside the room's teams."""
        teams = self.client.teams()
        if asked is None:
            found = [t for t in teams if self.scope.allows_team(t["key"])]
        else:
            wanted = asked.strip().casefold()
            found = [t for t in teams if wanted in (v.casefold() for v in t.values())]
        if not found:
            keys = ", ".join(t["key"] for t in teams)
            raise PermanentError(f"No team {asked!r} in Linear; teams are {keys}.")
        key = str(found[0]["key"])
        if not self.scope.allows_team(key):
            raise PermanentError(self._outside(key))
        return key

    def _outside(self, key: str | None) -> str:
        allowed = ", ".join(self.scope.linear_teams)
        return (
            f"Team {key} is outside the teams this room's agent may touch "
            f"({allowed}); nothing was done there."
        )

    def _check_in_scope(self, target: str) -> None:
        if not self.scope.linear_teams:
            return
        issue = self.client.get_issue(target)
        if issue is not None and not self.scope.allows_team(issue.get("team")):
            raise PermanentError(f"{target}: {self._outside(issue.get('team'))}")

    def _within_scope(self, result: dict[str, Any]) -> dict[str, Any]:
        """Reads leave out what lies outside the room's teams."""
        if not self.scope.linear_teams:
            return result
        if "issues" in result:
            issues = [
                i for i in result["issues"] if self.scope.allows_team(i.get("team"))
            ]
            return {**result, "issues": issues, "count": len(issues)}
        issue = result.get("issue")
        if issue is not None and not self.scope.allows_team(issue.get("team")):
            return {"error": f"{issue['identifier']}: {self._outside(issue['team'])}"}
        return result

    def _check_unchanged(self, target: str, seen: dict[str, Any]) -> None:
        """Refuse when the issue changed since the approvers saw it (`updatedAt`)."""
        if not seen.get("updated_at"):
            return
        now = self.client.get_issue(target)
        if now is not None and now.get("updated_at") != seen["updated_at"]:
            raise PermanentError(
                f"{target} changed after it was shown for approval (last updated "
                f"{now.get('updated_at')}, shown as of {seen['updated_at']}); it was "
                "not changed. Propose the change again so people approve what it "
                "is now."
            )

    def recover(
        self, spec: ToolSpec, arguments: Args, action_id: uuid.UUID
    ) -> dict[str, Any] | None:
        recover = RECOVER.get(spec.name)
        return recover(self.client, arguments, action_id) if recover else None

    def preview(self, spec: ToolSpec, arguments: Args) -> Reading:
        if spec.preview == Preview.CREATES:
            asked = arguments.get("team")
            try:
                return Reading(
                    {"creates": arguments["title"], "team": self._team(asked)}
                )
            except PermanentError as exc:
                return Reading(
                    {"creates": arguments["title"], "team": asked, "refused": str(exc)}
                )
        if spec.target is None:
            return Reading()
        # One read gives the approvers' preview and the issue's names (identifier
        # and id) that the room's rules match.
        target = arguments[spec.target]
        issue = self.client.get_issue(target)
        if spec.preview != Preview.TARGET:
            return Reading(names=_names(issue))
        if issue is None:
            return Reading({"identifier": target, "missing": True})
        preview = {k: issue[k] for k in PREVIEW_FIELDS}
        if not self.scope.allows_team(issue.get("team")):
            preview["refused"] = f"{target}: {self._outside(issue.get('team'))}"
        return Reading(preview, _names(issue))


def _names(issue: dict[str, Any] | None) -> tuple[str, ...]:
    return (issue["identifier"], issue["id"]) if issue else ()
