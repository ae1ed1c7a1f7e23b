"""The GitHub pack's client against the local GitHub stand-in: what it reads, what it
writes, how failures are sorted, and that every request it sends has the shape the
endpoints document."""

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from standins.github_server import GitHubStandin, make_server, serve_in_thread
from tasks.errors import PermanentError, TransientError
from tasks.github_client import GitHubClient

TOKEN = "ghp_ClientTest0123456789abcdefABCDEF"


@pytest.fixture(scope="module")
def server() -> Iterator[GitHubStandin]:
    standin = make_server("127.0.0.1", 0, token=TOKEN)
    serve_in_thread(standin)
    yield standin
    standin.shutdown()
    standin.server_close()


def control(server: GitHubStandin, path: str, body: dict | None = None) -> dict:
    url = f"{server.url}/_control/{path}"
    answer = (
        requests.post(url, json=body, timeout=5)
        if body is not None
        else (requests.get(url, timeout=5))
    )
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def client(server: GitHubStandin) -> Iterator[GitHubClient]:
    control(server, "reset", {})
    found = GitHubClient(server.url, TOKEN, "demo/agentsite", timeout=2)
    yield found
    found.close()
    # Whatever the test did, each request matched the documented shape.
    sent = control(server, "requests")["requests"]
    assert [
        (r["method"], r["path"], r["problems"]) for r in sent if r["problems"]
    ] == []


def test_search_finds_by_words_and_lists_recent_without_any(client) -> None:
    found = client.search_issues("safari")
    assert [(i["identifier"], i["title"]) for i in found] == [
        ("#1", "Login page times out on Safari")
    ]
    recent = client.search_issues("", state="all", limit=3)
    assert len(recent) == 3
    assert {"number", "title", "state", "labels", "url"} <= set(recent[0])


def test_get_reads_body_and_comments_and_none_when_missing(client) -> None:
    issue = client.get_issue(2)
    assert issue["title"] == "Flaky CI on main"
    assert [c["author"] for c in issue["comments"]] == ["hubot", "octocat"]
    assert client.get_issue(999) is None


def test_create_marks_the_issue_and_find_created_reads_it_back(client, server):
    action = str(uuid.uuid4())
    created = client.create_issue(
        action_id=action, title="Pack test", body="Details.", labels=["bug"]
    )
    assert created["body"] == "Details."  # the marker stays out of results
    assert created["labels"] == ["bug"]
    [effect] = control(server, "effects")["effects"]
    assert f"agentsite-action: {action}" in effect["fields"]["body"]

    assert client.find_created(action)["number"] == created["number"]
    assert client.find_created(str(uuid.uuid4())) is None


def test_update_closes_as_completed_and_comments_are_found_by_marker(client) -> None:
    closed = client.update_issue(1, state="closed")
    assert closed["state"] == "closed"
    action = str(uuid.uuid4())
    comment = client.add_comment(3, "On it.", action_id=action)
    assert comment["body"] == "On it."
    assert client.find_comment(3, action)["id"] == comment["id"]
    assert client.find_comment(3, str(uuid.uuid4())) is None


def test_preview_names_the_issue_as_approvers_see_it(client) -> None:
    preview = client.preview(4)
    assert preview["identifier"] == "#4"
    assert preview["labels"] == ["documentation", "good first issue"]
    assert preview["updated_at"]
    assert client.preview(999) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [(502, TransientError), (422, PermanentError)],
)
def test_failures_are_sorted_transient_or_permanent(client, server, status, kind):
    control(server, "faults", {"faults": [{"op": "get_issue", "status": status}]})
    with pytest.raises(kind, match=f"GitHub get_issue failed: HTTP {status}"):
        client.get_issue(1)


def test_a_403_that_is_no_rate_limit_is_permanent_and_not_sent_again(client, server):
    fault = {"op": "get_issue", "status": 403, "rate_limit": "none"}
    fault["message"] = "Resource not accessible by personal access token"
    control(server, "faults", {"faults": [fault]})
    with pytest.raises(PermanentError, match="HTTP 403: Resource not accessible"):
        client.get_issue(1)
    assert _sent(server, "get_issue") == 1


# Rate limits: waited out, then sent again -----------------------------------------


def _sent(server: GitHubStandin, operation: str) -> int:
    sent = control(server, "requests")["requests"]
    return sum(1 for r in sent if r["operation"] == operation)


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit_is_waited_out_and_the_read_sent_again(
    client, server, status
):
    fault = {"op": "get_issue", "status": status, "rate_limit": "secondary"}
    control(server, "faults", {"faults": [{**fault, "retry_after": 1}]})
    started = time.monotonic()
    issue = client.get_issue(1)
    assert issue is not None and issue["number"] == 1
    assert time.monotonic() - started >= 1  # it waited as Retry-After asked
    assert _sent(server, "get_issue") == 2


def test_a_write_refused_by_a_secondary_limit_is_made_once_after_the_wait(
    client, server
):
    fault = {"op": "add_comment", "status": 403, "rate_limit": "secondary"}
    control(server, "faults", {"faults": [{**fault, "retry_after": 1}]})
    action_id = str(uuid.uuid4())
    made = client.add_comment(3, "Looked into it.", action_id=action_id)
    assert made["body"] == "Looked into it."
    effects = control(server, "effects")["effects"]
    assert [e["op"] for e in effects].count("add_comment") == 1
    assert client.find_comment(3, action_id)["id"] == made["id"]


def test_a_secondary_limit_longer_than_the_client_waits_is_transient(server):
    control(server, "reset", {})
    # No Retry-After: GitHub asks for at least a minute, more than this client waits.
    fault = {"op": "get_issue", "status": 403, "rate_limit": "secondary"}
    control(server, "faults", {"faults": [{**fault, "retry_after": None}]})
    with GitHubClient(server.url, TOKEN, "demo/agentsite", max_wait=5) as client:
        with pytest.raises(TransientError, match="rate limited, retry after 60 s"):
            client.get_issue(1)
    assert _sent(server, "get_issue") == 1


def test_a_rate_limit_that_lasts_is_transient_after_the_retries(client, server):
    fault = {"op": "get_issue", "status": 429, "rate_limit": "secondary"}
    control(server, "faults", {"faults": [{**fault, "retry_after": 0, "count": 3}]})
    with pytest.raises(TransientError, match="GitHub get_issue failed: rate limited"):
        client.get_issue(1)
    assert _sent(server, "get_issue") == 3  # the first and two more


def test_the_primary_limit_exhausted_is_waited_out_until_its_reset(client, server):
    fault = {"op": "search_issues", "status": 403, "retry_after": None}
    control(server, "faults", {"faults": [fault]})
    assert client.search_issues("safari")
    assert _sent(server, "search_issues") == 2


# Pagination ----------------------------------------------------------------------


def _comment_many(server: GitHubStandin, number: int, count: int) -> None:
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        http.headers["Accept"] = "application/vnd.github+json"
        http.headers["X-GitHub-Api-Version"] = "2022-11-28"
        url = f"{server.url}/repos/demo/agentsite/issues/{number}/comments"
        for n in range(count):
            http.post(url, json={"body": f"me too ({n})"}, timeout=5).raise_for_status()


def test_find_comment_reads_every_page_of_a_long_thread(client, server):
    # The comment a crashed attempt made is the 151st: on the second page of 100.
    _comment_many(server, 3, 150)
    action_id = str(uuid.uuid4())
    made = client.add_comment(3, "Fixed in #12.", action_id=action_id)
    found = client.find_comment(3, action_id)
    assert found is not None and found["id"] == made["id"]
    sent = control(server, "requests")["requests"]
    pages = [r for r in sent if r["operation"] == "list_comments"]
    assert len(pages) == 2
    # Not there at all: every page read, then None (and a comment is made once).
    assert client.find_comment(3, str(uuid.uuid4())) is None


def test_find_created_reads_every_page_of_the_issue_list(client, server):
    """A retry that comes late finds its first attempt's issue below a hundred
    newer ones (the chaos run created GitHub issues twice when it looked at the
    first page only)."""
    action_id = str(uuid.uuid4())
    made = client.create_issue(action_id=action_id, title="The first attempt")
    for n in range(120):
        client.create_issue(action_id=str(uuid.uuid4()), title=f"Later ({n})")
    found = client.find_created(action_id)
    assert found is not None and found["number"] == made["number"]
    sent = control(server, "requests")["requests"]
    assert len([r for r in sent if r["operation"] == "list_issues"]) == 2
    assert client.find_created(str(uuid.uuid4())) is None


def test_a_bad_token_is_permanent_and_never_in_the_message(server) -> None:
    control(server, "reset", {})
    wrong = GitHubClient(server.url, "ghp_wrong-token-value", "demo/agentsite")
    with pytest.raises(PermanentError) as caught:
        wrong.search_issues("")
    assert "Bad credentials" in str(caught.value)
    assert "ghp_wrong" not in str(caught.value)


def test_no_answer_in_time_is_transient(client, server) -> None:
    control(server, "faults", {"faults": [{"op": "list_issues", "delay": 3}]})
    with pytest.raises(TransientError, match="no answer within 2 s"):
        client.search_issues("")


# Confined to the repository --------------------------------------------------------
# The stand-in also holds acme/payroll, which the token can read, and reads search
# syntax as GitHub does: repeated repo: qualifiers search each repository named, OR
# joins alternatives. Its issues hold "login" and "bug" too.

WIDENING = [
    "repo:acme/payroll",
    "login repo:acme/payroll",
    "salary org:acme",
    "login user:acme",
    "login OR repo:acme/payroll",
    "contractor OR salary",
    "(salary) OR (login repo:acme/payroll)",
    # An unclosed quote would swallow the qualifiers appended after the query.
    'is:issue login OR "',
    "NOT zzz",
]


@pytest.mark.parametrize("query", WIDENING)
def test_search_qualifiers_in_the_query_never_leave_the_repository(
    client, server, query
) -> None:
    found = client.search_issues(query, state="all", limit=50)
    ours = "https://github.com/demo/agentsite/"
    assert [i["url"] for i in found if not i["url"].startswith(ours)] == []
    # Sent as text: every word quoted, our repository named once by us.
    [sent] = [
        r
        for r in control(server, "requests")["requests"]
        if r["path"] == "/search/issues"
    ]
    [q] = sent["query"]["q"]
    assert q.endswith(" repo:demo/agentsite is:issue")
    assert q.count("repo:demo/agentsite") == 1


def test_quoted_words_still_find_the_repositorys_issues(client) -> None:
    assert [i["number"] for i in client.search_issues("login safari")] == [1]
    assert [i["number"] for i in client.search_issues('"empty CSV"', state="all")] == [
        5
    ]
    # A qualifier is a plain word now: found where an issue says it.
    assert client.search_issues("repo:acme/payroll") == []


def test_a_long_query_stays_within_githubs_limit(client) -> None:
    found = client.search_issues("a " * 100, state="all")  # 200 characters
    assert {i["number"] for i in found} <= {1, 2, 3, 4, 5, 6}


def test_results_of_another_repository_are_dropped(client, server) -> None:
    def issue(repo: str, number: int) -> dict:
        answer = requests.get(
            f"{server.url}/repos/{repo}/issues/{number}",
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {TOKEN}",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            timeout=5,
        )
        answer.raise_for_status()
        return answer.json()

    assert client.holds(issue("demo/agentsite", 1))
    assert not client.holds(issue("acme/payroll", 1))
    # A repository whose name ends like ours is another repository.
    assert not client.holds({"repository_url": f"{server.url}/repos/x/demo/agentsite"})
    assert not client.holds({"repository_url": f"{server.url}/repos/demo/agentsite2"})
    assert not client.holds({"title": "no repository_url"})
    # GitHub compares owner and name without regard to case.
    other_case = GitHubClient(server.url, TOKEN, "Demo/AgentSite", timeout=2)
    assert other_case.holds(issue("demo/agentsite", 1))
    other_case.close()
