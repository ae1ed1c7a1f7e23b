"""Schedules over the REST API (contract: "Schedules"): who may manage them, the
fields, the checks, and what PATCH and DELETE do to the next slot."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from chat.models import Room, Schedule, User
from tests.chat.test_api import (  # noqa: F401  (autouse)
    api,
    forget_throttle_counts,
    refusal,
)

BODY = {"cron": "0 9 * * mon-fri", "prompt": "Standup notes for {{ $slot }}"}


def url(room: Room, schedule_id: str | None = None) -> str:
    base = f"/api/rooms/{room.slug}/schedules"
    return base if schedule_id is None else f"{base}/{schedule_id}"


def create(user: User, room: Room, **body: object) -> dict:
    response = api(user).post(url(room), {**BODY, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_an_approver_creates_a_schedule_posted_by_the_room_bot(
    room: Room, alice: User
) -> None:
    before = timezone.now()
    made = create(alice, room, name="Standup", timezone="Europe/Berlin")
    assert set(made) == {
        "id",
        "name",
        "cron",
        "timezone",
        "prompt",
        "enabled",
        "author",
        "created_by",
        "created",
        "next_run",
        "last_run",
        "last_request",
        "skipped",
        "last_skipped",
    }
    assert len(made["id"]) >= 22  # 128 random bits, URL-safe base64
    assert made["name"] == "Standup" and made["enabled"] is True
    assert made["created_by"] == "alice"
    assert made["author"] == room.bot.username != "alice"
    assert made["last_run"] is made["last_request"] is made["last_skipped"] is None
    assert made["skipped"] == 0
    # 09:00 in Berlin on the next weekday, given in UTC.
    next_run = datetime.fromisoformat(made["next_run"])
    assert next_run > before and next_run.utcoffset() == timedelta(0)
    assert next_run.astimezone(ZoneInfo(made["timezone"])).hour == 9
    assert next_run.weekday() < 5
    listed = api(alice).get(url(room)).json()
    assert [s["id"] for s in listed] == [made["id"]]
    assert api(alice).get(url(room, made["id"])).json() == made


@pytest.mark.django_db
def test_defaults_are_utc_no_name_enabled(room: Room, alice: User) -> None:
    made = create(alice, room)
    assert (made["timezone"], made["name"], made["enabled"]) == ("UTC", "", True)
    assert datetime.fromisoformat(made["next_run"]).hour == 9


@pytest.mark.django_db
def test_members_get_403_and_outsiders_404_on_every_call(
    room: Room, alice: User, bob: User, mallory: User
) -> None:
    made = create(alice, room)
    calls = [
        ("get", url(room), None),
        ("post", url(room), BODY),
        ("get", url(room, made["id"]), None),
        ("patch", url(room, made["id"]), {"enabled": False}),
        ("delete", url(room, made["id"]), None),
    ]
    for user, status in ((bob, 403), (mallory, 404)):
        for method, path, body in calls:
            response = getattr(api(user), method)(path, body, format="json")
            refusal(response, status)
    assert api(None).get(url(room)).status_code == 401
    assert Schedule.objects.get(pk=made["id"]).enabled


@pytest.mark.django_db
def test_a_holder_of_decide_action_manages_them_without_membership(
    room: Room, alice: User, staff_decider: User
) -> None:
    made = create(staff_decider, room)
    assert made["created_by"] == "sam"
    assert api(staff_decider).delete(url(room, made["id"])).status_code == 204


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"cron": "0 9 * * * *"}, "cron"),
        ({"cron": "@daily"}, "cron"),
        ({"cron": "0 9 * * 5L"}, "cron"),
        ({"cron": "61 9 * * *"}, "cron"),
        ({"cron": 9}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "Issue {{ data.title }}"}, "prompt"),
        ({"prompt": "From {{ $event }}"}, "prompt"),
        ({"prompt": "Unclosed {{ $slot"}, "prompt"),
        ({"prompt": "x" * 10_001}, "prompt"),
        ({"name": "x" * 101}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"enabled": "yes"}, "enabled"),
        ({"author": "alice"}, "author"),
    ],
)
def test_bad_fields_get_400_naming_them(
    room: Room, alice: User, body: dict, named: str
) -> None:
    response = api(alice).post(url(room), {**BODY, **body}, format="json")
    assert named in refusal(response, 400)
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_cron_and_prompt_are_required(room: Room, alice: User) -> None:
    for missing in ("cron", "prompt"):
        body = {k: v for k, v in BODY.items() if k != missing}
        response = api(alice).post(url(room), body, format="json")
        assert missing in refusal(response, 400)
    refusal(api(alice).post(url(room), [1], format="json"), 400)


@pytest.mark.django_db
def test_past_schedules_per_room_gets_409(room: Room, alice: User, settings) -> None:
    settings.SCHEDULES_PER_ROOM = 2
    create(alice, room)
    create(alice, room)
    refusal(api(alice).post(url(room), BODY, format="json"), 409)
    assert Schedule.objects.filter(room=room).count() == 2


@pytest.mark.django_db
def test_patch_computes_next_run_again_from_now(room: Room, alice: User) -> None:
    made = create(alice, room)
    response = api(alice).patch(
        url(room, made["id"]),
        {"cron": "30 14 * * *", "timezone": "America/New_York", "name": "Later"},
        format="json",
    )
    assert response.status_code == 200, response.content
    changed = response.json()
    assert (changed["cron"], changed["name"]) == ("30 14 * * *", "Later")
    next_run = datetime.fromisoformat(changed["next_run"])
    local = next_run.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (14, 30)
    assert timezone.now() < next_run <= timezone.now() + timedelta(days=1)
    refusal(api(alice).patch(url(room, made["id"]), {"cron": "x"}, format="json"), 400)
    refusal(api(alice).patch(url(room, "nope"), {"name": "x"}, format="json"), 404)


@pytest.mark.django_db
def test_disabled_has_no_next_run_and_enabling_starts_at_the_next_slot(
    room: Room, alice: User
) -> None:
    made = create(alice, room, cron="* * * * *", enabled=False)
    assert made["next_run"] is None
    patched = api(alice).patch(url(room, made["id"]), {"enabled": True}, format="json")
    next_run = datetime.fromisoformat(patched.json()["next_run"])
    assert timezone.now() < next_run <= timezone.now() + timedelta(minutes=1)
    assert next_run.second == 0
    off = api(alice).patch(url(room, made["id"]), {"enabled": False}, format="json")
    assert off.json()["next_run"] is None


@pytest.mark.django_db
def test_delete_answers_204_then_404(room: Room, alice: User) -> None:
    made = create(alice, room)
    assert api(alice).delete(url(room, made["id"])).status_code == 204
    refusal(api(alice).get(url(room, made["id"])), 404)
    refusal(api(alice).delete(url(room, made["id"])), 404)


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["%00", "a%00b", "x" * 65])
def test_an_id_that_cannot_be_one_is_404(room: Room, alice: User, bad: str) -> None:
    for method in ("get", "patch", "delete"):
        response = getattr(api(alice), method)(url(room, bad), {}, format="json")
        refusal(response, 404)


@pytest.mark.django_db
def test_a_schedule_of_another_room_is_404(
    room: Room, alice: User, mallory: User
) -> None:
    from chat import services

    other = services.room_create(user=mallory, name="Other", slug="other")
    theirs = create(mallory, other)
    refusal(api(alice).get(url(room, theirs["id"])), 404)
    refusal(api(alice).delete(url(room, theirs["id"])), 404)


@pytest.mark.django_db
def test_the_admin_lists_schedules_and_disables_the_selected(
    room: Room, alice: User, admin_client
) -> None:
    made = create(alice, room, name="Standup", timezone="Europe/Berlin")
    page = admin_client.get("/admin/chat/schedule/")
    assert page.status_code == 200
    text = page.content.decode()
    for heading in ("Room", "Cron", "Timezone", "Enabled", "Next run", "Last run"):
        assert heading in text
    assert "Skipped" in text and "Europe/Berlin" in text
    assert "Disable the selected schedules" in text
    done = admin_client.post(
        "/admin/chat/schedule/",
        {"action": "disable", "_selected_action": [made["id"]]},
        follow=True,
    )
    assert "1 disabled." in done.content.decode()
    schedule = Schedule.objects.get(pk=made["id"])
    assert (schedule.enabled, schedule.next_run) == (False, None)
    assert (
        admin_client.get(f"/admin/chat/schedule/{made['id']}/change/").status_code
        == 200
    )
