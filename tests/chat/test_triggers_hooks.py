"""Contract "`POST /hooks/<id>`: deliveries": real signed bodies through Django's
client, checked by what the room receives (its events and request rows)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from standardwebhooks import Webhook as StandardWebhook

from chat import services
from chat.models import Message, Request, RoomEvent, Trigger, TriggerDelivery, User
from chat.trigger_signatures import github_signature, linear_signature
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    fast_password_hashing,
    forget_throttle_counts,
)

pytestmark = pytest.mark.django_db

GITHUB_SECRET = "It's a Secret to Everybody"


def test_github_published_test_vector() -> None:
    # docs.github.com, "Validating webhook deliveries": its example values.
    assert github_signature(GITHUB_SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def make(alice: User, source: str, **fields: object) -> Trigger:
    data = {"source": source, "prompt": "{{ $event }}: {{ data.title }}", **fields}
    return services.trigger_create(room_slug="triage", user=alice, data=data)


def linear_body(title: str = "Login broken", **extra: object) -> dict:
    return {
        "action": "create",
        "type": "Issue",
        "data": {"id": "i1", "title": title, "team": {"key": "ENG"}},
        "webhookTimestamp": int(time.time() * 1000),
        **extra,
    }


def send(
    trigger: Trigger,
    body: object,
    *,
    delivery: str | None = None,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    event: str = "issues",
    at: datetime | None = None,
):
    """POST `body` to the trigger's hook, signed as its source signs."""
    data = raw if raw is not None else json.dumps(body).encode()
    secret = trigger.secret if secret is None else secret
    delivery = delivery or str(uuid.uuid4())
    sent: dict[str, str] = {}
    if trigger.source == "linear":
        sent = {
            "Linear-Signature": linear_signature(secret, data),
            "Linear-Delivery": delivery,
            "Linear-Event": "Issue",
        }
    elif trigger.source == "github":
        sent = {
            "X-Hub-Signature-256": github_signature(secret, data),
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": event,
        }
    else:
        when = at or datetime.now(tz=UTC)
        sent = {
            "webhook-id": delivery,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": StandardWebhook(secret).sign(delivery, when, data),
        }
    sent.update(headers or {})
    return Client().post(
        f"/hooks/{trigger.pk}",
        data,
        content_type=content_type,
        headers=sent,
    )


def posted() -> list[Request]:
    return list(Request.objects.order_by("created"))


def test_a_signed_linear_delivery_posts_a_request_as_the_bot(alice: User, room) -> None:
    trigger = make(alice, "linear", events=["Issue"])
    response = send(trigger, linear_body(), delivery="d-1")
    assert response.status_code == 202, response.content
    answer = response.json()
    (request,) = posted()
    assert answer == {
        "request": str(request.pk),
        "event": "Issue.create",
        "delivery": "d-1",
    }
    assert request.user == services.room_bot(room)
    assert request.trigger == {
        "kind": "webhook",
        "id": trigger.pk,
        "source": "linear",
        "event": "Issue.create",
        "delivery": "d-1",
    }
    message = Message.objects.get(request=request)
    assert message.content == "Issue.create: Login broken"
    assert message.author.username == "triage-bot"
    types = list(RoomEvent.objects.order_by("seq").values_list("type", flat=True))
    assert types == ["message", "request"]
    trigger.refresh_from_db()
    assert trigger.fired == 1 and trigger.last_fired and trigger.last_delivery
    assert "set-cookie" not in {h.lower() for h in response.headers}


def test_a_github_delivery_names_its_event_with_the_action(alice: User, room) -> None:
    trigger = make(alice, "github", prompt="{{ $event }} {{ issue.title }}")
    body = {"action": "opened", "issue": {"title": "Crash"}}
    response = send(trigger, body, event="issues")
    assert response.status_code == 202, response.content
    assert response.json()["event"] == "issues.opened"
    assert Message.objects.get().content == "issues.opened Crash"
    push = send(trigger, {"ref": "refs/heads/main"}, event="push")
    assert push.json()["event"] == "push"


def test_a_generic_delivery_verifies_with_standard_webhooks(alice: User, room) -> None:
    trigger = make(alice, "generic", prompt="{{ $event }} by {{ $source }}")
    response = send(trigger, {"type": "invoice.paid", "data": {}})
    assert response.status_code == 202, response.content
    assert Message.objects.get().content == "invoice.paid by generic"


def test_a_generic_signature_list_passes_on_one_match(alice: User, room) -> None:
    trigger = make(alice, "generic")
    body = json.dumps({"type": "x"}).encode()
    now = datetime.now(tz=UTC)
    good = StandardWebhook(trigger.secret).sign("m1", now, body)
    other = StandardWebhook("whsec_" + "A" * 43 + "=").sign("m1", now, body)
    header = f"v1a,{good.removeprefix('v1,')} {other} {good}"
    response = send(
        trigger, None, raw=body, delivery="m1", headers={"webhook-signature": header}
    )
    assert response.status_code == 202, response.content


def test_the_same_delivery_twice_posts_once(alice: User, room) -> None:
    trigger = make(alice, "linear")
    body = linear_body()
    first = send(trigger, body, delivery="same")
    again = send(trigger, body, delivery="same")
    assert again.status_code == 200
    assert again.json() == {"duplicate": True, "request": first.json()["request"]}
    assert len(posted()) == 1
    trigger.refresh_from_db()
    assert trigger.fired == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_delivery_at_once_posts_once(alice: User, room) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL")
    trigger = make(alice, "github", prompt="{{ issue.title }}")
    body = {"action": "opened", "issue": {"title": "Crash"}}
    answers: list[int] = []
    start = threading.Barrier(4)

    def deliver() -> None:
        start.wait()
        try:
            answers.append(send(trigger, body, delivery="burst").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 200, 200, 202]
    assert len(posted()) == 1
    assert TriggerDelivery.objects.count() == 1


@pytest.mark.parametrize("source", ["linear", "github", "generic"])
def test_a_bad_signature_gets_401_and_stores_nothing(
    alice: User, room, source: str
) -> None:
    trigger = make(alice, source)
    wrong = "whsec_" + "B" * 43 + "=" if source == "generic" else "w" * 32
    response = send(trigger, linear_body(), secret=wrong)
    assert response.status_code == 401 and response.json()["detail"]
    assert not posted() and not TriggerDelivery.objects.exists()
    assert not RoomEvent.objects.exists()


def test_a_missing_signature_gets_401(alice: User, room) -> None:
    trigger = make(alice, "github")
    response = Client().post(
        f"/hooks/{trigger.pk}",
        b"{}",
        content_type="application/json",
        headers={"X-GitHub-Delivery": "d", "X-GitHub-Event": "issues"},
    )
    assert response.status_code == 401


def test_the_sha1_github_signature_is_not_accepted(alice: User, room) -> None:
    import hashlib
    import hmac

    trigger = make(alice, "github")
    body = b'{"action": "opened"}'
    sha1 = "sha1=" + hmac.new(trigger.secret.encode(), body, hashlib.sha1).hexdigest()
    response = Client().post(
        f"/hooks/{trigger.pk}",
        body,
        content_type="application/json",
        headers={
            "X-Hub-Signature": sha1,
            "X-GitHub-Delivery": "d",
            "X-GitHub-Event": "issues",
        },
    )
    assert response.status_code == 401


def test_a_stale_delivery_gets_401(alice: User, room) -> None:
    linear = make(alice, "linear")
    old = linear_body(webhookTimestamp=int(time.time() * 1000) - 70_000)
    assert send(linear, old).status_code == 401
    future = linear_body(webhookTimestamp=int(time.time() * 1000) + 70_000)
    assert send(linear, future).status_code == 401
    untimed = linear_body()
    del untimed["webhookTimestamp"]
    assert send(linear, untimed).status_code == 401
    generic = make(alice, "generic")
    late = datetime.now(tz=UTC) - timedelta(seconds=301)
    assert send(generic, {"type": "x"}, at=late).status_code == 401
    assert not posted() and not TriggerDelivery.objects.exists()


def test_a_body_that_is_no_object_or_lacks_a_delivery_id_gets_400(
    alice: User, room
) -> None:
    github = make(alice, "github")
    assert send(github, None, raw=b"[1, 2]").status_code == 400
    assert send(github, None, raw=b"not json").status_code == 400
    linear = make(alice, "linear")
    no_id = send(linear, linear_body(), headers={"Linear-Delivery": ""})
    assert no_id.status_code == 400
    assert not posted()


def test_hostile_json_gets_400_or_posts_storable_text(alice: User, room) -> None:
    github = make(alice, "github", prompt="{{ issue.title }} {{ $event }}")
    deep = b"[" * 5000 + b"]" * 5000
    assert send(github, None, raw=deep).status_code == 400
    linear = make(alice, "linear")
    assert (
        send(linear, None, raw=b'{"a":' * 5000 + b"1" + b"}" * 5000).status_code == 401
    )
    raw = b'{"action": "x\\u0000y", "issue": {"title": "a\\u0000b \\ud800"}}'
    answer = send(github, None, raw=raw, event="issues")
    assert answer.status_code == 202, answer.content
    assert Message.objects.get().content == "ab ? issues.xy"
    assert Request.objects.get().trigger["event"] == "issues.xy"


def test_a_disabled_trigger_ignores_and_records_the_delivery(alice: User, room) -> None:
    trigger = make(alice, "linear", enabled=False)
    response = send(trigger, linear_body(), delivery="d-off")
    assert response.status_code == 202
    assert response.json() == {"ignored": "disabled"}
    assert not posted()
    again = send(trigger, linear_body(), delivery="d-off")
    assert again.json() == {"duplicate": True, "request": None}
    trigger.refresh_from_db()
    assert trigger.last_delivery is not None and trigger.fired == 0


def test_events_and_filters_decide_what_fires(alice: User, room) -> None:
    trigger = make(
        alice,
        "linear",
        events=["Comment", "Issue.update"],
        filter={"data.team.key": "ENG"},
    )
    assert send(trigger, linear_body()).json() == {"ignored": "event"}
    updated = linear_body(action="update")
    updated["data"]["team"]["key"] = "OPS"
    assert send(trigger, updated).json() == {"ignored": "filter"}
    updated["data"]["team"]["key"] = "ENG"
    assert send(trigger, updated).status_code == 202
    assert send(trigger, linear_body(type="Comment")).status_code == 202
    # `Issue` does not match `Issues.create`: an entry matches up to a dot.
    prefix = make(alice, "linear", events=["Iss"])
    assert send(prefix, linear_body()).json() == {"ignored": "event"}
    assert len(posted()) == 2


def test_githubs_ping_is_ignored(alice: User, room) -> None:
    trigger = make(alice, "github")
    response = send(trigger, {"zen": "Keep it logically awesome."}, event="ping")
    assert response.status_code == 202 and response.json() == {"ignored": "ping"}
    assert not posted()


def test_a_blank_rendered_prompt_is_ignored(alice: User, room) -> None:
    trigger = make(alice, "linear", prompt="{{ data.missing }}")
    assert send(trigger, linear_body()).json() == {"ignored": "empty"}
    assert not posted()


def test_past_the_rate_a_delivery_gets_429_and_its_retry_can_succeed(
    alice: User, room, settings
) -> None:
    settings.TRIGGER_MAX_PER_MINUTE = 2
    trigger = make(alice, "linear")
    assert send(trigger, linear_body()).status_code == 202
    assert send(trigger, linear_body()).status_code == 202
    refused = send(trigger, linear_body(), delivery="later")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert len(posted()) == 2
    assert not TriggerDelivery.objects.filter(delivery="later").exists()
    # A minute on, the sender's retry of the same delivery posts.
    TriggerDelivery.objects.update(created=timezone.now() - timedelta(seconds=61))
    retried = send(trigger, linear_body(), delivery="later")
    assert retried.status_code == 202 and len(posted()) == 3


def test_an_oversized_body_gets_413_unread(alice: User, room, settings) -> None:
    settings.TRIGGER_MAX_BYTES = 100
    trigger = make(alice, "linear")
    response = send(trigger, linear_body(title="x" * 200))
    assert response.status_code == 413 and response.json()["detail"]
    assert not posted()


def test_a_wrong_content_type_gets_415(alice: User, room) -> None:
    trigger = make(alice, "github")
    form = send(
        trigger, {"action": "opened"}, content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code == 415
    charset = send(
        trigger, {"action": "x"}, content_type="application/json; charset=utf-8"
    )
    assert charset.status_code == 202


def test_unknown_hook_and_other_methods(alice: User, room) -> None:
    trigger = make(alice, "github")
    assert Client().post("/hooks/nope", b"{}", "application/json").status_code == 404
    for bad in ["%00", "x" * 65]:
        assert (
            Client().post(f"/hooks/{bad}", b"{}", "application/json").status_code == 404
        )
    got = Client().get(f"/hooks/{trigger.pk}")
    assert got.status_code == 405 and got.json()["detail"]


def test_an_inserted_value_is_not_evaluated(alice: User, room) -> None:
    trigger = make(alice, "linear", prompt="T: {{ data.title }}")
    send(trigger, linear_body(title="{{ $delivery }} {{ data.id }}"))
    assert Message.objects.get().content == "T: {{ $delivery }} {{ data.id }}"


def test_the_sweep_forgets_old_delivery_ids(alice: User, room, settings) -> None:
    trigger = make(alice, "linear")
    send(trigger, linear_body(), delivery="old")
    send(trigger, linear_body(), delivery="new")
    TriggerDelivery.objects.filter(delivery="old").update(
        created=timezone.now()
        - timedelta(days=settings.TRIGGER_DELIVERY_DAYS, seconds=1)
    )
    assert services.sweep()["forgotten"] == 1
    assert list(TriggerDelivery.objects.values_list("delivery", flat=True)) == ["new"]
