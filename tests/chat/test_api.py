"""The REST API of the contract: authentication, rooms, members, requests, events
and the error bodies. Actions and their decisions are in test_api_actions.py."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.http import HttpResponseBase
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from chat import services
from chat.models import Action, Membership, Message, Request, Room, User
from chat.redis_client import redis_client
from tests.plugins.people import token_for

# Helpers shared with test_api_actions.py and test_openapi.py ------------------------


def api(user: User | None = None) -> APIClient:
    """A client that authenticates like a script does: `Authorization: Token <key>`."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def refusal(response: HttpResponseBase, status: int) -> str:
    """Assert the contract's error shape, `{"detail": "..."}` as JSON; return detail."""
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


def pending_action(
    room: Room,
    author: User,
    *,
    tool: str = "delete_issue",
    arguments: dict | None = None,
    call: str = "call_1",
) -> Action:
    """An action awaiting approval, as the agent leaves it after proposing a call."""
    agent_request = services.request_start(room=room, user=author, text="Delete ENG-3")
    Request.objects.filter(pk=agent_request.pk).update(
        step=1, status=Request.Status.AWAITING_APPROVAL
    )
    return Action.objects.create(
        request=agent_request,
        room=room,
        step=0,
        tool=tool,
        tool_call_id=call,
        arguments={"id": "ENG-3"} if arguments is None else arguments,
        requires_approval=True,
        status=Action.Status.PENDING,
        preview={"identifier": "ENG-3", "title": "Flaky login", "state": "Todo"},
    )


def _forget_cached_counts() -> None:
    # cache.clear() would FLUSHDB the Redis that Celery and other test runs share;
    # drop only the keys of this run's cache prefix.
    prefix = django_settings.CACHES["default"]["KEY_PREFIX"]
    client = redis_client()
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The default hasher takes over a second per user on a busy machine, and the
    # named users are made for every test; these tests are not about hashing.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        # The named users' hashes (tests/plugins/people.py) are PBKDF2.
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture(autouse=True)
def forget_throttle_counts() -> Iterator[None]:
    """Throttle counts live in the shared Redis cache and outlive a test."""
    _forget_cached_counts()
    yield
    _forget_cached_counts()


# Authentication ---------------------------------------------------------------------


@pytest.fixture
def everything(room: Room, alice: User, bob: User) -> dict[str, str]:
    action = pending_action(room, bob)
    return {
        "slug": room.slug,
        "request": str(action.request_id),
        "action": str(action.id),
    }


PROTECTED = [
    ("get", "/api/rooms"),
    ("post", "/api/rooms"),
    ("get", "/api/rooms/{slug}"),
    ("post", "/api/rooms/{slug}/members"),
    ("post", "/api/rooms/{slug}/requests"),
    ("get", "/api/rooms/{slug}/events"),
    ("get", "/api/requests/{request}"),
    ("post", "/api/requests/{request}/cancel"),
    ("get", "/api/actions"),
    ("get", "/api/actions/{action}"),
    ("post", "/api/actions/{action}/approve"),
    ("post", "/api/actions/{action}/deny"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_credentials_get_401(everything: dict, method: str, path: str) -> None:
    response = getattr(APIClient(), method)(
        path.format(**everything), {}, format="json"
    )
    refusal(response, 401)
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_unknown_token_gets_401(everything: dict, method: str, path: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = getattr(client, method)(path.format(**everything), {}, format="json")
    refusal(response, 401)


def test_unauthenticated_requests_change_nothing(everything: dict) -> None:
    APIClient().post(f"/api/actions/{everything['action']}/approve", {}, format="json")
    APIClient().post(f"/api/requests/{everything['request']}/cancel")
    assert Action.objects.get().status == Action.Status.PENDING
    assert Request.objects.get().status == Request.Status.AWAITING_APPROVAL


def test_token_of_an_inactive_user_gets_401(alice: User, room: Room) -> None:
    client = api(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    refusal(client.get("/api/rooms"), 401)


def test_logged_out_session_gets_401(alice: User, room: Room) -> None:
    client = APIClient()
    assert client.login(username="alice", password="alice-pass")
    assert client.get("/api/rooms").status_code == 200
    client.logout()
    refusal(client.get("/api/rooms"), 401)


def test_token_endpoint_returns_a_working_token(alice: User, room: Room) -> None:
    response = APIClient().post(
        "/api/auth/token",
        {"username": "alice", "password": "alice-pass"},
        format="json",
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert [r["slug"] for r in client.get("/api/rooms").json()] == ["triage"]


def test_each_login_gets_a_token_of_its_own(alice: User) -> None:
    # Keys are stored hashed: an earlier one cannot be handed out again. Both work
    # until they expire or are revoked (tests/chat/test_tokens.py).
    body = {"username": "alice", "password": "alice-pass"}
    first = APIClient().post("/api/auth/token", body, format="json").json()["token"]
    second = APIClient().post("/api/auth/token", body, format="json").json()["token"]
    assert first != second
    for key in (first, second):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/rooms").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": "alice-pass"},
        {"username": "alice"},
        {"password": "alice-pass"},
        {"username": "", "password": ""},
        {},
    ],
)
def test_bad_credentials_at_token_endpoint_get_400(alice: User, body: dict) -> None:
    refusal(APIClient().post("/api/auth/token", body, format="json"), 400)


def test_inactive_user_gets_no_token(alice: User) -> None:
    User.objects.filter(pk=alice.pk).update(is_active=False)
    body = {"username": "alice", "password": "alice-pass"}
    refusal(APIClient().post("/api/auth/token", body, format="json"), 400)


# Sessions and CSRF ------------------------------------------------------------------


def _browser(username: str) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username=username, password=f"{username}-pass")
    return client


def test_session_reads_without_csrf_token(alice: User, room: Room) -> None:
    response = _browser("alice").get("/api/rooms/triage")
    assert response.status_code == 200
    assert response.json()["role"] == "approver"


def test_session_post_without_csrf_token_is_refused(alice: User) -> None:
    response = _browser("alice").post("/api/rooms", {"name": "Ops"}, format="json")
    assert "CSRF" in refusal(response, 403)
    assert not Room.objects.filter(slug="ops").exists()


def test_session_post_with_wrong_csrf_token_is_refused(alice: User) -> None:
    client = _browser("alice")
    client.get("/accounts/login/")  # the page sets the csrftoken cookie
    response = client.post(
        "/api/rooms", {"name": "Ops"}, format="json", HTTP_X_CSRFTOKEN="x" * 64
    )
    assert "CSRF" in refusal(response, 403)
    assert not Room.objects.filter(slug="ops").exists()


def test_session_post_with_csrf_token_succeeds(alice: User) -> None:
    client = _browser("alice")
    client.get("/accounts/login/")  # the page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/api/rooms", {"name": "Ops"}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201
    assert Room.objects.filter(slug="ops").exists()


def test_token_post_needs_no_csrf_token(alice: User) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(alice)}")
    assert client.post("/api/rooms", {"name": "Ops"}, format="json").status_code == 201


# Throttling -------------------------------------------------------------------------


@pytest.fixture
def tiny_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF copies DEFAULT_THROTTLE_RATES onto the class when it is imported, so an
    # override of settings.REST_FRAMEWORK would not reach it; patch the class.
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"anon": "2/min", "user": "3/min"}
    )


def test_user_over_the_rate_gets_429(tiny_rates: None, alice: User, room: Room) -> None:
    client = api(alice)
    for _ in range(3):
        assert client.get("/api/rooms").status_code == 200
    response = client.get("/api/rooms")
    assert "throttled" in refusal(response, 429)
    assert int(response["Retry-After"]) > 0


def test_throttle_counts_each_user_separately(
    tiny_rates: None, alice: User, bob: User, room: Room
) -> None:
    for _ in range(3):
        api(alice).get("/api/rooms")
    refusal(api(alice).get("/api/rooms"), 429)
    assert api(bob).get("/api/rooms").status_code == 200


def test_throttle_counts_live_in_the_shared_cache(
    tiny_rates: None, alice: User
) -> None:
    api(alice).get("/api/rooms")
    prefix = django_settings.CACHES["default"]["KEY_PREFIX"]
    keys = list(redis_client().scan_iter(match=f"{prefix}:*throttle_user_{alice.pk}"))
    assert len(keys) == 1


def test_anonymous_over_the_rate_gets_429_at_token_endpoint(
    tiny_rates: None, alice: User
) -> None:
    body = {"username": "alice", "password": "alice-pass"}
    for _ in range(2):
        assert (
            APIClient().post("/api/auth/token", body, format="json").status_code == 200
        )
    refusal(APIClient().post("/api/auth/token", body, format="json"), 429)


# Errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/nowhere", "/api/rooms/triage/nothing", "/api/", "/api/rooms/"]
)
def test_unknown_api_path_gets_404_json(alice: User, room: Room, path: str) -> None:
    assert refusal(api(alice).get(path), 404) == "Not found."


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/requests/not-a-uuid"),
        ("post", "/api/requests/not-a-uuid/cancel"),
        ("get", "/api/requests/12345"),
    ],
)
def test_malformed_request_id_gets_404_json(
    alice: User, room: Room, method: str, path: str
) -> None:
    refusal(getattr(api(alice), method)(path), 404)


def test_unknown_request_id_gets_404(alice: User, room: Room) -> None:
    refusal(api(alice).get(f"/api/requests/{uuid.uuid4()}"), 404)


def test_unsupported_method_gets_405_json(alice: User, room: Room) -> None:
    refusal(api(alice).delete("/api/rooms/triage"), 405)
    assert Room.objects.filter(slug="triage").exists()


def test_malformed_json_body_gets_400(alice: User, room: Room) -> None:
    response = api(alice).post(
        "/api/rooms/triage/requests", "{", content_type="application/json"
    )
    refusal(response, 400)
    assert not Request.objects.exists()


def test_json_body_that_is_not_an_object_gets_400(alice: User, room: Room) -> None:
    refusal(api(alice).post("/api/rooms", ["Ops"], format="json"), 400)


# Rooms ------------------------------------------------------------------------------


def test_rooms_lists_only_the_users_rooms_with_their_role(
    alice: User, bob: User, mallory: User, room: Room
) -> None:
    services.room_create(user=mallory, name="Secret", slug="secret")
    assert api(alice).get("/api/rooms").json() == [
        {"slug": "triage", "name": "Triage", "role": "approver"}
    ]
    assert api(bob).get("/api/rooms").json() == [
        {"slug": "triage", "name": "Triage", "role": "member"}
    ]
    assert [r["slug"] for r in api(mallory).get("/api/rooms").json()] == ["secret"]


def test_outsider_sees_no_rooms(mallory: User, room: Room) -> None:
    response = api(mallory).get("/api/rooms")
    assert response.status_code == 200
    assert response.json() == []


def test_creating_a_room_makes_the_creator_its_approver(bob: User) -> None:
    response = api(bob).post(
        "/api/rooms", {"name": "Release Crew", "slug": "release"}, format="json"
    )
    assert response.status_code == 201
    assert response.json() == {
        "slug": "release",
        "name": "Release Crew",
        "role": "approver",
    }
    membership = Membership.objects.get(room__slug="release")
    assert (membership.user, membership.role) == (bob, Membership.Role.APPROVER)


def test_creating_a_room_without_the_permission_gets_403(mallory: User) -> None:
    response = api(mallory).post("/api/rooms", {"name": "Mine"}, format="json")
    assert "chat.add_room" in refusal(response, 403)
    assert not Room.objects.exists()


def test_creating_a_room_without_slug_derives_it_from_the_name(bob: User) -> None:
    response = api(bob).post("/api/rooms", {"name": "Release Crew"}, format="json")
    assert response.status_code == 201
    assert response.json()["slug"] == "release-crew"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 121},
        {"name": 2.2994177638905172e16},
        {"name": "Ok", "slug": -9.44e-97},
        {"name": "Ok", "slug": "--"},
        {"name": "Ok", "slug": "no spaces"},
    ],
)
def test_creating_a_room_with_bad_name_gets_400(bob: User, body: dict) -> None:
    detail = refusal(api(bob).post("/api/rooms", body, format="json"), 400)
    assert ("slug" if "slug" in body else "name") in detail
    assert not Room.objects.exists()


@pytest.mark.parametrize("name", ["!!!", "日本語の部屋"])
def test_room_whose_name_slugifies_to_nothing_gets_a_generated_slug(
    bob: User, name: str
) -> None:
    # The schema cannot say "a name with an ASCII letter": every name it allows works.
    response = api(bob).post("/api/rooms", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == name
    assert re.fullmatch(r"room-[0-9a-f]{8}", response.json()["slug"])


def test_creating_a_room_with_a_taken_slug_gets_409(bob: User, room: Room) -> None:
    response = api(bob).post("/api/rooms", {"name": "Triage"}, format="json")
    refusal(response, 409)
    assert Room.objects.get(slug="triage").created_by.username == "alice"


def test_room_detail_lists_members_with_roles(bob: User, room: Room) -> None:
    response = api(bob).get("/api/rooms/triage")
    assert response.status_code == 200
    body = response.json()
    assert (body["slug"], body["name"], body["role"]) == ("triage", "Triage", "member")
    assert sorted(body["members"], key=lambda m: m["username"]) == [
        {"username": "alice", "role": "approver"},
        {"username": "bob", "role": "member"},
    ]


def test_outsider_gets_404_for_a_room_like_a_missing_one(
    mallory: User, room: Room
) -> None:
    hidden = refusal(api(mallory).get("/api/rooms/triage"), 404)
    missing = refusal(api(mallory).get("/api/rooms/nope"), 404)
    assert hidden == missing


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/rooms/tri%00age"),
        ("get", "/api/rooms/tri%00age/events"),
        ("post", "/api/rooms/tri%00age/requests"),
        ("post", "/api/rooms/tri%00age/members"),
        ("get", "/api/rooms/tri.age"),
        ("get", "/api/rooms/%C3%A9t%C3%A9"),
    ],
)
def test_room_path_that_is_no_slug_gets_404_json(
    bob: User, room: Room, method: str, path: str
) -> None:
    # A NUL character reaching a PostgreSQL query would be a 500.
    response = getattr(api(bob), method)(path, {"text": "hi"}, format="json")
    refusal(response, 404)


# Members ----------------------------------------------------------------------------


def test_approver_adds_a_member(alice: User, mallory: User, room: Room) -> None:
    response = api(alice).post(
        "/api/rooms/triage/members",
        {"username": "mallory", "role": "member"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json() == {"username": "mallory", "role": "member"}
    assert api(mallory).get("/api/rooms/triage").json()["role"] == "member"


def test_approver_promotes_a_member_who_may_then_add_members(
    alice: User, bob: User, mallory: User, room: Room
) -> None:
    response = api(alice).post(
        "/api/rooms/triage/members",
        {"username": "bob", "role": "approver"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json() == {"username": "bob", "role": "approver"}
    response = api(bob).post(
        "/api/rooms/triage/members",
        {"username": "mallory", "role": "member"},
        format="json",
    )
    assert response.status_code == 201


def test_member_adding_members_gets_403(bob: User, mallory: User, room: Room) -> None:
    response = api(bob).post(
        "/api/rooms/triage/members",
        {"username": "mallory", "role": "member"},
        format="json",
    )
    refusal(response, 403)
    assert not Membership.objects.filter(user=mallory).exists()


def test_member_promoting_himself_gets_403(bob: User, room: Room) -> None:
    response = api(bob).post(
        "/api/rooms/triage/members",
        {"username": "bob", "role": "approver"},
        format="json",
    )
    refusal(response, 403)
    assert Membership.objects.get(user=bob).role == Membership.Role.MEMBER


def test_outsider_adding_herself_gets_404(mallory: User, room: Room) -> None:
    response = api(mallory).post(
        "/api/rooms/triage/members",
        {"username": "mallory", "role": "approver"},
        format="json",
    )
    refusal(response, 404)
    assert not Membership.objects.filter(user=mallory).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "mallory", "role": "owner"},
        {"username": 7, "role": "member"},
        {"username": "mallory"},
        {"role": "member"},
    ],
)
def test_adding_a_member_with_bad_input_gets_400(
    alice: User, mallory: User, room: Room, body: dict
) -> None:
    refusal(api(alice).post("/api/rooms/triage/members", body, format="json"), 400)
    assert not Membership.objects.filter(user=mallory).exists()


def test_adding_someone_who_does_not_exist_gets_404(alice: User, room: Room) -> None:
    # A well-formed body naming nobody: like any other thing that is not there.
    body = {"username": "nobody", "role": "member"}
    response = api(alice).post("/api/rooms/triage/members", body, format="json")
    assert "nobody" in refusal(response, 404)


# Requests ---------------------------------------------------------------------------


def test_posting_a_request_answers_202_queued(bob: User, room: Room) -> None:
    response = api(bob).post(
        "/api/rooms/triage/requests", {"text": "What is open?"}, format="json"
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["room"], body["status"], body["user"]) == ("triage", "queued", "bob")
    assert {"id", "error", "created", "usage"} <= body.keys()
    agent_request = Request.objects.get(pk=body["id"])
    message = Message.objects.get(request=agent_request)
    assert (message.role, message.content, message.author) == (
        "user",
        "What is open?",
        bob,
    )


def test_request_detail_has_messages_and_actions(bob: User, room: Room) -> None:
    action = pending_action(room, bob)
    response = api(bob).get(f"/api/requests/{action.request_id}")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["room"], body["status"]) == (
        str(action.request_id),
        "triage",
        "awaiting_approval",
    )
    [message] = body["messages"]
    assert (message["role"], message["content"], message["author"]) == (
        "user",
        "Delete ENG-3",
        "bob",
    )
    assert message["request"] == str(action.request_id)
    [shown] = body["actions"]
    assert (shown["id"], shown["tool"], shown["status"]) == (
        str(action.id),
        "delete_issue",
        "pending",
    )


def test_text_of_max_length_is_accepted(settings, bob: User, room: Room) -> None:
    settings.AGENT_MAX_INPUT_CHARS = 10
    response = api(bob).post(
        "/api/rooms/triage/requests", {"text": "x" * 10}, format="json"
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"text": "x" * 11},
        {"text": ""},
        {"text": "  \n\t "},
        {"text": None},
        {"text": "nul \x00 inside"},
        {},
    ],
    ids=["too-long", "empty", "blank", "null", "nul-char", "missing"],
)
def test_bad_text_gets_400(settings, bob: User, room: Room, body: dict) -> None:
    settings.AGENT_MAX_INPUT_CHARS = 10
    refusal(api(bob).post("/api/rooms/triage/requests", body, format="json"), 400)
    assert not Request.objects.exists()
    assert not Message.objects.exists()


def test_default_max_input_is_10000_characters(bob: User, room: Room) -> None:
    client = api(bob)
    ok = client.post(
        "/api/rooms/triage/requests", {"text": "x" * 10_000}, format="json"
    )
    assert ok.status_code == 202
    too_long = {"text": "x" * 10_001}
    refusal(client.post("/api/rooms/triage/requests", too_long, format="json"), 400)


def test_outsider_posting_a_request_gets_404(mallory: User, room: Room) -> None:
    response = api(mallory).post(
        "/api/rooms/triage/requests", {"text": "hello"}, format="json"
    )
    refusal(response, 404)
    assert not Request.objects.exists()


def test_outsider_gets_404_for_a_request(bob: User, mallory: User, room: Room) -> None:
    action = pending_action(room, bob)
    hidden = refusal(api(mallory).get(f"/api/requests/{action.request_id}"), 404)
    assert hidden == refusal(api(mallory).get(f"/api/requests/{uuid.uuid4()}"), 404)


def test_decider_may_read_requests_of_any_room(
    bob: User, staff_decider: User, room: Room
) -> None:
    action = pending_action(room, bob)
    response = api(staff_decider).get(f"/api/requests/{action.request_id}")
    assert response.status_code == 200


def test_author_cancels_own_request_and_its_pending_actions(
    bob: User, room: Room
) -> None:
    action = pending_action(room, bob)
    response = api(bob).post(f"/api/requests/{action.request_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    action.refresh_from_db()
    assert action.status == Action.Status.CANCELLED
    detail = api(bob).get(f"/api/requests/{action.request_id}").json()
    assert detail["status"] == "cancelled"
    assert detail["actions"][0]["status"] == "cancelled"


def test_approver_cancels_a_members_request(alice: User, bob: User, room: Room) -> None:
    action = pending_action(room, bob)
    response = api(alice).post(f"/api/requests/{action.request_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_member_cancelling_someone_elses_request_gets_403(
    alice: User, bob: User, room: Room
) -> None:
    action = pending_action(room, alice)
    refusal(api(bob).post(f"/api/requests/{action.request_id}/cancel"), 403)
    assert Request.objects.get().status == Request.Status.AWAITING_APPROVAL
    assert Action.objects.get().status == Action.Status.PENDING


def test_outsider_cancelling_gets_404(bob: User, mallory: User, room: Room) -> None:
    action = pending_action(room, bob)
    refusal(api(mallory).post(f"/api/requests/{action.request_id}/cancel"), 404)
    assert Request.objects.get().status == Request.Status.AWAITING_APPROVAL


def test_cancelling_twice_gets_409(bob: User, room: Room) -> None:
    action = pending_action(room, bob)
    client = api(bob)
    assert client.post(f"/api/requests/{action.request_id}/cancel").status_code == 200
    assert "cancelled" in refusal(
        client.post(f"/api/requests/{action.request_id}/cancel"), 409
    )


@pytest.mark.parametrize("ended", ["completed", "failed"])
def test_cancelling_an_ended_request_gets_409(
    bob: User, room: Room, ended: str
) -> None:
    agent_request = services.request_start(room=room, user=bob, text="hi")
    Request.objects.filter(pk=agent_request.pk).update(status=ended)
    refusal(api(bob).post(f"/api/requests/{agent_request.pk}/cancel"), 409)
    assert Request.objects.get().status == ended


# Events -----------------------------------------------------------------------------


def _two_requests(room: Room, bob: User) -> list[Request]:
    return [
        services.request_start(room=room, user=bob, text=text)
        for text in ("first", "second")
    ]


def test_events_come_in_seq_order_with_last_seq(bob: User, room: Room) -> None:
    first, second = _two_requests(room, bob)
    response = api(bob).get("/api/rooms/triage/events")
    assert response.status_code == 200
    body = response.json()
    seqs = [event["seq"] for event in body["events"]]
    assert seqs == list(range(1, 5))
    assert body["last_seq"] == 4
    assert body["has_more"] is False
    assert [event["type"] for event in body["events"]] == [
        "message",
        "request",
        "message",
        "request",
    ]
    message, request_event = body["events"][:2]
    assert message["message"]["content"] == "first"
    assert message["message"]["author"] == "bob"
    assert request_event["request"] == {
        "id": str(first.pk),
        "status": "queued",
        "error": "",
        "trigger": None,
    }


def test_events_after_a_seq_skip_the_earlier_ones(bob: User, room: Room) -> None:
    _two_requests(room, bob)
    body = api(bob).get("/api/rooms/triage/events?after=2").json()
    assert [event["seq"] for event in body["events"]] == [3, 4]
    assert body["events"][0]["message"]["content"] == "second"
    assert (body["last_seq"], body["has_more"]) == (4, False)


def test_events_after_the_last_seq_are_empty(bob: User, room: Room) -> None:
    _two_requests(room, bob)
    body = api(bob).get("/api/rooms/triage/events?after=4").json()
    assert body == {"events": [], "last_seq": 4, "has_more": False}


def test_events_of_a_quiet_room_are_empty_at_seq_0(bob: User, room: Room) -> None:
    body = api(bob).get("/api/rooms/triage/events").json()
    assert body == {"events": [], "last_seq": 0, "has_more": False}


def test_events_page_says_has_more_when_limited(bob: User, room: Room) -> None:
    _two_requests(room, bob)
    client = api(bob)
    page = client.get("/api/rooms/triage/events?after=0&limit=3").json()
    assert [event["seq"] for event in page["events"]] == [1, 2, 3]
    assert (page["last_seq"], page["has_more"]) == (4, True)
    rest = client.get("/api/rooms/triage/events?after=3&limit=3").json()
    assert [event["seq"] for event in rest["events"]] == [4]
    assert rest["has_more"] is False


def test_events_include_a_cancel(bob: User, room: Room) -> None:
    action = pending_action(room, bob)
    seq = api(bob).get("/api/rooms/triage/events").json()["last_seq"]
    api(bob).post(f"/api/requests/{action.request_id}/cancel")
    events = api(bob).get(f"/api/rooms/triage/events?after={seq}").json()["events"]
    assert [(e["type"], e["seq"]) for e in events] == [
        ("action", seq + 1),
        ("request", seq + 2),
    ]
    assert events[0]["action"]["status"] == "cancelled"
    assert events[1]["request"]["status"] == "cancelled"


@pytest.mark.parametrize(
    "query",
    [
        "after=abc",
        "after=-1",
        "after=1.5",
        "after=99999999999999999999",
        "limit=0",
        "limit=1001",
        "limit=x",
    ],
)
def test_bad_events_query_gets_400(bob: User, room: Room, query: str) -> None:
    refusal(api(bob).get(f"/api/rooms/triage/events?{query}"), 400)


def test_outsider_gets_404_for_events(bob: User, mallory: User, room: Room) -> None:
    _two_requests(room, bob)
    refusal(api(mallory).get("/api/rooms/triage/events"), 404)
    refusal(api(mallory).get("/api/rooms/triage/events?after=abc"), 404)
