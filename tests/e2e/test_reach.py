"""Webhooks with real workers: a delivery outlives a receiver that is down across a
worker restart (the sweep sends it again), and a flaky receiver gets one logical
delivery. The HTTP receiver is http.server in a thread of this process."""

import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks import Webhook as Verifier

from chat import services
from chat.models import Delivery
from tests.e2e.test_agent import pending
from tests.peers import Receiver
from tests.plugins.stack import wait_for

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-e2e-secret"


@pytest.fixture
def private_ok(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True


def _hook(room, alice, url: str) -> None:
    services.webhook_create(
        room_slug=room.slug,
        user=alice,
        url=url,
        secret=SECRET,
        events=["action.pending"],
    )


def test_a_receiver_down_across_a_worker_restart_still_gets_the_delivery(
    stack, room, alice, bob, private_ok
):
    # Its port held but not listening: the attempts are refused, and no process of
    # a parallel run (a web process, a stand-in) can take the port meanwhile.
    down = Receiver().reserve()
    _hook(room, alice, down.url)
    stack.beat()
    env = {"WEBHOOK_ALLOW_PRIVATE": "1", "DELIVERY_RETRY_BASE": "3"}
    worker = stack.worker("worker-1", **env)
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    pending(request)
    # Recorded, not only claimed (a claim counts the attempt before it is made): a
    # kill between the two would leave no error and a lease to wait out.
    failed = Delivery.objects.filter(last_error__contains="could not reach")
    wait_for(
        failed.exists,
        timeout=30,
        what="a first, failed attempt",
    )
    # Its retry waits in this worker's memory; the kill loses it.
    worker.kill()
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and "could not reach" in delivery.last_error
    down.start()
    try:
        stack.worker("worker-2", **env)
        wait_for(
            lambda: Delivery.objects.filter(status="sent").exists(),
            # A kill that caught the retry between its claim and its record leaves
            # the claim's lease (30 s) to run out first.
            timeout=90,
            what="the sweep's copy of the delivery to get through",
        )
        time.sleep(1)  # a duplicate, if any, would arrive now
    finally:
        down.stop()

    assert {hit.headers["x-agentsite-delivery"] for hit in down.hits} == {
        str(delivery.pk)
    }
    hit = down.hits[0]
    digest = hmac.new(SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hit.headers["x-agentsite-signature"], "sha256=" + digest)
    # Standard Webhooks, signed by the worker that sent it (a legacy secret: its bytes).
    assert Verifier(SECRET.encode()).verify(hit.body, hit.headers)
    assert hit.headers["webhook-id"] == str(delivery.pk)
    assert json.loads(hit.body)["action"]["tool"] == "delete_issue"


def test_a_receiver_failing_twice_gets_one_delivery_from_the_worker(
    stack, room, alice, bob, private_ok, receiver
):
    receiver.script = [500, 502]
    _hook(room, alice, receiver.url)
    stack.worker(WEBHOOK_ALLOW_PRIVATE="1", DELIVERY_RETRY_BASE="0.2")
    request = services.request_start(room=room, user=bob, text="delete ENG-3")
    pending(request)
    wait_for(
        lambda: Delivery.objects.filter(status="sent").exists(),
        timeout=30,
        what="the third attempt to get through",
    )
    assert len(receiver.hits) == 3
    assert len({hit.headers["x-agentsite-delivery"] for hit in receiver.hits}) == 1
    assert Delivery.objects.get().attempts == 3
