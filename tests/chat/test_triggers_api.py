"""Contract "Triggers": the REST calls, their fields and who may make them."""

from __future__ import annotations

import base64
import re

import pytest

from chat.models import Trigger, User
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    refusal,
)

pytestmark = pytest.mark.django_db

URL = "/api/rooms/triage/triggers"


def create(user: User, **body: object) -> dict:
    body = {"source": "linear", "prompt": "New: {{ data.title }}", **body}
    response = api(user).post(URL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_created_trigger_shows_its_secret_once(alice: User, room, settings) -> None:
    made = create(alice, name="Linear issues", events=["Issue.create"])
    assert re.fullmatch(r"[0-9a-f]{64}", made["secret"])
    assert len(made["id"]) >= 22  # 128 random bits in URL-safe base64 at least
    assert made["url"] == f"{settings.SITE_URL}/hooks/{made['id']}"
    assert made["author"] == "triage-bot" and made["created_by"] == "alice"
    assert made["enabled"] is True and made["fired"] == 0
    assert made["last_delivery"] is None and made["last_fired"] is None
    assert made["filter"] == {} and made["events"] == ["Issue.create"]
    listed = api(alice).get(URL).json()
    assert [t["id"] for t in listed] == [made["id"]]
    assert "secret" not in listed[0]
    one = api(alice).get(f"{URL}/{made['id']}").json()
    assert "secret" not in one and one["name"] == "Linear issues"


def test_generated_secrets_follow_the_source(alice: User, room) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", create(alice, source="github")["secret"])
    generic = create(alice, source="generic")["secret"]
    assert generic.startswith("whsec_")
    assert len(base64.b64decode(generic.removeprefix("whsec_"))) == 32


@pytest.mark.parametrize(
    ("source", "secret"),
    [
        ("linear", "short"),
        ("linear", "x" * 201),
        ("github", 12345678901234567),
        ("generic", "x" * 40),
        ("generic", "whsec_" + base64.b64encode(b"k" * 16).decode()),
        ("generic", "whsec_" + base64.b64encode(b"k" * 65).decode()),
        ("generic", "whsec_not base64!!!!!!!!!!!!!!!!!!!!"),
    ],
)
def test_a_bad_secret_gets_400(alice: User, room, source: str, secret) -> None:
    body = {"source": source, "prompt": "x", "secret": secret}
    refusal(api(alice).post(URL, body, format="json"), 400)
    assert not Trigger.objects.exists()


def test_a_given_secret_is_kept(alice: User, room) -> None:
    linear = create(alice, secret="lin_wh_" + "a" * 20)
    assert linear["secret"] == "lin_wh_" + "a" * 20
    key = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert create(alice, source="generic", secret=key)["secret"] == key


@pytest.mark.parametrize(
    "body",
    [
        {"source": "slack", "prompt": "x"},
        {"source": "linear"},
        {"source": "linear", "prompt": ""},
        {"source": "linear", "prompt": "Hi {{ data.title"},
        {"source": "linear", "prompt": "{{ $secret }}"},
        {"source": "linear", "prompt": "x", "events": ["Issue create"]},
        {"source": "linear", "prompt": "x", "events": "Issue"},
        {"source": "linear", "prompt": "x", "events": ["x"] * 51},
        {"source": "linear", "prompt": "x", "events": ["a" * 101]},
        {"source": "linear", "prompt": "x", "filter": {"a..b": 1}},
        {"source": "linear", "prompt": "x", "filter": {"a": {"b": 1}}},
        {"source": "linear", "prompt": "x", "filter": {"a": [1]}},
        {"source": "linear", "prompt": "x", "filter": {f"k{i}": 1 for i in range(21)}},
        {"source": "linear", "prompt": "x", "filter": []},
        {"source": "linear", "prompt": "x", "name": "n" * 101},
        {"source": "linear", "prompt": "x", "name": "two\nlines"},
        {"source": "linear", "prompt": "x", "enabled": "yes"},
        {"source": "linear", "prompt": "x\x00"},
    ],
)
def test_a_bad_field_gets_400(alice: User, room, body: dict) -> None:
    refusal(api(alice).post(URL, body, format="json"), 400)
    assert not Trigger.objects.exists()


def test_a_bad_placeholder_is_named(alice: User, room) -> None:
    body = {"source": "linear", "prompt": "Look: {{ data.title | upper }}"}
    detail = refusal(api(alice).post(URL, body, format="json"), 400)
    assert "{{ data.title | upper }}" in detail


def test_past_the_rooms_limit_gets_409(alice: User, room, settings) -> None:
    settings.TRIGGERS_PER_ROOM = 2
    create(alice)
    create(alice)
    body = {"source": "linear", "prompt": "x"}
    refusal(api(alice).post(URL, body, format="json"), 409)
    assert Trigger.objects.count() == 2


def test_patch_changes_fields_and_shows_a_secret_only_when_set(
    alice: User, room
) -> None:
    made = create(alice)
    path = f"{URL}/{made['id']}"
    changed = api(alice).patch(
        path,
        {"enabled": False, "events": ["Issue"], "filter": {"data.team.key": "ENG"}},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert "secret" not in changed.json() and changed.json()["enabled"] is False
    assert changed.json()["filter"] == {"data.team.key": "ENG"}
    fresh = api(alice).patch(path, {"secret": None}, format="json").json()
    assert re.fullmatch(r"[0-9a-f]{64}", fresh["secret"])
    assert fresh["secret"] != made["secret"]
    pasted = api(alice).patch(path, {"secret": "s" * 30}, format="json").json()
    assert pasted["secret"] == "s" * 30
    assert Trigger.objects.get().secret == "s" * 30


def test_source_cannot_change(alice: User, room) -> None:
    made = create(alice)
    response = api(alice).patch(
        f"{URL}/{made['id']}", {"source": "github"}, format="json"
    )
    assert "source" in refusal(response, 400)


def test_delete_answers_204_and_the_url_404s(alice: User, room, client) -> None:
    made = create(alice)
    assert api(alice).delete(f"{URL}/{made['id']}").status_code == 204
    refusal(api(alice).get(f"{URL}/{made['id']}"), 404)
    refusal(client.post(f"/hooks/{made['id']}", b"{}", "application/json"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", ""), ("post", ""), ("get", "/ID"), ("patch", "/ID"), ("delete", "/ID")],
)
def test_members_get_403_and_outsiders_404(
    alice: User, bob: User, mallory: User, room, method: str, path: str
) -> None:
    made = create(alice)
    path = URL + path.replace("ID", made["id"])
    body = {"source": "linear", "prompt": "x"}
    refusal(getattr(api(bob), method)(path, body, format="json"), 403)
    refusal(getattr(api(mallory), method)(path, body, format="json"), 404)
    assert Trigger.objects.get().prompt == made["prompt"]


def test_a_decider_outside_the_room_may_manage_its_triggers(
    staff_decider: User, room
) -> None:
    made = create(staff_decider)
    assert made["created_by"] == "sam"
    assert api(staff_decider).get(URL).status_code == 200


def test_another_rooms_trigger_is_not_found(alice: User, room) -> None:
    from chat import services

    other = services.room_create(user=alice, name="Other", slug="other")
    made = create(alice)
    path = f"/api/rooms/{other.slug}/triggers/{made['id']}"
    refusal(api(alice).get(path), 404)
    refusal(api(alice).get(f"{URL}/%00"), 404)
