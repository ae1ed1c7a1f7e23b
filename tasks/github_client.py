"""The GitHub REST client behind the GitHub pack: issues of one repository.

Plain HTTP through httpx2 (the transport the OpenAI and MCP SDKs ship on), one
pooled client per executor. Failures surface as `TransientError` (rate limits, 5xx,
timeouts, dropped links) or `PermanentError` (bad credentials, refused input), with
messages safe to show to the room: they name the operation and never the token.

What the agent reads comes back trimmed to the fields people and the model use, so
a tool result stays small.
"""

import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2

from .errors import PermanentError, TransientError

API_VERSION = "2022-11-28"
# A hidden line in the body of an issue the agent creates: after a crash, the
# action's create is found by it instead of being made twice.
MARKER = "<!-- agentsite-action: {} -->"
MARKER_FOUND = re.compile(r"\n*<!-- agentsite-action: [0-9a-f-]{36} -->\s*$")
BODY_CHARS = 4000
COMMENTS_SHOWN = 5
# A listing read to its end (a marker search) stops there: 10,000 comments.
MAX_PAGES = 100
# GitHub asks a client hitting a secondary rate limit without `Retry-After` to wait
# at least a minute; a wait longer than the client's `max_wait` is not slept through.
SECONDARY_WAIT = 60


def reach(connect_timeout: float) -> float:
    """The longest a request takes to reach GitHub, or never does: a pooled
    connection, connecting and writing are each bounded by `connect_timeout`."""
    return 3 * connect_timeout


# GitHub refuses a longer `q`.
MAX_QUERY_CHARS = 256
# A phrase in double quotes, or a run of anything else but spaces.
QUERY_PART = re.compile(r'"([^"]*)"|([^\s"]+)')


def as_text(query: str, room: int) -> str:
    """The model's query as plain search terms, within `room` characters.

    GitHub's search syntax lets a query widen itself: `repo:`, `org:` and `user:`
    qualifiers (repeated ones search every repository named), `OR`, parentheses.
    Each word or phrase is sent in double quotes, which GitHub matches as text,
    never as syntax; quotes inside are dropped. Words past `room` are left out
    (fewer words find more issues, never issues elsewhere).
    """
    terms = []
    used = 0
    for phrase, word in QUERY_PART.findall(query):
        text = " ".join((phrase or word).split())
        if not text:
            continue
        quoted = f'"{text}"'
        if used + len(quoted) + 1 > room:
            break
        terms.append(quoted)
        used += len(quoted) + 1
    return " ".join(terms)


class NotFoundError(PermanentError):
    """The issue (or the repository) does not exist, or the token cannot see it."""


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        token: str,
        repository: str,
        timeout: float = 15,
        *,
        connect_timeout: float = 5,
        max_wait: float = SECONDARY_WAIT,
        rate_retries: int = 2,
        sending: Callable[[bool], None] | None = None,
    ) -> None:
        """`timeout` bounds the wait for each read of an answer; `connect_timeout`
        each of the steps that bring a request to GitHub (a pooled connection, the
        connection, the write), so a request has reached GitHub within `reach`
        seconds of leaving, or never will. `sending` hears of each write, as the
        executor's `run` describes."""
        self.repository = repository
        self._sending = sending
        self._origin = urlsplit(api_url)[:2]
        self._max_wait = max_wait
        self._rate_retries = rate_retries
        self._repo_path = "/repos/" + "/".join(
            quote(part, safe="") for part in repository.split("/", 1)
        )
        self._http = httpx2.Client(
            base_url=api_url.rstrip("/"),
            timeout=httpx2.Timeout(
                timeout,
                connect=connect_timeout,
                write=connect_timeout,
                pool=connect_timeout,
            ),
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {token}",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "agentsite",
            },
        )
        self._timeout = timeout
        self.reach = reach(connect_timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "GitHubClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Reading

    def search_issues(
        self, query: str, *, state: str = "open", limit: int = 10
    ) -> list[dict[str, Any]]:
        """Issues whose title or body holds every word of `query`; without words,
        the most recently updated ones."""
        if not query.strip():
            issues = self._call(
                "list_issues",
                "GET",
                f"{self._repo_path}/issues",
                params={
                    "state": state,
                    "sort": "updated",
                    "direction": "desc",
                    "per_page": limit,
                },
            )
        else:
            qualifiers = f"repo:{self.repository} is:issue"
            if state != "all":
                qualifiers += f" state:{state}"
            words = as_text(query, MAX_QUERY_CHARS - len(qualifiers) - 1)
            found = self._call(
                "search_issues",
                "GET",
                "/search/issues",
                params={"q": f"{words} {qualifiers}", "per_page": limit},
            )
            items = found.get("items", []) if isinstance(found, dict) else []
            # However GitHub reads the query, nothing of another repository the
            # token can read comes back.
            issues = [i for i in items if self.holds(i)]
        # The issues endpoint lists pull requests too; the tools are about issues.
        return [_summary(i) for i in issues if "pull_request" not in i][:limit]

    def holds(self, issue: object) -> bool:
        """Whether a search result is an issue of our repository (by its
        `repository_url`, `<api>/repos/<owner>/<name>`); anything else is not."""
        if not isinstance(issue, dict):
            return False
        url = issue.get("repository_url")
        if not isinstance(url, str):
            return False
        path = urlsplit(url).path.rstrip("/").casefold()
        return path.endswith("/repos/" + self.repository.casefold())

    def get_issue(self, number: int) -> dict[str, Any] | None:
        """The issue with its body and latest comments; None when there is none."""
        try:
            issue = self._call("get_issue", "GET", f"{self._repo_path}/issues/{number}")
        except NotFoundError:
            return None
        if "pull_request" in issue:
            return None
        found = _detail(issue)
        if issue.get("comments"):
            comments = self._call(
                "list_comments",
                "GET",
                f"{self._repo_path}/issues/{number}/comments",
                params={"per_page": 100},
            )
            found["comments"] = [_comment(c) for c in comments[-COMMENTS_SHOWN:]]
        return found

    def preview(self, number: int) -> dict[str, Any] | None:
        """What an action on issue `number` touches, for approvers; None if missing."""
        try:
            issue = self._call("get_issue", "GET", f"{self._repo_path}/issues/{number}")
        except NotFoundError:
            return None
        return {
            "identifier": f"#{issue['number']}",
            "title": issue["title"],
            "state": issue["state"],
            "labels": _label_names(issue),
            "updated_at": issue["updated_at"],
        }

    def find_created(self, action_id: str) -> dict[str, Any] | None:
        """The issue this token created for `action_id`, found by its marker.

        Read from the repository's issue list (newest first, by our own user),
        not from search, whose index lags behind a create by seconds to minutes;
        every page: a retry that comes late (a backlog, a long outage) may find a
        hundred newer issues above the one its first attempt made.
        """
        me = self._call("get_user", "GET", "/user")["login"]
        marker = MARKER.format(action_id)
        pages = self._pages(
            "list_issues",
            f"{self._repo_path}/issues",
            params={
                "creator": me,
                "state": "all",
                "sort": "created",
                "direction": "desc",
                "per_page": 100,
            },
        )
        for page in pages:
            for issue in page:
                if marker in (issue.get("body") or ""):
                    return _detail(issue)
        return None

    # Writing

    def create_issue(
        self,
        *,
        action_id: str,
        title: str,
        body: str = "",
        labels: list[str] | None = None,
    ) -> dict[str, Any]:
        marked = (
            f"{body}\n\n{MARKER.format(action_id)}"
            if body
            else MARKER.format(action_id)
        )
        document: dict[str, Any] = {"title": title, "body": marked}
        if labels:
            document["labels"] = labels
        issue = self._call(
            "create_issue", "POST", f"{self._repo_path}/issues", json=document
        )
        return _detail(issue)

    def update_issue(self, number: int, **fields: Any) -> dict[str, Any]:
        document = {
            k: v for k, v in fields.items() if k in ("title", "body", "state", "labels")
        }
        if document.get("state") == "closed":
            document["state_reason"] = "completed"
        issue = self._call(
            "update_issue",
            "PATCH",
            f"{self._repo_path}/issues/{number}",
            json=document,
        )
        return _detail(issue)

    def add_comment(self, number: int, body: str, *, action_id: str) -> dict[str, Any]:
        comment = self._call(
            "add_comment",
            "POST",
            f"{self._repo_path}/issues/{number}/comments",
            json={"body": f"{body}\n\n{MARKER.format(action_id)}"},
        )
        return {"issue": f"#{number}", **_comment(comment)}

    def find_comment(self, number: int, action_id: str) -> dict[str, Any] | None:
        """The comment made for `action_id` on issue `number`, by its marker, among
        all the issue's comments (every page: a recovery must not comment twice)."""
        marker = MARKER.format(action_id)
        pages = self._pages(
            "list_comments",
            f"{self._repo_path}/issues/{number}/comments",
            params={"per_page": 100},
        )
        for page in pages:
            for comment in page:
                if marker in (comment.get("body") or ""):
                    return {"issue": f"#{number}", **_comment(comment)}
        return None

    # Transport

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        return _answer(operation, self._request(operation, method, path, params, json))

    def _pages(
        self, operation: str, path: str, *, params: dict[str, Any]
    ) -> Iterator[list[Any]]:
        """Each page of a listing, following the `Link` header's `next` relation
        (on GitHub's own origin only: the token goes nowhere else)."""
        response = self._request(operation, "GET", path, params, None)
        for _ in range(MAX_PAGES):
            page = _answer(operation, response)
            if not isinstance(page, list):
                raise PermanentError(
                    _message(operation, "an answer that is not a list")
                )
            yield page
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            if urlsplit(following)[:2] != self._origin:
                detail = "a next page on another host"
                raise PermanentError(_message(operation, detail))
            response = self._request(operation, "GET", following, None, None)
        raise PermanentError(_message(operation, f"more than {MAX_PAGES} pages"))

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
    ) -> httpx2.Response:
        """One answer; a rate limit (primary or secondary) is waited out and the
        request sent again, up to `rate_retries` times and `max_wait` seconds each:
        a refused request was not applied, so even a write is safe to send again."""
        sending = self._sending if method != "GET" else None
        for attempt in range(self._rate_retries + 1):
            if sending is not None:
                sending(True)
            try:
                response = self._http.request(method, path, params=params, json=json)
            except httpx2.TimeoutException:
                detail = f"no answer within {self._timeout:g} s"
                raise TransientError(_message(operation, detail)) from None
            except httpx2.HTTPError as exc:
                detail = f"could not reach GitHub ({type(exc).__name__})"
                raise TransientError(_message(operation, detail)) from None
            if sending is not None and response.status_code < 500:
                # GitHub answered it (applied or refused): it cannot land later. A
                # 5xx may come from in front of a GitHub still at work on it.
                sending(False)
            wait = rate_limit_wait(response)
            if wait is None:
                return response
            if wait > self._max_wait or attempt == self._rate_retries:
                detail = f"rate limited, retry after {math.ceil(wait)} s"
                raise TransientError(_message(operation, detail))
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def rate_limit_wait(response: httpx2.Response) -> float | None:
    """How long GitHub asks to wait before this request is sent again, if it was
    refused by a rate limit; None for any other answer.

    As GitHub documents it: a 403 or 429 with `Retry-After` waits that many seconds;
    one with `x-ratelimit-remaining: 0` (the primary limit) waits until
    `x-ratelimit-reset`; one whose message names a secondary rate limit, without
    either, waits a minute. Any other 403 (no permission) is not a rate limit.
    """
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after", "")
    if retry_after.strip().isdigit():
        return float(retry_after)
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        if reset.strip().isdigit():
            return max(0.0, int(reset) - time.time()) + 1
        return float(SECONDARY_WAIT)
    try:
        body = response.json()
    except ValueError:
        body = None
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    if "rate limit" in message.lower() or response.status_code == 429:
        return float(SECONDARY_WAIT)
    return None


def _answer(operation: str, response: httpx2.Response) -> Any:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if status < 300 and body is not None:
        return body
    detail = f"HTTP {status}"
    if isinstance(body, dict) and body.get("message"):
        detail += f": {str(body['message'])[:200]}"
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            detail += " (" + "; ".join(_error(e) for e in errors[:3]) + ")"
    limited = response.headers.get("x-ratelimit-remaining") == "0"
    if status == 429 or status >= 500 or (status == 403 and limited):
        raise TransientError(_message(operation, detail))
    if status == 404:
        raise NotFoundError(_message(operation, detail))
    if status < 300:
        raise PermanentError(_message(operation, "an answer that is not JSON"))
    raise PermanentError(_message(operation, detail))


def _message(operation: str, detail: str) -> str:
    return f"GitHub {operation} failed: {detail}."


def _error(error: object) -> str:
    if not isinstance(error, dict):
        return str(error)[:100]
    if error.get("message"):
        return str(error["message"])[:100]
    return f"{error.get('field', '?')} {error.get('code', 'invalid')}"


def _label_names(issue: dict[str, Any]) -> list[str]:
    return [
        label["name"] if isinstance(label, dict) else str(label)
        for label in issue.get("labels") or []
    ]


def _summary(issue: dict[str, Any]) -> dict[str, Any]:
    return {
        "identifier": f"#{issue['number']}",
        "number": issue["number"],
        "title": issue["title"],
        "state": issue["state"],
        "labels": _label_names(issue),
        "url": issue.get("html_url"),
        "updated_at": issue.get("updated_at"),
    }


def _detail(issue: dict[str, Any]) -> dict[str, Any]:
    body = MARKER_FOUND.sub("", issue.get("body") or "")
    return {
        **_summary(issue),
        "body": body[:BODY_CHARS],
        "author": (issue.get("user") or {}).get("login"),
        "comments_count": issue.get("comments", 0),
    }


def _comment(comment: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": comment["id"],
        "author": (comment.get("user") or {}).get("login"),
        "body": MARKER_FOUND.sub("", comment.get("body") or "")[:BODY_CHARS],
        "url": comment.get("html_url"),
        "created_at": comment.get("created_at"),
    }
