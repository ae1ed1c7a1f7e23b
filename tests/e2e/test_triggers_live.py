"""Triggers through a real web process: a signed delivery of each source posts a
request as the room's bot, answered within a second; Linear's comes from the Linear
stand-in itself, registered with `webhookCreate` as a real Linear webhook would be."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests
from standardwebhooks import Webhook as StandardWebhook

from chat.models import Message, Request
from chat.trigger_signatures import github_signature
from tests.plugins.people import token_for
from tests.plugins.stack import wait_for

pytestmark = pytest.mark.e2e

CREATE_HOOK = """mutation($input: WebhookCreateInput!) {
  webhookCreate(input: $input) { success webhook { id } }
}"""
CREATE_ISSUE = """mutation($input: IssueCreateInput!) {
  issueCreate(input: $input) { success issue { identifier } }
}"""
ENG = "team:ENG"


def _graphql(linear_standin, query: str, variables: dict) -> dict:
    answer = requests.post(
        linear_standin.url,
        json={"query": query, "variables": variables},
        headers={"Authorization": "lin_api_e2e"},
        timeout=10,
    ).json()
    assert "errors" not in answer, answer
    return answer["data"]


def test_signed_deliveries_of_each_source_post_requests_as_the_bot(
    stack, room, alice, linear_standin
):
    from standins.linear_data import stable_uuid

    web = stack.web()
    api = {"Authorization": f"Token {token_for(alice)}"}

    def make(source: str, prompt: str) -> dict:
        body = {"source": source, "prompt": prompt}
        made = requests.post(
            f"{web}/api/rooms/triage/triggers", json=body, headers=api, timeout=10
        )
        assert made.status_code == 201, made.text
        return made.json()

    linear = make("linear", "Triage {{ data.identifier }}: {{ data.title }}")
    github = make("github", "GitHub {{ $event }}: {{ issue.title }}")
    generic = make("generic", "Generic {{ $event }}")

    # Linear: the stand-in posts the webhook itself once an issue is created.
    _graphql(
        linear_standin,
        CREATE_HOOK,
        {
            "input": {
                "url": f"{web}/hooks/{linear['id']}",
                "secret": linear["secret"],
                "resourceTypes": ["Issue"],
            }
        },
    )
    issue = _graphql(
        linear_standin,
        CREATE_ISSUE,
        {"input": {"teamId": stable_uuid(ENG), "title": "Checkout is down"}},
    )["issueCreate"]["issue"]["identifier"]

    # GitHub and Standard Webhooks: signed here, as their senders sign.
    body = json.dumps({"action": "opened", "issue": {"title": "Crash"}}).encode()
    github_headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "gh-1",
        "X-Hub-Signature-256": github_signature(github["secret"], body),
    }
    started = time.monotonic()
    answer = requests.post(
        f"{web}/hooks/{github['id']}", data=body, headers=github_headers, timeout=10
    )
    assert time.monotonic() - started < 1.0
    assert answer.status_code == 202, answer.text
    assert answer.json()["event"] == "issues.opened"
    again = requests.post(
        f"{web}/hooks/{github['id']}", data=body, headers=github_headers, timeout=10
    )
    assert again.status_code == 200
    assert again.json() == {"duplicate": True, "request": answer.json()["request"]}

    raw = json.dumps({"type": "deploy.failed"}).encode()
    now = datetime.now(tz=UTC)
    signed = requests.post(
        f"{web}/hooks/{generic['id']}",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": StandardWebhook(generic["secret"]).sign(
                "msg_1", now, raw
            ),
        },
        timeout=10,
    )
    assert signed.status_code == 202, signed.text
    forged = requests.post(
        f"{web}/hooks/{generic['id']}",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "webhook-id": "msg_2",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": "v1,AAAA",
        },
        timeout=10,
    )
    assert forged.status_code == 401

    wait_for(lambda: Request.objects.count() == 3, timeout=15, what="the webhook")
    posted = {r.trigger["source"]: r for r in Request.objects.select_related("user")}
    assert {r.user.username for r in posted.values()} == {"triage-bot"}
    assert posted["linear"].trigger["event"] == "Issue.create"
    contents = {
        source: Message.objects.get(request=request).content
        for source, request in posted.items()
    }
    assert contents == {
        "linear": f"Triage {issue}: Checkout is down",
        "github": "GitHub issues.opened: Crash",
        "generic": "Generic deploy.failed",
    }
    (delivered,) = linear_standin.control("webhook_deliveries")["deliveries"]
    assert delivered["status"] == 202
