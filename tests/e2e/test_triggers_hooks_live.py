"""Contract "`POST /hooks/<id>`: deliveries" against a real web process, for each
source: deliveries signed here as Linear, GitHub and Standard Webhooks senders sign
them, sent over HTTP, and checked by what the room receives (its request and message
rows, its event feed over REST, the trigger's counters). The module's web process
runs with small limits (2 requests a minute, bodies of 4 KiB), so they are quick to
reach."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook as StandardWebhook

from chat.models import Message, Request
from chat.trigger_signatures import github_signature, linear_signature
from tests.plugins.people import token_for
from tests.plugins.stack import reached

pytestmark = pytest.mark.e2e

SOURCES = ["linear", "github", "generic"]
# The web process of every test here: one for the module (the stack keeps it). Past
# a delivery's limit, a body meets the hook's own check; past the site's limit on any
# body (equal to it by default, 1 MiB), the guard in front of the app.
LIMITS = {
    "TRIGGER_MAX_PER_MINUTE": "2",
    "TRIGGER_MAX_BYTES": "4096",
    "REQUEST_MAX_BYTES": "8192",
}
EVENT = {
    "linear": "Issue.create",
    "github": "issues.opened",
    "generic": "incident.opened",
}
TITLE = {"linear": "data.title", "github": "issue.title", "generic": "data.title"}
# Where each source's body says which team, repository or service it is about.
WHERE = {"linear": "data.team.key", "github": "repository.name", "generic": "data.svc"}


def body_of(source: str, title: str = "Checkout is down", where: str = "eng") -> dict:
    """A delivery's body as each source shapes it (Linear adds its timestamp)."""
    if source == "linear":
        data = {"title": title, "team": {"key": where}}
        return {"type": "Issue", "action": "create", "data": data}
    if source == "github":
        return {
            "action": "opened",
            "issue": {"title": title},
            "repository": {"name": where},
        }
    return {"type": "incident.opened", "data": {"title": title, "svc": where}}


@dataclass
class Site:
    """The module's web process, and alice's token for its REST API."""

    url: str
    token: str

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}/api/rooms/triage/{path}",
            headers={"Authorization": f"Token {self.token}"},
            timeout=10,
            **kwargs,
        )

    def feed(self) -> list[dict]:
        """The room's `message` and `request` events, oldest first."""
        page = self.api("get", "events", params={"after": 0, "limit": 1000}).json()
        return [e for e in page["events"] if e["type"] in ("message", "request")]

    def nothing_posted(self) -> bool:
        rows = Request.objects.exists() or Message.objects.exists()
        return not rows and not self.feed()


@dataclass
class Hook:
    """A trigger made over the REST API, and its sender."""

    site: Site
    trigger: dict

    @property
    def source(self) -> str:
        return self.trigger["source"]

    def signed(
        self,
        body: dict,
        *,
        delivery: str | None = None,
        secret: str | None = None,
        at: datetime | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers, signed as the source signs, stamped `at`."""
        secret = secret or self.trigger["secret"]
        delivery = delivery or str(uuid.uuid4())
        at = at or datetime.now(tz=UTC)
        headers = {"Content-Type": "application/json"}
        if self.source == "linear":
            body = {**body, "webhookTimestamp": int(at.timestamp() * 1000)}
            raw = json.dumps(body).encode()
            headers |= {
                "Linear-Signature": linear_signature(secret, raw),
                "Linear-Delivery": delivery,
                "Linear-Event": "Issue",
            }
        elif self.source == "github":
            raw = json.dumps(body).encode()
            headers |= {
                "X-Hub-Signature-256": github_signature(secret, raw),
                "X-GitHub-Delivery": delivery,
                "X-GitHub-Event": "issues",
            }
        else:
            raw = json.dumps(body).encode()
            headers |= {
                "webhook-id": delivery,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": StandardWebhook(secret).sign(delivery, at, raw),
            }
        return raw, headers

    def send(self, body: dict, **signing: Any) -> requests.Response:
        raw, headers = self.signed(body, **signing)
        return self.post(raw, headers)

    def post(self, data: object, headers: dict[str, str]) -> requests.Response:
        return requests.post(
            f"{self.site.url}/hooks/{self.trigger['id']}",
            data=data,
            headers=headers,
            timeout=10,
        )

    def state(self) -> dict:
        """The trigger as its REST API shows it now."""
        return self.site.api("get", f"triggers/{self.trigger['id']}").json()

    def change(self, **fields: object) -> requests.Response:
        return self.site.api("patch", f"triggers/{self.trigger['id']}", json=fields)


@pytest.fixture
def web(stack, room, alice) -> Site:
    return Site(stack.web(**LIMITS), token_for(alice))


def make(web: Site, source: str, **fields: object) -> Hook:
    """A trigger of `source` whose prompt is `<event>: <the title>`."""
    prompt = f"{{{{ $event }}}}: {{{{ {TITLE[source]} }}}}"
    data = {"source": source, "prompt": prompt, **fields}
    made = web.api("post", "triggers", json=data)
    assert made.status_code == 201, made.text
    return Hook(web, made.json())


@pytest.mark.parametrize("source", SOURCES)
def test_one_delivery_sent_four_times_at_once_posts_one_request_as_the_bot(
    web, stack, openai_standin, source
):
    openai_standin.control("script", {"replies": [{"text": "On it."}]})
    stack.worker()
    hook = make(web, source)
    raw, headers = hook.signed(body_of(source), delivery="burst-1")
    start = threading.Barrier(4)
    answers: list[requests.Response] = []

    def deliver() -> None:
        start.wait()
        answers.append(hook.post(raw, headers))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 202]
    (posted,) = [a.json() for a in answers if a.status_code == 202]
    (request,) = Request.objects.select_related("user")
    assert posted == {
        "request": str(request.pk),
        "event": EVENT[source],
        "delivery": "burst-1",
    }
    duplicates = [a.json() for a in answers if a.status_code == 200]
    assert duplicates == [{"duplicate": True, "request": str(request.pk)}] * 3
    assert request.user.username == "triage-bot"
    assert request.trigger == {
        "kind": "webhook",
        "id": hook.trigger["id"],
        "source": source,
        "event": EVENT[source],
        "delivery": "burst-1",
    }
    reached(request, Request.Status.COMPLETED)
    said = [
        (e["message"]["author"], e["message"]["content"])
        for e in web.feed()
        if e["type"] == "message"
    ]
    assert said == [
        ("triage-bot", f"{EVENT[source]}: Checkout is down"),
        (None, "On it."),
    ]
    first = next(e["request"] for e in web.feed() if e["type"] == "request")
    assert first["id"] == str(request.pk) and first["trigger"] == request.trigger
    assert hook.state()["fired"] == 1


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_signature_gets_401_and_the_room_receives_nothing(web, source):
    hook = make(web, source)
    other = make(web, source)  # a real secret, of another trigger
    answer = hook.send(body_of(source), secret=other.trigger["secret"])
    assert answer.status_code == 401 and answer.json()["detail"]
    unsigned = hook.post(
        json.dumps(body_of(source)).encode(), {"Content-Type": "application/json"}
    )
    assert unsigned.status_code == 401
    assert web.nothing_posted()
    assert hook.state()["last_delivery"] is None


@pytest.mark.parametrize(
    ("source", "age"), [("linear", 70), ("linear", -70), ("generic", 301)]
)
def test_a_stale_delivery_gets_401_and_the_room_receives_nothing(web, source, age):
    # GitHub sends no timestamp: its delivery id alone stops a replay.
    hook = make(web, source)
    then = datetime.now(tz=UTC) - timedelta(seconds=age)
    answer = hook.send(body_of(source), at=then)
    assert answer.status_code == 401 and answer.json()["detail"]
    assert web.nothing_posted()
    assert hook.state()["last_delivery"] is None


@pytest.mark.parametrize("source", SOURCES)
def test_a_disabled_trigger_answers_ignored_and_posts_nothing(web, source):
    hook = make(web, source)
    off = hook.change(enabled=False)
    assert off.status_code == 200 and off.json()["enabled"] is False
    answer = hook.send(body_of(source), delivery="off-1")
    assert answer.status_code == 202
    assert answer.json() == {"ignored": "disabled"}
    again = hook.send(body_of(source), delivery="off-1")
    assert again.status_code == 200
    assert again.json() == {"duplicate": True, "request": None}
    assert web.nothing_posted()
    state = hook.state()
    assert state["last_delivery"] is not None and state["fired"] == 0


@pytest.mark.parametrize("source", SOURCES)
def test_an_event_or_body_the_trigger_excludes_posts_nothing(web, source):
    only_other = make(web, source, events=["Comment", "push", "deploy"])
    assert only_other.send(body_of(source)).json() == {"ignored": "event"}
    eng_only = make(web, source, filter={WHERE[source]: "eng"})
    elsewhere = eng_only.send(body_of(source, where="ops"))
    assert elsewhere.status_code == 202
    assert elsewhere.json() == {"ignored": "filter"}
    assert web.nothing_posted()
    # The same trigger posts what its filter lets through.
    assert eng_only.send(body_of(source, where="eng")).status_code == 202
    (request,) = Request.objects.all()
    assert request.trigger["id"] == eng_only.trigger["id"]


@pytest.mark.parametrize("source", SOURCES)
def test_past_the_rate_a_delivery_gets_429_with_retry_after_and_posts_nothing(
    web, source
):
    hook = make(web, source)
    for title in ("one", "two"):
        assert hook.send(body_of(source, title)).status_code == 202
    refused = hook.send(body_of(source, "three"), delivery="late-1")
    assert refused.status_code == 429, refused.text
    assert "TRIGGER_MAX_PER_MINUTE" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Not recorded: the sender's retry of it is refused again, not a duplicate.
    retried = hook.send(body_of(source, "three"), delivery="late-1")
    assert retried.status_code == 429
    titles = sorted(m.content.split(": ")[-1] for m in Message.objects.all())
    assert titles == ["one", "two"]
    assert len([e for e in web.feed() if e["type"] == "message"]) == 2
    assert hook.state()["fired"] == 2


@pytest.mark.parametrize("source", SOURCES)
def test_an_oversized_delivery_gets_413_and_posts_nothing(web, source):
    hook = make(web, source)
    # Past the hook's limit (its own 413), then past the site's (the guard's).
    for limit in (4096, 8192):
        raw, headers = hook.signed(body_of(source, "x" * limit))
        # With a Content-Length, and without one (chunked): refused as it arrives.
        for data in (raw, iter([raw[:3000], raw[3000:]])):
            answer = hook.post(data, headers)
            assert answer.status_code == 413
            assert answer.headers["Content-Type"] == "application/json"
            assert f"larger than {limit} bytes" in answer.json()["detail"]
    assert web.nothing_posted()
    assert hook.state()["last_delivery"] is None
    # A body within the limit posts.
    assert hook.send(body_of(source, "x" * 3500)).status_code == 202
    assert Request.objects.count() == 1
