"""Webhooks: the REST of a room's hooks, the SSRF guard, and deliveries to a real
HTTP receiver (http.server in a thread): signed, retried with one id, given up,
sent again."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from chat import services
from chat.models import Action, Delivery, PolicyRule, Room, User, Webhook
from chat.services import notify
from tasks.tasks import deliver as deliver_task
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    pending_action,
    refusal,
)
from tests.peers import Receiver

SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture
def allow_private(settings) -> None:
    # The receiver listens on 127.0.0.1, which the guard refuses by default.
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.DELIVERY_RETRY_BASE = 0.01


def _hook(room: Room, alice: User, url: str, **body: object) -> dict:
    response = api(alice).post(
        f"/api/rooms/{room.slug}/webhooks", {"url": url, **body}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def _becomes_pending(
    room: Room, bob: User, django_capture_on_commit_callbacks
) -> Action:
    """An action as the agent's step leaves it: created and emitted in one commit."""
    with django_capture_on_commit_callbacks(execute=False):
        with transaction.atomic():
            action = pending_action(room, bob)
            # As the step announces it: the room event, then the outbox rows.
            services.action_notify(action, services.action_emit(action))
    return action


def _send_all() -> None:
    # What a worker does with each queued delivery (retries included, eagerly).
    for pk in Delivery.objects.filter(status="pending").values_list("pk", flat=True):
        deliver_task.apply(args=[str(pk)])


# REST and the SSRF guard -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
    ],
)
def test_webhook_to_a_private_address_gets_400(room, alice, url):
    response = api(alice).post(
        f"/api/rooms/{room.slug}/webhooks", {"url": url}, format="json"
    )
    assert "private" in refusal(response, 400)
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/hook",  # shared address space (carrier NAT)
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[2002:0a00:0001::]/hook",  # 6to4 of 10.0.0.1
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",  # Teredo, 10.0.0.1
        "http://[::ffff:10.0.0.1]/hook",  # IPv4-mapped
        "http://[::10.0.0.1]/hook",  # IPv4-compatible
        "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
        "http://192.0.2.1/hook",  # documentation
    ],
)
def test_a_webhook_to_any_address_that_is_not_global_gets_400(room, alice, url):
    response = api(alice).post(
        f"/api/rooms/{room.slug}/webhooks", {"url": url}, format="json"
    )
    assert "not public" in refusal(response, 400)
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/hook", "http://[2002:808:808::1]/hook"]
)
def test_a_global_address_and_6to4_of_one_are_accepted(room, alice, url):
    # Checked only, never reached: creating a webhook sends nothing.
    assert _hook(room, alice, url)["url"] == url


def test_private_addresses_are_allowed_when_configured(room, alice, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert _hook(room, alice, "http://127.0.0.1:9/hook")["url"]


def test_created_webhook_shows_its_generated_secret_once(room, alice, allow_private):
    created = _hook(room, alice, "http://127.0.0.1:9/hook")
    assert set(created) >= {"id", "url", "events", "format", "secret"}
    assert len(created["secret"]) >= 32
    assert created["events"] == [
        "action.pending",
        "action.decided",
        "request.ended",
        "action.escalated",
        "policy.changed",
    ]
    assert created["format"] == "json"
    listed = api(alice).get(f"/api/rooms/{room.slug}/webhooks").json()
    assert [hook["id"] for hook in listed] == [created["id"]]
    assert "secret" not in listed[0]


def test_only_approvers_manage_webhooks(room, alice, bob, mallory, allow_private):
    body = {"url": "http://127.0.0.1:9/hook"}
    refusal(api(bob).post(f"/api/rooms/{room.slug}/webhooks", body, format="json"), 403)
    refusal(api(bob).get(f"/api/rooms/{room.slug}/webhooks"), 403)
    refusal(api(mallory).get(f"/api/rooms/{room.slug}/webhooks"), 404)
    hook = _hook(room, alice, body["url"])
    path = f"/api/rooms/{room.slug}/webhooks/{hook['id']}"
    refusal(api(bob).delete(path), 403)
    assert api(alice).delete(path).status_code == 204
    refusal(api(alice).delete(path), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/"},
        {"url": "http://[::1/hook"},
        {"url": "http://example.com:99999/"},
        {"url": ["http://example.com/"]},
        {},
        {"url": "https://example.com/", "events": ["action.exploded"]},
        {"url": "https://example.com/", "events": []},
        {"url": "https://example.com/", "format": "xml"},
        {"url": "https://example.com/", "secret": "short"},
    ],
)
def test_bad_webhook_bodies_get_400(room, alice, body, allow_private):
    refusal(
        api(alice).post(f"/api/rooms/{room.slug}/webhooks", body, format="json"), 400
    )


# Deliveries to a real receiver -----------------------------------------------------


def test_receiver_failing_twice_gets_one_logical_delivery_with_one_id(
    room,
    alice,
    bob,
    receiver: Receiver,
    allow_private,
    django_capture_on_commit_callbacks,
):
    _hook(room, alice, receiver.url, secret=SECRET, events=["action.pending"])
    receiver.script = [500, 503]
    action = _becomes_pending(room, bob, django_capture_on_commit_callbacks)

    _send_all()

    assert len(receiver.hits) == 3
    ids = {hit.headers["x-agentsite-delivery"] for hit in receiver.hits}
    assert len(ids) == 1
    assert len({hit.body for hit in receiver.hits}) == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, str(delivery.pk)) == (
        "sent",
        3,
        ids.pop(),
    )
    hit = receiver.hits[-1]
    expected = hmac.new(SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(
        hit.headers["x-agentsite-signature"], f"sha256={expected}"
    )
    assert hit.headers["x-agentsite-event"] == "action.pending"
    body = json.loads(hit.body)
    assert body["id"] == str(delivery.pk)
    assert body["type"] == "action.pending"
    assert body["room"] == {"slug": "triage", "name": "Triage"}
    assert body["action"]["id"] == str(action.pk)
    assert body["decide_url"].startswith("http")
    assert body["decide_url"] == body["action"]["decide_url"]


def test_a_vote_that_keeps_it_pending_reports_nothing_new(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    _hook(room, alice, receiver.url)
    action = _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        services.action_notify(action, services.action_emit(action))
    assert Delivery.objects.filter(event="action.pending").count() == 1


def test_decisions_and_ended_requests_are_reported(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    _hook(room, alice, receiver.url, events=["action.decided", "request.ended"])
    action = _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        services.action_decide(
            action_id=str(action.pk), user=alice, decision="deny", reason="no"
        )
    assert list(Delivery.objects.values_list("event", flat=True)) == ["action.decided"]
    _send_all()
    body = json.loads(receiver.hits[0].body)
    assert (body["type"], body["action"]["status"]) == ("action.decided", "denied")

    with django_capture_on_commit_callbacks(execute=False):
        services.request_cancel(request_id=str(action.request_id), user=bob)
    ended = Delivery.objects.get(event="request.ended")
    assert json.loads(ended.body)["request"]["status"] == "cancelled"


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    room,
    alice,
    bob,
    receiver,
    allow_private,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.DELIVERY_MAX_ATTEMPTS = 2
    _hook(room, alice, receiver.url, events=["action.pending"])
    receiver.script = [302, 302]
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    assert [hit.path for hit in receiver.hits] == ["/hook", "/hook"]
    delivery = Delivery.objects.get()
    assert delivery.status == "failed"
    assert "redirect" in delivery.last_error


def test_a_delivery_is_given_up_with_its_last_error_then_resent(
    room,
    alice,
    bob,
    receiver,
    allow_private,
    settings,
    django_capture_on_commit_callbacks,
):
    _hook(room, alice, receiver.url, secret=SECRET, events=["action.pending"])
    receiver.script = [500] * settings.DELIVERY_MAX_ATTEMPTS
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 6)
    assert delivery.last_error == "HTTP 500"
    assert SECRET not in delivery.last_error

    with django_capture_on_commit_callbacks(execute=False):
        assert services.delivery_resend(delivery_ids=[str(delivery.pk)]) == 1
    _send_all()
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert len({hit.headers["x-agentsite-delivery"] for hit in receiver.hits}) == 1


def test_the_backoff_spreads_five_retries_over_more_than_a_minute(settings):
    waits = [notify.backoff(n) for n in range(1, settings.DELIVERY_MAX_ATTEMPTS)]
    assert settings.DELIVERY_MAX_ATTEMPTS >= 5
    assert sum(waits) >= 60
    assert len({round(w, 6) for w in waits}) == len(waits)


def test_the_guard_is_applied_again_at_send_time(
    room,
    alice,
    bob,
    receiver,
    allow_private,
    settings,
    django_capture_on_commit_callbacks,
):
    _hook(room, alice, receiver.url, events=["action.pending"])
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.DELIVERY_MAX_ATTEMPTS = 1
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    assert receiver.hits == []
    assert "private" in Delivery.objects.get().last_error


def test_slack_format_posts_block_kit_with_a_button_to_decide(
    room, alice, bob, receiver, allow_private, django_capture_on_commit_callbacks
):
    _hook(room, alice, receiver.url, format="slack", events=["action.pending"])
    action = _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    message = json.loads(receiver.hits[0].body)
    assert "delete_issue" in message["text"] and "Triage" in message["text"]
    assert "ENG-3" in message["blocks"][0]["text"]["text"]
    [button] = message["blocks"][1]["elements"]
    assert button["url"].endswith(
        f"/decide/{action.pk}:" + button["url"].split(":")[-1]
    )


def test_the_sweep_resends_a_delivery_whose_task_was_lost(
    room,
    alice,
    bob,
    receiver,
    allow_private,
    task_queue,
    django_capture_on_commit_callbacks,
):
    _hook(room, alice, receiver.url, events=["action.pending"])
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    assert services.sweep()["deliveries"] == 1
    sent = [m for m in task_queue() if m["task"] == "notify.deliver"]
    assert len(sent) == 1 and str(delivery.pk) in sent[0]["argsrepr"]


def test_the_admin_shows_a_failed_delivery_and_sends_it_again(
    room,
    alice,
    bob,
    receiver,
    allow_private,
    settings,
    django_capture_on_commit_callbacks,
):
    from django.test import Client

    settings.DELIVERY_MAX_ATTEMPTS = 1
    _hook(room, alice, receiver.url, secret=SECRET, events=["action.pending"])
    receiver.script = [500]
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    delivery = Delivery.objects.get()
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    page = admin.get("/admin/chat/delivery/?status__exact=failed").content.decode()
    assert "HTTP 500" in page and "action.pending" in page
    hooks = admin.get("/admin/chat/webhook/").content.decode()
    assert receiver.url in hooks and SECRET not in hooks
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin.post(
            "/admin/chat/delivery/",
            {"action": "resend", "_selected_action": [str(delivery.pk)]},
        )
    assert response.status_code == 302 and len(queued) == 1
    _send_all()
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_the_send_connects_to_the_address_it_checked(
    room,
    alice,
    bob,
    receiver,
    allow_private,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """DNS rebinding: the name is resolved once per attempt, by the guard, and the
    connection goes to that address (the Host header still names the host)."""
    import socket

    real = socket.getaddrinfo
    answers = {"rebind.test": 1}

    def resolve(host, *args, **kwargs):
        if host == "rebind.test":
            if not answers["rebind.test"]:
                raise socket.gaierror("resolved a second time")
            answers["rebind.test"] -= 1
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    url = f"http://rebind.test:{receiver.port}/hook"
    hook = Webhook.objects.create(room=room, url=url, events=["action.pending"])
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    assert Delivery.objects.get(webhook=hook).status == "sent"
    assert receiver.hits[0].headers["host"] == f"rebind.test:{receiver.port}"


def test_each_change_is_reported_by_the_service_that_makes_it(
    room, alice, bob, receiver, allow_private
):
    """Proposed (the agent's step), approved, retracted, expired, denied by the
    policy: each service writes the outbox rows of its own change, once each."""
    from tests.chat.test_policies import approve, propose, rule

    _hook(room, alice, receiver.url, events=["action.pending", "action.decided"])
    held = rule(room, tool="delete_issue", delay=60)
    action = propose(room, bob)
    assert approve(alice, action).json()["status"] == "approved"
    retracted = api(alice).post(
        f"/api/actions/{action.pk}/retract", {"reason": "wrong"}, format="json"
    )
    assert retracted.status_code == 200, retracted.content
    past = timezone.now() - timedelta(seconds=1)
    Action.objects.filter(pk=action.pk).update(expires_at=past)
    assert services.action_expire_overdue() == 1
    PolicyRule.objects.filter(pk=held.pk).update(mode=PolicyRule.Mode.NEVER)
    refused = propose(room, bob)
    assert refused.status == Action.Status.DENIED

    reported = sorted(
        (row.event, json.loads(row.body)["action"]["status"], row.key.split(":")[1])
        for row in Delivery.objects.all()
    )
    first, second = str(action.pk), str(refused.pk)
    assert reported == sorted(
        [
            ("action.pending", "pending", first),  # proposed
            ("action.decided", "approved", first),
            ("action.pending", "pending", first),  # retracted: it waits again
            ("action.decided", "pending", first),  # ... and the retraction itself
            ("action.decided", "expired", first),
            ("action.decided", "denied", second),  # by the policy, at once
        ]
    )
