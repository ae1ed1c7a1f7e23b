"""How each source signs a delivery, and what it calls its event and its delivery id
(contract: "`POST /hooks/<id>`: deliveries"). Pure functions over the raw body and
the headers; all three are HMAC-SHA256 compared in constant time.

- Linear: `Linear-Signature: <hex>` of the raw body, keyed with the secret's UTF-8
  bytes; fresh when the body's `webhookTimestamp` (Unix ms) is within 60 s of now.
- GitHub: `X-Hub-Signature-256: sha256=<hex>` the same way; no timestamp (the
  delivery id alone stops replays).
- Standard Webhooks ("generic"): the `standardwebhooks` library, which checks the
  signature of `<webhook-id>.<webhook-timestamp>.<body>` and a 300 s window.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from chat.errors import Invalid
from chat.text import storable

LINEAR_WINDOW_MS = 60_000
GENERIC_PREFIX = "whsec_"
GENERIC_KEY_BYTES = (24, 64)
SHARED_SECRET_CHARS = (16, 200)


class Unverified(Exception):
    """The signature or the timestamp failed: 401, nothing stored."""


def secret_new(source: str) -> str:
    """A fresh secret: 64 hex characters, or `whsec_` + base64 of 32 bytes."""
    if source == "generic":
        return GENERIC_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_hex(32)


def secret_clean(source: str, secret: object) -> str:
    """A secret given for `source`, or Invalid (400) saying what it must be."""
    if source == "generic":
        key = None
        if isinstance(secret, str) and secret.startswith(GENERIC_PREFIX):
            key = _b64(secret[len(GENERIC_PREFIX) :])
        low, high = GENERIC_KEY_BYTES
        if key is None or not low <= len(key) <= high:
            raise Invalid(
                f"secret must be {GENERIC_PREFIX} followed by the base64 of {low} "
                f"to {high} bytes."
            )
        assert isinstance(secret, str)
        return secret
    low, high = SHARED_SECRET_CHARS
    if not isinstance(secret, str) or not low <= len(secret) <= high:
        raise Invalid(f"secret must be text of {low} to {high} characters.")
    if not storable(secret):
        raise Invalid("secret contains a NUL character or invalid Unicode.")
    return secret


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _hex_hmac(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()


def _same(expected: bytes, given: str | None) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(expected, given.encode("utf-8", "surrogateescape"))


def github_signature(secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256` as GitHub sends it."""
    return "sha256=" + _hex_hmac(secret, body).decode()


def linear_signature(secret: str, body: bytes) -> str:
    """`Linear-Signature` as Linear sends it."""
    return _hex_hmac(secret, body).decode()


def verify(
    *, source: str, secret: str, headers: Mapping[str, str], body: bytes
) -> None:
    """Checks 4 and 5: the signature, then the timestamp; Unverified if either
    fails. `headers` are keyed in lower case."""
    if source == "linear":
        if not _same(_hex_hmac(secret, body), headers.get("linear-signature")):
            raise Unverified("The Linear-Signature does not match.")
        _linear_fresh(body)
    elif source == "github":
        expected = b"sha256=" + _hex_hmac(secret, body)
        if not _same(expected, headers.get("x-hub-signature-256")):
            raise Unverified("The X-Hub-Signature-256 does not match.")
    else:
        try:
            StandardWebhook(secret).verify(body, dict(headers), json_parse=False)
        except WebhookVerificationError as error:
            raise Unverified(
                f"The webhook signature does not verify: {error}."
            ) from None


def _linear_fresh(body: bytes) -> None:
    try:
        stamp = json.loads(body).get("webhookTimestamp")
    except (ValueError, AttributeError, RecursionError):
        stamp = None
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        raise Unverified("The body has no webhookTimestamp.")
    if abs(time.time() * 1000 - stamp) > LINEAR_WINDOW_MS:
        raise Unverified("The webhookTimestamp is more than 60 s from now.")


def event_name(*, source: str, headers: Mapping[str, str], body: dict[str, Any]) -> str:
    """`Issue.create` (Linear), `issues.opened` or `push` (GitHub), the body's
    `type` (generic)."""
    if source == "github":
        event = headers.get("x-github-event", "")
        action = body.get("action")
        return f"{event}.{action}" if isinstance(action, str) and action else event
    kind = body.get("type")
    kind = kind if isinstance(kind, str) else ""
    if source == "linear":
        if not kind:
            kind = headers.get("linear-event", "")
        action = body.get("action")
        return f"{kind}.{action}" if isinstance(action, str) and action else kind
    return kind


DELIVERY_HEADERS = {
    "linear": "linear-delivery",
    "github": "x-github-delivery",
    "generic": "webhook-id",
}
