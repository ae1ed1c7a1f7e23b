"""Linear's webhooks, as the stand-in sends them (Linear's "Webhooks" docs): a
registered URL (`webhookCreate`) gets a POST for each change of a resource type it
subscribed to, signed with `Linear-Signature` (hex HMAC-SHA256 of the raw body,
keyed with the webhook's secret), with `Linear-Delivery` (a UUID), `Linear-Event`
(the type) and `webhookTimestamp` (Unix ms) in the body.

The stand-in sends `Issue.create` when an issue is created through its API, from a
thread of its own (Linear sends after the mutation has answered), once: what each
POST answered is kept for tests (`GET /_control/webhook_deliveries`).
"""

import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from . import linear_data

TIMEOUT = 5  # Linear gives a receiver 5 s


def new_secret() -> str:
    return "lin_wh_" + secrets.token_hex(24)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def issue_body(
    action: str, issue: dict, team: dict, state: dict, hook: dict, url: str
) -> dict[str, Any]:
    """The body Linear posts for an issue event."""
    return {
        "action": action,
        "type": "Issue",
        "createdAt": issue["updatedAt"],
        "organizationId": linear_data.stable_uuid("organization"),
        "url": url,
        "data": {
            "id": issue["id"],
            "identifier": issue["identifier"],
            "number": issue["number"],
            "title": issue["title"],
            "description": issue.get("description"),
            "priority": issue.get("priority", 0),
            "teamId": team["id"],
            "team": {"id": team["id"], "key": team["key"], "name": team["name"]},
            "stateId": state["id"],
            "state": {"id": state["id"], "name": state["name"], "type": state["type"]},
            "assigneeId": issue.get("assigneeId"),
            "createdAt": issue["createdAt"],
            "updatedAt": issue["updatedAt"],
            "url": url,
        },
        "webhookTimestamp": int(time.time() * 1000),
        "webhookId": hook["id"],
    }


def send_later(hook: dict, body: dict[str, Any], log: list[dict]) -> None:
    """POST `body` to the hook's URL from a thread; append the outcome to `log`."""
    thread = threading.Thread(
        target=_send, args=(hook, body, log), name="linear-webhook", daemon=True
    )
    thread.start()


def _send(hook: dict, body: dict[str, Any], log: list[dict]) -> None:
    raw = json.dumps(body).encode()
    delivery = str(uuid.uuid4())
    request = urllib.request.Request(
        hook["url"],
        data=raw,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Linear-Webhook",
            "Linear-Delivery": delivery,
            "Linear-Event": body["type"],
            "Linear-Signature": sign(hook["secret"], raw),
        },
    )
    outcome: dict[str, Any] = {"webhook": hook["id"], "delivery": delivery}
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            outcome.update(status=answer.status, body=_json(answer.read()))
    except urllib.error.HTTPError as error:
        outcome.update(status=error.code, body=_json(error.read()))
    except OSError as error:
        outcome.update(status=None, error=str(error))
    log.append(outcome)
    sys.stderr.write(
        f"linear-standin webhook {body['type']}.{body['action']} -> {hook['url']} "
        f"{outcome.get('status')}\n"
    )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
