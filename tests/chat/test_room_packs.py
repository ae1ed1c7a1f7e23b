"""A room's tool packs (`packs`): set by its approvers over REST or in the admin,
checked against the packs configured, shown with the room, holding its rules and
its catalogue (`GET /api/tools?room=<slug>`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from chat import services
from chat import tools as catalogue
from chat.models import PolicyRule, Room, User
from tests.chat.test_admin import client_for
from tests.chat.test_api import api, refusal

pytestmark = pytest.mark.django_db

URL = "/api/rooms/triage"


def patch(user: User, body: object):
    return api(user).patch(URL, body, format="json")


@pytest.fixture
def notes(settings) -> Iterator[None]:
    """An MCP server `notes` configured, with two tools listed."""
    settings.AGENT_MCP_SERVERS = [{"name": "notes", "url": "http://127.0.0.1:9/mcp"}]
    services.mcp_listing_store(
        server="notes",
        tools=[
            {"name": "search", "inputSchema": {"type": "object"}},
            {"name": "wipe", "inputSchema": {"type": "object"}},
        ],
    )
    yield
    catalogue.forget_listings()


def test_an_approver_sets_the_packs_and_members_see_them(room, alice, bob) -> None:
    assert api(bob).get(URL).json()["packs"] == []
    answer = patch(alice, {"packs": ["github", "linear", "github"]})
    assert answer.status_code == 200
    assert answer.json()["packs"] == ["github", "linear"]  # repeats collapsed
    assert api(bob).get(URL).json()["packs"] == ["github", "linear"]
    # Setting the packs leaves the teams alone, and the other way round.
    patch(alice, {"linear_teams": ["ENG"]})
    room.refresh_from_db()
    assert (room.packs, room.linear_teams) == (["github", "linear"], ["ENG"])
    assert patch(alice, {"packs": []}).json()["packs"] == []


def test_only_approvers_set_the_packs(room, bob, mallory) -> None:
    refusal(patch(bob, {"packs": ["github"]}), 403)
    refusal(patch(mallory, {"packs": ["github"]}), 404)
    room.refresh_from_db()
    assert room.packs == []


@pytest.mark.parametrize(
    "packs",
    [["jira"], ["linear", "mcp:nowhere"], ["GitHub"], "github", [1], [None], ["mcp"]],
)
def test_unknown_packs_are_400_naming_the_valid_ones(room, alice, packs) -> None:
    detail = refusal(patch(alice, {"packs": packs}), 400)
    if isinstance(packs, list) and all(isinstance(p, str) for p in packs):
        assert "linear, github" in detail, detail
    room.refresh_from_db()
    assert room.packs == []


def test_each_mcp_server_is_a_pack(room, alice, notes) -> None:
    assert patch(alice, {"packs": ["mcp:notes"]}).json()["packs"] == ["mcp:notes"]
    listed = api(alice).get("/api/tools?room=triage").json()
    assert sorted(t["name"] for t in listed) == ["notes__search", "notes__wipe"]


def test_tools_of_a_room_are_those_of_its_packs(room, alice, bob) -> None:
    everything = {t["name"] for t in api(bob).get("/api/tools").json()}
    assert api(bob).get("/api/tools?room=triage").status_code == 200
    assert {t["name"] for t in api(bob).get("/api/tools?room=triage").json()} == (
        everything
    )
    patch(alice, {"packs": ["linear"]})
    scoped = api(bob).get("/api/tools?room=triage").json()
    assert scoped and {t["pack"] for t in scoped} == {"linear"}
    # Without a room: what the deployment has configured, as before.
    assert {t["name"] for t in api(bob).get("/api/tools").json()} == everything


def test_tools_of_a_room_are_for_its_members_only(room, mallory) -> None:
    refusal(api(mallory).get("/api/tools?room=triage"), 404)
    refusal(api(mallory).get("/api/tools?room=nowhere"), 404)
    refusal(api(mallory).get("/api/tools?room=a%00b"), 400)
    refusal(api().get("/api/tools?room=triage"), 401)


def test_a_rule_cannot_name_a_tool_outside_the_rooms_packs(room, alice) -> None:
    patch(alice, {"packs": ["github"]})
    rules = f"/api/rooms/{room.slug}/policies"
    body = {"tool": "delete_issue", "mode": "auto"}
    detail = refusal(api(alice).post(rules, body, format="json"), 400)
    assert "not offered in this room" in detail
    made = api(alice).post(rules, {"tool": "github_create_issue"}, format="json")
    assert made.status_code == 201
    moved = api(alice).patch(
        f"{rules}/{made.json()['id']}", {"tool": "delete_issue"}, format="json"
    )
    refusal(moved, 400)
    anything = api(alice).post(rules, {"tool": "*", "mode": "ask"}, format="json")
    assert anything.status_code == 201
    assert sorted(PolicyRule.objects.values_list("tool", flat=True)) == [
        "*",
        "github_create_issue",
    ]


def _room_form(room: Room, **fields: object) -> dict[str, object]:
    return {
        "slug": room.slug,
        "name": room.name,
        "linear_teams": "[]",
        "packs": "[]",
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "policy_rules-TOTAL_FORMS": 0,
        "policy_rules-INITIAL_FORMS": 0,
        **fields,
    }


def test_the_admin_shows_and_checks_the_packs(room) -> None:
    root = User.objects.create_superuser("root", "root@example.com", "x")
    url = reverse("admin:chat_room_change", args=[room.pk])
    refused = client_for(root).post(url, _room_form(room, packs='["jira"]'))
    assert refused.status_code == 200
    assert "unknown pack" in refused.content.decode()

    rule = {
        "policy_rules-TOTAL_FORMS": 1,
        "policy_rules-0-tool": "delete_issue",
        "policy_rules-0-arguments": "{}",
        "policy_rules-0-mode": "auto",
        "policy_rules-0-approvals_required": 1,
        "policy_rules-0-approvers": "[]",
        "policy_rules-0-requester_may_approve": "on",
        "policy_rules-0-delay": 0,
    }
    # A rule for a Linear tool in the same save that leaves Linear out: refused.
    both = client_for(root).post(url, _room_form(room, packs='["github"]', **rule))
    assert both.status_code == 200
    assert "not offered in this room" in both.content.decode()
    assert not PolicyRule.objects.exists()

    saved = client_for(root).post(url, _room_form(room, packs='["github", "linear"]'))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    room.refresh_from_db()
    assert room.packs == ["github", "linear"]
    listing = client_for(root).get(reverse("admin:chat_room_changelist"))
    shown = '<td class="field-packs">[&quot;github&quot;, &quot;linear&quot;]</td>'
    assert shown in listing.content.decode()


def test_the_schema_names_the_packs_configured(notes) -> None:
    schema = APIClient().get("/api/schema?format=json").json()
    components = schema["components"]["schemas"]
    patch_in = components["PatchedRoomPatchRequest"]["properties"]["packs"]
    enum = components[patch_in["items"]["$ref"].rpartition("/")[2]]["enum"]
    assert enum == ["linear", "github", "mcp:notes"]
    assert components["RoomDetail"]["properties"]["packs"]["type"] == "array"
    [room] = schema["paths"]["/api/tools"]["get"]["parameters"]
    assert (room["name"], room["schema"]["pattern"]) == ("room", "^[-a-zA-Z0-9_]+$")
