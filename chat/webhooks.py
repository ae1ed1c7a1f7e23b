"""Webhook rules the domain and the sender share: the SSRF guard, the secrets and
signatures (Standard Webhooks 1.0, and the legacy `X-Agentsite-Signature`) and the
bodies (ours, and Slack's incoming-webhook message)."""

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from standardwebhooks import Webhook as StandardWebhook

from chat.errors import Invalid

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address in their low 32 bits: IPv4-compatible
# (deprecated, ::/96) and NAT64's well-known prefix (RFC 6052), which a NAT64 gateway
# forwards to that IPv4 address.
_EMBEDDING_LOW_32 = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("64:ff9b::/96"),
)


def _embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped, 6to4 (2002::/16),
    Teredo (2001::/32: its server and its client), IPv4-compatible, NAT64."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in net for net in _EMBEDDING_LOW_32):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _refused(address: Address) -> bool:
    # Anything not globally reachable: private, loopback, link-local (cloud metadata),
    # shared address space (100.64.0.0/10, carrier NAT and some clouds' metadata),
    # documentation, reserved; and an IPv6 address that tunnels to such an IPv4 one.
    if not address.is_global or address.is_multicast:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        return any(not v4.is_global for v4 in _embedded(address))
    return False


def private_allowed() -> bool:
    return bool(settings.DEBUG or settings.WEBHOOK_ALLOW_PRIVATE)


def url_check(url: str) -> str:
    """Refuse a URL that is not http(s) or whose host resolves to a private address;
    the address to connect to.

    Every address the name resolves to is checked, not only the first: a name with
    one public and one loopback address would otherwise pass. Called when a webhook
    is created and again before each send, whose connection goes to the address
    returned here: a name that resolves elsewhere a moment later (DNS rebinding)
    does not get the request there.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed [ of an IPv6 host, a port out of range
        raise Invalid("url must be an http or https URL with a host.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("url must be an http or https URL with a host.")
    try:
        infos = socket.getaddrinfo(parts.hostname, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Invalid(f"url's host {parts.hostname} does not resolve.") from None
    addresses = [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
    if not private_allowed() and any(_refused(a) for a in addresses):
        raise Invalid(
            f"url's host {parts.hostname} resolves to an address that is not "
            "public (loopback, private, shared, link-local, metadata or reserved); "
            "webhooks may not reach those."
        )
    return str(addresses[0])


def signature(secret: str, body: bytes) -> str:
    """`X-Agentsite-Signature` (legacy, dropped after this release): sha256=<hex
    HMAC-SHA256 of the raw body>, keyed with the secret's text as given."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_check(secret: str) -> None:
    """Refuse a `whsec_` secret that is not base64 of 24 to 64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return  # a legacy secret: keyed by its UTF-8 bytes
    key = _decoded(secret[len(SECRET_PREFIX) :])
    low, high = SECRET_BYTES
    if key is None or not low <= len(key) <= high:
        raise Invalid(
            f"secret: a {SECRET_PREFIX} secret must be followed by the base64 of "
            f"{low} to {high} bytes."
        )


def _decoded(text: str) -> bytes | None:
    try:
        # Padding optional, as Standard Webhooks libraries accept it.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _signer(secret: str) -> StandardWebhook:
    if secret.startswith(SECRET_PREFIX):
        return StandardWebhook(secret)
    # Deprecated unprefixed secrets (webhooks made before whsec_): their UTF-8 bytes.
    return StandardWebhook(secret.encode())


def standard_headers(
    *, msg_id: str, body: bytes, secrets: Iterable[str], at: datetime
) -> dict[str, str]:
    """The Standard Webhooks 1.0 headers of one attempt: `webhook-id` (stable across
    retries), `webhook-timestamp` (this attempt's) and `webhook-signature`, one
    `v1,<base64>` per secret, space-separated (two while a secret rotates)."""
    signatures = [
        _signer(s).sign(msg_id=msg_id, timestamp=at, data=body) for s in secrets
    ]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def slack_message(body: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (Block Kit) for one of our bodies."""
    room = body["room"]["name"]
    action = body.get("action")
    if body["type"] == "policy.changed":
        policy = body["policy"]
        rule = policy["rule"]
        text = (
            f"The approval policy of {room} changed ({policy['change']} by "
            f"{policy['actor']}): {rule['tool']} {rule['mode']}"
        )
        return {"text": text, "blocks": [_section(text)]}
    if action is None:
        request = body.get("request") or {}
        text = f"A request in {room} ended: {request.get('status', '')}"
        return {"text": text, "blocks": [_section(text)]}
    tool, status = action["tool"], action["status"]
    if body["type"] == "action.pending":
        text = f"{tool} in {room} waits for approval"
    elif body["type"] == "action.escalated":
        names = ", ".join(body.get("escalated_to") or [])
        text = f"{tool} in {room} escalated to {names}"
    else:
        text = f"{tool} in {room}: {status}"
    lines = [f"*{_escape(text)}*"]
    preview = action.get("preview")
    if preview:
        lines.append(_escape(json.dumps(preview, ensure_ascii=False))[:2000])
    blocks: list[dict[str, Any]] = [_section("\n".join(lines), mrkdwn=True)]
    if body["type"] in ("action.pending", "action.escalated") and body.get(
        "decide_url"
    ):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Approve or deny"},
                        "url": body["decide_url"],
                        "style": "primary",
                    }
                ],
            }
        )
    return {"text": text, "blocks": blocks}


def _section(text: str, mrkdwn: bool = False) -> dict[str, Any]:
    kind = "mrkdwn" if mrkdwn else "plain_text"
    return {"type": "section", "text": {"type": kind, "text": text[:3000]}}


def _escape(text: str) -> str:
    # Slack's mrkdwn: only these three need escaping.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
