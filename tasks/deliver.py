"""Sending the outbox: webhook POSTs (signed per Standard Webhooks 1.0) and email,
one attempt per call.

The rules (claims, attempts, backoff, giving up) are in `chat.services.notify`; this
is the wire. Errors are recorded without the URL or the secret: a Slack webhook's
URL is itself a credential, and requests' messages name it.
"""

import logging
import smtplib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone
from requests.adapters import HTTPAdapter

from chat import metrics, probes, services
from chat.errors import AppError
from chat.models import Delivery, Webhook
from chat.webhooks import signature, standard_headers, url_check

logger = logging.getLogger(__name__)

TIMEOUT = 10


def deliver(*, delivery_id: str) -> float | None:
    """Try one delivery once; the seconds until it should be tried again, or None."""
    delivery = services.delivery_claim(delivery_id=delivery_id)
    if delivery is None:
        return None
    try:
        if delivery.channel == Delivery.Channel.WEBHOOK:
            _post(delivery)
        else:
            _mail(delivery)
    except SendError as exc:
        error: str | None = str(exc)
        logger.info(
            "delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, exc
        )
    except Exception as exc:
        # Any other error (a header Django refuses, a bug) is an attempt that failed,
        # counted like the others: left uncaught, the claim's lease would lapse and
        # the sweep send it again forever. Only its type is kept: a message may name
        # the URL, itself a credential for Slack.
        error = f"could not send ({type(exc).__name__})"
        logger.warning(
            "delivery %s attempt %s failed: %s",
            delivery.pk,
            delivery.attempts,
            type(exc).__name__,
        )
    else:
        error = None
    countdown = services.delivery_record(delivery=delivery, error=error)
    hook = delivery.webhook
    metrics.delivery_attempted(
        kind=probes.delivery_kind(delivery.channel, hook.format if hook else None),
        outcome=(
            "ok"
            if error is None
            else "gave_up"
            if delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS
            else "retry"
        ),
    )
    return countdown


class SendError(Exception):
    """An attempt that did not get through; its text is safe to store and show."""


def _post(delivery: Delivery) -> None:
    hook = delivery.webhook
    if hook is None:
        raise SendError("the webhook was deleted")
    try:
        # Again at send time: the name may resolve elsewhere than at creation.
        address = url_check(hook.url)
    except AppError as exc:
        raise SendError(exc.detail) from None
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "agentsite-webhooks",
        "X-Agentsite-Event": delivery.event,
        "X-Agentsite-Delivery": str(delivery.pk),
    }
    if hook.format == Webhook.Format.JSON:
        # Slack's incoming webhooks are posted unsigned, as Slack expects.
        now = timezone.now()
        headers.update(
            standard_headers(
                msg_id=str(delivery.pk),
                body=body,
                secrets=hook.signing_secrets(now),
                at=now,
            )
        )
        # Legacy, kept for this release only (see the README's migration note).
        headers["X-Agentsite-Signature"] = signature(hook.secret, body)
    url, session = _pinned(hook.url, address, headers)
    try:
        with session:
            response = session.post(
                url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
            )
    except requests.Timeout:
        raise SendError(f"no answer in {TIMEOUT} s") from None
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise SendError(f"could not reach the receiver ({reason})") from None
    if response.is_redirect:
        raise SendError(f"HTTP {response.status_code}: redirects are not followed")
    if not 200 <= response.status_code < 300:
        raise SendError(f"HTTP {response.status_code}")


def _pinned(
    url: str, address: str, headers: dict[str, str]
) -> tuple[str, requests.Session]:
    """The URL with its host replaced by the vetted address, and a session that
    still names the host (Host header; TLS's SNI and certificate check)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between us and it
    if parts.scheme == "https":
        session.mount("https://", _NamedTLS(host))
    return urlunsplit(parts._replace(netloc=netloc)), session


class _NamedTLS(HTTPAdapter):
    """Connects to an address while TLS checks the certificate of the host name."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


def _mail(delivery: Delivery) -> None:
    message = EmailMessage(
        subject=delivery.subject, body=delivery.body, to=[delivery.to]
    )
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP: {type(exc).__name__}: {exc}") from None
