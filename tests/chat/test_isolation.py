"""Two deployments on one Redis server, at the level of the room channels and keys.

Deployment A is this test run; B is the namespace another database would give
(`agentsite.env.redis_namespace`). The end-to-end proof, with real processes of both,
is tests/e2e/test_isolation.py; this one adds other database numbers in REDIS_URL,
which Redis's pub/sub ignores.
"""

import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings as django_settings

from agentsite.env import database_from_url, redis_namespace
from chat import presence
from chat.realtime import (
    delta_send,
    ephemeral_send,
    member_evict,
    partial_text,
    publisher,
    room_channel,
)
from chat.redis_client import redis_key

ROOM_ID = 1


def _other_db_number(url: str) -> str:
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(number + 1) % 16}"))


def _heard(pubsub: redis.client.PubSub, wait: float = 0.5) -> list[str]:
    heard, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if message is not None:
            heard.append(message["data"])
    return heard


@pytest.fixture
def namespace_b(tmp_path) -> str:
    """The namespace of a deployment on another database, with this run's prefix."""
    other = database_from_url(f"sqlite:///{tmp_path / 'b.sqlite3'}", tmp_path)
    namespace = redis_namespace(django_settings.REDIS_PREFIX, other)
    assert namespace != django_settings.REDIS_NAMESPACE
    return namespace


@pytest.mark.parametrize("b_url", ["same", "other"], ids=["same-db", "other-db"])
def test_another_deployment_hears_no_event_delta_presence_or_evict(
    db, redis_url, settings, namespace_b, b_url, django_capture_on_commit_callbacks
):
    """Invariant: what deployment A publishes for room 1 reaches A's subscribers of
    room 1 and none of B's, whatever database number B's REDIS_URL names."""
    namespace_a = settings.REDIS_NAMESPACE
    settings.REDIS_NAMESPACE = namespace_b
    channels_b = [room_channel(ROOM_ID), redis_key("hub")]
    settings.REDIS_NAMESPACE = namespace_a
    url_b = redis_url if b_url == "same" else _other_db_number(redis_url)
    client_a = redis.Redis.from_url(redis_url, decode_responses=True)
    client_b = redis.Redis.from_url(url_b, decode_responses=True)
    sub_a, sub_b = client_a.pubsub(), client_b.pubsub()
    try:
        sub_a.subscribe(room_channel(ROOM_ID))
        sub_b.subscribe(*channels_b)
        for pubsub in (sub_a, sub_b):
            _heard(pubsub, 0.1)  # the subscriptions are confirmed

        message_id = uuid.uuid4()
        delta_send(
            room_id=ROOM_ID,
            request_id=uuid.uuid4(),
            message_id=message_id,
            offset=0,
            text="Noted. p0 p1",
        )
        ephemeral_send(ROOM_ID, {"type": "presence", "users": ["alice"]})
        with django_capture_on_commit_callbacks(execute=True):
            member_evict(room_id=ROOM_ID, user_id=7)
        publisher.flush()

        heard_a, heard_b = _heard(sub_a), _heard(sub_b)
    finally:
        for pubsub in (sub_a, sub_b):
            pubsub.close()
        client_a.close()
        client_b.close()
    assert len(heard_a) == 3, heard_a
    assert any("Noted. p0 p1" in text for text in heard_a)
    assert heard_b == []


def test_another_deployment_reads_none_of_the_live_state(settings, namespace_b):
    """Invariant: presence and partial text written by A for room 1 and a message are
    not what B reads for the same room and message, on the same database number."""
    namespace_a, message_id, connection = settings.REDIS_NAMESPACE, uuid.uuid4(), "c1"
    presence.presence_apply({ROOM_ID: {connection: "mallory"}}, {})
    delta_send(
        room_id=ROOM_ID,
        request_id=uuid.uuid4(),
        message_id=message_id,
        offset=0,
        text="Noted. p0",
    )
    publisher.flush()
    try:
        assert "mallory" in presence.presence_list(ROOM_ID)
        assert partial_text(message_id) == "Noted. p0"
        settings.REDIS_NAMESPACE = namespace_b
        assert "mallory" not in presence.presence_list(ROOM_ID)
        assert partial_text(message_id) is None
    finally:
        settings.REDIS_NAMESPACE = namespace_a
        presence.presence_apply({}, {ROOM_ID: {connection: "mallory"}})
