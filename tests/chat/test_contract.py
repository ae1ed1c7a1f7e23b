"""What a client generated from the schema relies on: JSON bodies, strict types, an
exact document, and a room that keeps an approver whichever interface changes it."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from chat import services
from chat.models import Action, Membership, Room, User
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    pending_action,
    refusal,
)
from tests.chat.test_consumer import connect, receive_until, run, token_headers


@pytest.fixture
def schema(db) -> dict:
    response = APIClient().get("/api/schema?format=json")
    assert response.status_code == 200
    return response.json()


def _component(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]


def _operation(schema: dict, method: str, path: str) -> dict:
    return schema["paths"][path][method]


def _query(schema: dict, path: str, name: str) -> dict:
    [parameter] = [
        p for p in _operation(schema, "get", path)["parameters"] if p["name"] == name
    ]
    return parameter["schema"]


# JSON only ---------------------------------------------------------------------------


def test_schema_offers_only_json_request_bodies(schema: dict) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                content = set(operation["requestBody"]["content"])
                assert content == {"application/json"}, f"{method} {path}: {content}"
                assert "415" in operation["responses"], f"{method} {path}"


@pytest.mark.parametrize("encoding", ["multipart", "form"])
def test_a_form_encoded_body_gets_415(bob: User, room: Room, encoding: str) -> None:
    client = api(bob)
    body = {"text": "hello"}
    if encoding == "multipart":
        response = client.post("/api/rooms/triage/requests", body, format="multipart")
    else:
        response = client.post(
            "/api/rooms/triage/requests",
            "text=hello",
            content_type="application/x-www-form-urlencoded",
        )
    refusal(response, 415)


# Strict types ------------------------------------------------------------------------

NUMBER = 2.2994177638905172e16


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/rooms/triage/requests", {"text": NUMBER}, "text"),
        ("/api/rooms", {"name": NUMBER}, "name"),
        ("/api/rooms", {"name": "Ok", "slug": -9.44e-97}, "slug"),
        ("/api/rooms/triage/members", {"username": 7, "role": "member"}, "username"),
        ("/api/actions/{action}/approve", {"reason": 5}, "reason"),
        ("/api/actions/{action}/approve", {"arguments": "ENG-3"}, "arguments"),
        ("/api/actions/{action}/deny", {"reason": True}, "reason"),
    ],
)
def test_a_number_where_text_belongs_gets_400_naming_the_field(
    alice: User, bob: User, room: Room, path: str, body: dict, field: str
) -> None:
    action = pending_action(room, bob)
    url = path.format(action=action.pk)
    detail = refusal(api(alice).post(url, body, format="json"), 400)
    assert detail.startswith(f"{field}: "), detail
    assert Room.objects.count() == 1
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING


def test_a_number_as_a_token_username_gets_400(alice: User) -> None:
    response = APIClient().post(
        "/api/auth/token", {"username": 1, "password": 2}, format="json"
    )
    assert refusal(response, 400).startswith("username: ")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"type": "chat", "text": NUMBER}, "text"),
        ({"type": "decide", "decision": "deny", "reason": 0}, "reason"),
    ],
)
def test_a_number_in_a_frame_answers_an_error_naming_the_field(
    room: Room, alice: User, bob: User, frame: dict, field: str
) -> None:
    action = pending_action(room, bob)
    headers = token_headers(alice)

    async def scenario() -> dict:
        ws, _ = await connect(headers)
        await ws.send_to(text_data=json.dumps({**frame, "action": str(action.pk)}))
        frames = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1]

    error = run(scenario())
    assert error["type"] == "error" and error["frame"] == frame["type"]
    assert error["detail"].startswith(f"{field} must be"), error
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING


# An exact schema ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "fields"),
    [
        ("Request", {"status", "error", "usage", "created"}),
        ("Message", {"content", "role", "author"}),
        ("Action", {"reason", "error", "decided_via", "decided_at", "decided_by"}),
        ("Member", {"username", "role"}),
        ("Room", {"slug", "name", "role"}),
    ],
)
def test_fields_the_server_always_answers_are_required(
    schema: dict, component: str, fields: set[str]
) -> None:
    described = _component(schema, component)
    assert fields <= set(described["required"])
    assert set(described["required"]) == set(described["properties"])


def test_schema_states_every_limit_the_server_enforces(schema: dict, settings) -> None:
    assert _query(schema, "/api/actions", "limit") == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
    }
    assert _query(schema, "/api/actions", "room")["pattern"] == "^[-a-zA-Z0-9_]+$"
    assert _query(schema, "/api/rooms/{slug}/events", "limit")["maximum"] == 1000
    assert _query(schema, "/api/rooms/{slug}/events", "after")["minimum"] == 0
    text = _component(schema, "RequestInRequest")["properties"]["text"]
    assert text["minLength"] == 1
    assert text["maxLength"] == settings.AGENT_MAX_INPUT_CHARS
    assert text["pattern"] == r"\S"
    approve = _component(schema, "ApproveInRequest")["properties"]
    assert approve["arguments"]["type"] == "object"
    assert approve["reason"]["maxLength"] == 2000
    room_in = _component(schema, "RoomInRequest")["properties"]
    assert room_in["name"]["maxLength"] == 120 and room_in["name"]["pattern"]
    assert "pattern" in json.dumps(room_in["slug"])


def test_max_input_chars_follows_the_setting_into_the_schema(settings) -> None:
    settings.AGENT_MAX_INPUT_CHARS = 42
    schema = APIClient().get("/api/schema?format=json").json()
    text = _component(schema, "RequestInRequest")["properties"]["text"]
    assert text["maxLength"] == 42


@pytest.mark.parametrize(
    "query",
    ["limit=", "limit=%205", "limit=1_0", "limit=%D9%A3", "status=", "room="],
)
def test_query_values_python_would_coerce_get_400(
    alice: User, room: Room, query: str
) -> None:
    refusal(api(alice).get(f"/api/actions?{query}"), 400)


def test_every_error_answer_is_the_one_error_component(schema: dict) -> None:
    for operations in schema["paths"].values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if status.startswith("4"):
                    body = answer["content"]["application/json"]["schema"]
                    assert body == {"$ref": "#/components/schemas/Error"}


def test_schema_passes_openapi_spec_validator(schema: dict) -> None:
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="openapi-spec-validator is not installed"
    )
    validator.validate(schema)


# A room keeps an approver ------------------------------------------------------------


def test_the_last_approver_cannot_demote_herself_over_rest(
    alice: User, room: Room
) -> None:
    response = api(alice).post(
        "/api/rooms/triage/members",
        {"username": "alice", "role": "member"},
        format="json",
    )
    assert "at least one approver" in refusal(response, 409)
    assert services.room_role(room=room, user=alice) == Membership.Role.APPROVER


def test_an_approver_may_step_down_once_another_approves(
    alice: User, bob: User, room: Room
) -> None:
    client = api(alice)
    promote = {"username": "bob", "role": "approver"}
    response = client.post("/api/rooms/triage/members", promote, format="json")
    assert response.status_code == 201
    demote = {"username": "alice", "role": "member"}
    response = client.post("/api/rooms/triage/members", demote, format="json")
    assert response.status_code == 201
    assert services.room_role(room=room, user=alice) == Membership.Role.MEMBER


def test_the_last_approver_cannot_demote_herself_on_the_page(
    alice: User, room: Room
) -> None:
    client = Client()
    client.force_login(alice)
    response = client.post(
        "/rooms/triage/members", {"username": "alice", "role": "member"}, follow=True
    )
    assert "at least one approver" in response.content.decode()
    assert services.room_role(room=room, user=alice) == Membership.Role.APPROVER


@pytest.fixture
def root(db) -> Client:
    User.objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.login(username="root", password="x")
    return client


def test_the_admin_cannot_demote_the_last_approver(
    root: Client, alice: User, room: Room
) -> None:
    membership = Membership.objects.get(room=room, user=alice)
    url = f"/admin/chat/membership/{membership.pk}/change/"
    body = {"room": room.pk, "user": alice.pk, "role": "member"}
    response = root.post(url, body)
    assert response.status_code == 200  # the form again, with the error
    assert "at least one approver" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == Membership.Role.APPROVER


def test_the_admin_cannot_delete_the_last_approver(
    root: Client, alice: User, room: Room
) -> None:
    membership = Membership.objects.get(room=room, user=alice)
    url = f"/admin/chat/membership/{membership.pk}/delete/"
    response = root.post(url, {"post": "yes"}, follow=True)
    assert "at least one approver" in response.content.decode()
    assert Membership.objects.filter(pk=membership.pk).exists()
    bulk = root.post(
        "/admin/chat/membership/",
        {
            "action": "delete_selected",
            "_selected_action": [membership.pk],
            "post": "yes",
        },
        follow=True,
    )
    assert "at least one approver" in bulk.content.decode()
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_the_room_admin_cannot_drop_the_last_approver_inline(
    root: Client, alice: User, bob: User, room: Room
) -> None:
    memberships = list(Membership.objects.filter(room=room).order_by("pk"))
    body: dict[str, object] = {
        "name": room.name,
        "slug": room.slug,
        "memberships-TOTAL_FORMS": len(memberships),
        "memberships-INITIAL_FORMS": len(memberships),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for i, membership in enumerate(memberships):
        body[f"memberships-{i}-id"] = membership.pk
        body[f"memberships-{i}-room"] = room.pk
        body[f"memberships-{i}-user"] = membership.user_id
        body[f"memberships-{i}-role"] = "member"
        if membership.user_id == alice.pk:
            body[f"memberships-{i}-DELETE"] = "on"
    response = root.post(f"/admin/chat/room/{room.pk}/change/", body)
    assert response.status_code == 200
    assert "at least one approver" in response.content.decode()
    assert services.room_role(room=room, user=alice) == Membership.Role.APPROVER


# Refusals read as sentences ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (Action.Status.EXECUTING, "it is already executing (approved by alice)"),
        (Action.Status.SUCCEEDED, "it has already succeeded (approved by alice)"),
        (Action.Status.DENIED, "it was already denied by alice"),
    ],
)
def test_a_late_decision_says_what_happened_in_a_sentence(
    alice: User, bob: User, room: Room, status: str, says: str
) -> None:
    action = pending_action(room, bob)
    Action.objects.filter(pk=action.pk).update(status=status, decided_by=alice)
    detail = refusal(
        api(alice).post(f"/api/actions/{action.pk}/approve", {}, format="json"), 409
    )
    assert detail == f"This action is no longer pending: {says}.", detail
