"""The Linear stand-in's webhooks: `webhookCreate` registers a URL, and an issue
created through the API is posted there as Linear posts it, signed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from chat.trigger_signatures import verify
from standins.linear_data import stable_uuid
from standins.linear_server import SUBSET_PATH, LinearStandin, load_schema

FULL_SCHEMA = Path("/work/shared/linear/schema.graphql")
SCHEMAS = [SUBSET_PATH] + ([FULL_SCHEMA] if FULL_SCHEMA.is_file() else [])

CREATE_HOOK = """mutation($input: WebhookCreateInput!) {
  webhookCreate(input: $input) { success webhook { id url enabled secret } }
}"""
CREATE_ISSUE = """mutation($input: IssueCreateInput!) {
  issueCreate(input: $input) { success issue { id identifier } }
}"""


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/x"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(
            ({k.lower(): v for k, v in self.headers.items()}, body)
        )
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda p: p.name)
def test_an_issue_created_through_the_api_is_posted_signed(
    receiver: Receiver, schema: Path
) -> None:
    linear = LinearStandin(("127.0.0.1", 0), schema=load_schema(str(schema)))
    threading.Thread(target=linear.serve_forever, daemon=True).start()
    try:

        def call(query: str, variables: dict) -> dict:
            answer = requests.post(
                linear.url,
                json={"query": query, "variables": variables},
                headers={"Authorization": "lin_api_test"},
                timeout=10,
            ).json()
            assert "errors" not in answer, answer
            return answer["data"]

        secret = "s" * 32
        hook = call(
            CREATE_HOOK,
            {
                "input": {
                    "url": receiver.url,
                    "secret": secret,
                    "resourceTypes": ["Issue"],
                }
            },
        )["webhookCreate"]["webhook"]
        assert hook["enabled"] and hook["secret"] == secret
        team = stable_uuid("team:ENG")
        issue = call(CREATE_ISSUE, {"input": {"teamId": team, "title": "Crash"}})
        deadline = time.monotonic() + 5
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        ((headers, body),) = receiver.received
        verify(source="linear", secret=secret, headers=headers, body=body)
        sent = json.loads(body)
        assert (sent["type"], sent["action"]) == ("Issue", "create")
        assert sent["data"]["identifier"] == issue["issueCreate"]["issue"]["identifier"]
        assert sent["data"]["title"] == "Crash" and sent["webhookId"] == hook["id"]
        assert headers["linear-event"] == "Issue" and headers["linear-delivery"]
    finally:
        linear.shutdown()
        linear.server_close()
