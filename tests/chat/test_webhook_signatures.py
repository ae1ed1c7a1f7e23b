"""Standard Webhooks 1.0 signatures (contract: "Webhook signatures"), checked the way
a receiver checks them: real deliveries to a real HTTP receiver, verified with the
`standardwebhooks` library itself; replays refused; secrets rotated without a gap."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks.webhooks
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from chat.models import Delivery, Room, User, Webhook
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    refusal,
)
from tests.chat.test_webhooks import _becomes_pending, _hook, _send_all, allow_private
from tests.peers import Hit, Receiver

__all__ = ["allow_private"]

LEGACY = "s3cret-s3cret-s3cret"


def _whsec(size: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(size))).decode()


def _rotate(room: Room, alice: User, hook: dict, **body: object):
    return api(alice).post(
        f"/api/rooms/{room.slug}/webhooks/{hook['id']}/rotate", body, format="json"
    )


def _verify(secret: str | bytes, hit: Hit) -> object:
    return Verifier(secret).verify(hit.body, hit.headers)


class _Later(datetime):
    """The receiver's clock, six minutes on: past the library's 5-minute window."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return datetime.now(tz) + timedelta(minutes=6)


def test_every_attempt_verifies_with_standardwebhooks_under_one_id(
    room,
    alice,
    bob,
    receiver: Receiver,
    allow_private,
    django_capture_on_commit_callbacks,
):
    secret = _hook(room, alice, receiver.url, events=["action.pending"])["secret"]
    receiver.script = [500]
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()

    assert len(receiver.hits) == 2
    delivery = Delivery.objects.get()
    for hit in receiver.hits:
        body = _verify(secret, hit)
        assert isinstance(body, dict) and body["type"] == "action.pending"
        # One id everywhere: the header, the legacy header and the body's.
        assert hit.headers["webhook-id"] == str(delivery.pk)
        assert hit.headers["x-agentsite-delivery"] == str(delivery.pk)
        assert body["id"] == str(delivery.pk)
        assert "." not in hit.headers["webhook-id"]
        stamp = int(hit.headers["webhook-timestamp"])
        assert abs(stamp - datetime.now(UTC).timestamp()) < 60
        assert hit.headers["webhook-signature"].startswith("v1,")
        # The legacy headers are still sent in this release.
        assert hit.headers["x-agentsite-event"] == "action.pending"
        assert hit.headers["x-agentsite-signature"].startswith("sha256=")


def test_a_generated_secret_is_whsec_of_32_bytes(room, alice, allow_private):
    secret = _hook(room, alice, "http://127.0.0.1:9/hook")["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_a_replayed_delivery_is_refused_by_the_receiver(
    room,
    alice,
    bob,
    receiver,
    allow_private,
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    secret = _hook(room, alice, receiver.url, events=["action.pending"])["secret"]
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    (hit,) = receiver.hits
    _verify(secret, hit)  # fresh: accepted

    # The same request sent again with a new timestamp: the signature no longer fits.
    restamped = {
        **hit.headers,
        "webhook-timestamp": str(int(datetime.now(UTC).timestamp()) + 1),
    }
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Verifier(secret).verify(hit.body, restamped)
    # A body changed under the original headers: refused too.
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Verifier(secret).verify(hit.body.replace(b"Triage", b"Triagf"), hit.headers)

    # Replayed as is, six minutes later by the receiver's clock: too old.
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", _Later)
    with pytest.raises(WebhookVerificationError, match="too old"):
        _verify(secret, hit)


def test_a_legacy_secret_keys_the_signature_with_its_utf8_bytes(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    _hook(room, alice, receiver.url, secret=LEGACY, events=["action.pending"])
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    (hit,) = receiver.hits
    assert _verify(LEGACY.encode(), hit)


@pytest.mark.parametrize("size", [24, 32, 64])
def test_a_given_whsec_secret_of_24_to_64_bytes_signs(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks, size
):
    secret = _whsec(size)
    assert _hook(room, alice, receiver.url, secret=secret)["secret"] == secret
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    assert _verify(secret, receiver.hits[0])


@pytest.mark.parametrize(
    "secret",
    [
        _whsec(23),
        _whsec(65),
        "whsec_" + "!" * 40,  # not base64
        "whsec_" + base64.b64encode(bytes(32)).decode() + "A",  # broken base64
    ],
)
def test_a_whsec_secret_that_is_not_base64_of_24_to_64_bytes_gets_400(
    room, alice, allow_private, secret
):
    response = api(alice).post(
        f"/api/rooms/{room.slug}/webhooks",
        {"url": "http://127.0.0.1:9/hook", "secret": secret},
        format="json",
    )
    assert "whsec_" in refusal(response, 400)
    assert not Webhook.objects.exists()


def test_slack_posts_are_unsigned(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    _hook(room, alice, receiver.url, format="slack", events=["action.pending"])
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    (hit,) = receiver.hits
    signed = {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert not signed & set(hit.headers)
    assert "x-agentsite-signature" not in hit.headers


# Rotation ---------------------------------------------------------------------------


def test_during_a_rotation_a_receiver_holding_either_secret_verifies(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    hook = _hook(room, alice, receiver.url, events=["action.pending"])
    old = hook["secret"]
    response = _rotate(room, alice, hook)
    assert response.status_code == 200, response.content
    rotated = response.json()
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old
    until = datetime.fromisoformat(rotated["previous_secret_until"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(hours=24)
    listed = api(alice).get(f"/api/rooms/{room.slug}/webhooks").json()
    assert listed[0]["previous_secret_until"] == rotated["previous_secret_until"]
    assert "secret" not in listed[0]

    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    (hit,) = receiver.hits
    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    assert _verify(old, hit) == _verify(new, hit)


def test_a_rotation_without_overlap_stops_the_old_secret_at_once(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    hook = _hook(room, alice, receiver.url, secret=LEGACY, events=["action.pending"])
    given = _whsec(40)
    rotated = _rotate(room, alice, hook, secret=given, overlap=0).json()
    assert (rotated["secret"], rotated["previous_secret_until"]) == (given, None)

    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    (hit,) = receiver.hits
    assert _verify(given, hit)
    with pytest.raises(WebhookVerificationError):
        _verify(LEGACY.encode(), hit)


def test_a_legacy_secret_rotates_into_whsec_with_both_signing_meanwhile(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    # The migration path off unprefixed secrets: no delivery goes unverifiable.
    hook = _hook(room, alice, receiver.url, secret=LEGACY, events=["action.pending"])
    new = _rotate(room, alice, hook, overlap=3600).json()["secret"]
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    (hit,) = receiver.hits
    assert _verify(LEGACY.encode(), hit) and _verify(new, hit)


def test_rotating_twice_keeps_only_the_two_newest_secrets(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    hook = _hook(room, alice, receiver.url, events=["action.pending"])
    first = hook["secret"]
    second = _rotate(room, alice, hook).json()["secret"]
    third = _rotate(room, alice, hook).json()["secret"]
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    (hit,) = receiver.hits
    assert _verify(second, hit) and _verify(third, hit)
    with pytest.raises(WebhookVerificationError):
        _verify(first, hit)


def test_only_approvers_rotate_and_bad_rotations_get_400(
    room, alice, bob, mallory, allow_private
):
    hook = _hook(room, alice, "http://127.0.0.1:9/hook")
    refusal(_rotate(room, bob, hook), 403)
    refusal(_rotate(room, mallory, hook), 404)
    for body in (
        {"overlap": -1},
        {"overlap": 8 * 24 * 3600},
        {"overlap": "60"},
        {"overlap": True},
        {"secret": _whsec(8)},
        {"secret": "short"},
        {"secret": 12345678901234567},
    ):
        refusal(_rotate(room, alice, hook, **body), 400)
    refusal(_rotate(room, alice, {"id": "nope"}), 404)
    path = f"/api/rooms/{room.slug}/webhooks/{hook['id']}/rotate"
    refusal(api(alice).post(path, [1], format="json"), 400)
    # Nothing changed by the refusals.
    assert Webhook.objects.get().secret == hook["secret"]
    assert json.loads(json.dumps(Webhook.objects.get().previous_secret)) == ""
