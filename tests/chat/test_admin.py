"""The Django admin: the actions list, deciding from it and from an action's page, and
the read-only pages of requests, messages, events and rooms."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from chat import services
from chat.admin import action_summary
from chat.models import Action, Membership, Message, Request, Room, RoomEvent, User

CHANGELIST = "/admin/chat/action/"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    # The named users' passwords are hashed at full strength otherwise: seconds a test.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        # The named users' hashes (tests/plugins/people.py) are PBKDF2.
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


def make_action(
    room: Room,
    user: User,
    *,
    tool: str = "delete_issue",
    pack: str = "linear",
    arguments: dict | None = None,
    preview: dict | None = None,
    status: str = Action.Status.PENDING,
    requires_approval: bool = True,
    age: timedelta = timedelta(0),
    decided_by: User | None = None,
) -> Action:
    """An action as the agent leaves it: its request waits at step 1 for approval."""
    request = Request.objects.create(
        room=room, user=user, step=1, status=Request.Status.AWAITING_APPROVAL
    )
    action = Action.objects.create(
        request=request,
        room=room,
        step=0,
        tool=tool,
        pack=pack,
        tool_call_id=f"call_{uuid.uuid4().hex[:12]}",
        arguments={"id": "ENG-3"} if arguments is None else arguments,
        preview=preview,
        requires_approval=requires_approval,
        status=status,
        decided_by=decided_by,
        decided_at=timezone.now() if decided_by else None,
        decided_via=Action.Via.ROOM if decided_by else "",
    )
    Action.objects.filter(pk=action.pk).update(created=timezone.now() - age)
    action.refresh_from_db()
    return action


def staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username=username, password="x", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def client_for(user: User, **kwargs: object) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def change_url(action: Action) -> str:
    return reverse("admin:chat_action_change", args=[action.pk])


def shown(response) -> list[Action]:
    return list(response.context["cl"].result_list)


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def delete_eng3(room: Room, bob: User) -> Action:
    preview = {"identifier": "ENG-3", "title": "Login fails on Safari", "state": "Todo"}
    return make_action(room, bob, preview=preview)


@pytest.fixture
def ops(mallory: User) -> Room:
    return services.room_create(user=mallory, name="Ops", slug="ops")


@pytest.fixture
def vera(room: Room, ops: Room, alice: User, mallory: User) -> User:
    """Staff who may view actions, approver of triage, a plain member of ops."""
    user = staff("vera", "view_action")
    services.member_add(room=room, actor=alice, username="vera", role="approver")
    services.member_add(room=ops, actor=mallory, username="vera", role="member")
    return user


# The list --------------------------------------------------------------------------


def test_list_shows_pending_first_then_newest(room, bob, staff_decider):
    old_pending = make_action(room, bob, age=timedelta(hours=3))
    new_done = make_action(room, bob, status="succeeded", age=timedelta(minutes=1))
    old_denied = make_action(room, bob, status="denied", age=timedelta(hours=5))
    new_pending = make_action(room, bob, age=timedelta(minutes=30))

    response = client_for(staff_decider).get(CHANGELIST)

    assert response.status_code == 200
    assert shown(response) == [new_pending, old_pending, new_done, old_denied]


def test_list_row_has_summary_requester_room_age_and_status(delete_eng3, staff_decider):
    html = client_for(staff_decider).get(CHANGELIST).content.decode()

    summary = "delete ENG-3 'Login fails on Safari'"
    assert action_summary(delete_eng3) == summary
    assert escape(summary) in html
    for column in (
        "field-tool",
        "field-pack",
        "field-summary",
        "field-room",
        "field-requested_by",
        "field-age",
        "field-status_display",
    ):
        assert column in html
    assert '<td class="field-requested_by">bob</td>' in html
    assert '<td class="field-pack">linear</td>' in html
    assert '<td class="field-room nowrap">Triage</td>' in html
    assert '<td class="field-status_display">pending</td>' in html


def test_summary_is_one_line_for_every_tool(room, bob):
    update = make_action(
        room,
        bob,
        tool="update_issue",
        arguments={"id": "ENG-7", "state": "Done", "description": "two\nlines"},
        preview={"identifier": "ENG-7", "title": "Crash", "state": "Todo"},
    )
    create = make_action(
        room,
        bob,
        tool="create_issue",
        arguments={"title": "New bug", "team": "ENG"},
        preview={"creates": "New bug", "team": "ENG"},
    )
    search = make_action(
        room,
        bob,
        tool="search_issues",
        arguments={"query": "x"},
        requires_approval=False,
        status="succeeded",
    )

    assert action_summary(update) == (
        "update ENG-7 'Crash' description='two lines' state='Done'"
    )
    assert action_summary(create) == "create 'New bug' team='ENG'"
    assert action_summary(search) == "search issues query='x'"


def test_an_empty_list_reads_none_in_the_summary(room, bob):
    create = make_action(
        room,
        bob,
        tool="github_create_issue",
        arguments={"title": "Flaky login", "labels": []},
        preview={"creates": "Flaky login", "repository": "acme/web", "labels": []},
    )
    assert action_summary(create) == "github create 'Flaky login' labels=none"


def test_a_long_value_does_not_hide_the_fields_after_it(room, bob):
    update = make_action(
        room,
        bob,
        tool="update_issue",
        arguments={"id": "ENG-7", "description": "x" * 500, "state": "Canceled"},
    )
    summary = action_summary(update)
    assert "state='Canceled'" in summary
    assert len(summary) < 150


def test_approve_selected_first_shows_what_will_run(room, bob, staff_decider):
    long = make_action(
        room,
        bob,
        tool="update_issue",
        arguments={"id": "ENG-7", "description": "d" * 300, "assignee": "mallory"},
        preview={"identifier": "ENG-7", "title": "Crash", "state": "Todo"},
    )
    client = client_for(staff_decider)
    body = {"action": "approve_selected", "_selected_action": [long.pk], "index": 0}

    page = client.post(CHANGELIST, body)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Approve 1 action" in html
    # The whole call: every argument in full, and what the preview read.
    assert "d" * 300 in html and "mallory" in html and "Crash" in html
    long.refresh_from_db()
    assert long.status == "pending"
    confirmed = client.post(CHANGELIST, {**body, "post": "yes"}, follow=True)
    assert confirmed.status_code == 200
    long.refresh_from_db()
    assert long.status == "approved"


@pytest.fixture
def assorted(room, ops, bob, mallory):
    return {
        "pending_delete": make_action(room, bob),
        "denied_comment": make_action(
            room,
            bob,
            tool="add_comment",
            status="denied",
            arguments={"id": "ENG-1", "body": "hi"},
        ),
        "ops_update": make_action(
            ops,
            mallory,
            tool="update_issue",
            arguments={"id": "OPS-9", "state": "Done"},
        ),
        "search": make_action(
            room,
            bob,
            tool="search_issues",
            status="succeeded",
            arguments={"query": "safari"},
            requires_approval=False,
        ),
        "github_comment": make_action(
            room,
            bob,
            tool="github_add_comment",
            pack="github",
            status="succeeded",
            arguments={"number": 4, "body": "On it"},
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "pending"}, {"pending_delete", "ops_update"}),
        ({"status__exact": "denied"}, {"denied_comment"}),
        ({"tool": "add_comment"}, {"denied_comment"}),
        ({"pack": "github"}, {"github_comment"}),
        ({"room": "ops"}, {"ops_update"}),
        ({"requires_approval__exact": "0"}, {"search"}),
        (
            {"requires_approval__exact": "1"},
            {"pending_delete", "denied_comment", "ops_update", "github_comment"},
        ),
    ],
)
def test_list_filters(assorted, staff_decider, query, expected):
    if "room" in query:  # the filter takes the room's id
        query = {"room__id__exact": Room.objects.get(slug=query["room"]).pk}

    response = client_for(staff_decider).get(CHANGELIST, query)

    assert response.status_code == 200
    assert {a.pk for a in shown(response)} == {assorted[k].pk for k in expected}


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("ENG-3", {"pending_delete"}),  # in the arguments
        ("OPS-9", {"ops_update"}),
        ("add_comment", {"denied_comment", "github_comment"}),  # the tool
        ("ops", {"ops_update"}),  # the room's slug
        ("safari", {"search"}),
    ],
)
def test_list_search(assorted, staff_decider, term, expected):
    response = client_for(staff_decider).get(CHANGELIST, {"q": term})

    assert {a.pk for a in shown(response)} == {assorted[k].pk for k in expected}


# Deciding from the list ------------------------------------------------------------


def test_approve_selected_reports_each_row(room, ops, bob, alice, mallory, vera):
    mine = make_action(room, bob)
    decided = make_action(room, bob, status="approved", decided_by=alice)
    member_only = make_action(
        ops, mallory, tool="update_issue", arguments={"id": "OPS-9", "state": "Done"}
    )
    elsewhere = Room.objects.create(slug="far", name="Far")
    outside = make_action(elsewhere, mallory, arguments={"id": "FAR-1"})
    selected = [mine, decided, member_only, outside]

    response = client_for(vera).post(
        CHANGELIST,
        {
            "action": "approve_selected",
            "_selected_action": [a.pk for a in selected],
            "index": 0,
            "post": "yes",  # past the confirmation page
        },
        follow=True,
    )

    assert response.status_code == 200
    for action in selected:
        action.refresh_from_db()
    assert (mine.status, mine.decided_by, mine.decided_via) == (
        "approved",
        vera,
        "admin",
    )
    assert (decided.status, decided.decided_by) == ("approved", alice)
    assert member_only.status == outside.status == "pending"
    messages = texts(response)
    assert "Approved: delete ENG-3." in messages
    assert "delete ENG-3: already approved by alice." in messages
    assert any(m.startswith("update OPS-9 state='Done': not allowed") for m in messages)
    assert any(m.startswith("delete FAR-1: not allowed") for m in messages)
    entry = LogEntry.objects.get(object_id=str(mine.pk))
    assert (entry.user, entry.action_flag) == (vera, CHANGE)
    assert entry.change_message == "Approved in the admin. No reason given."
    assert LogEntry.objects.count() == 1


def test_deny_selected_asks_for_a_reason_then_denies(room, bob, staff_decider):
    first, second = (
        make_action(room, bob),
        make_action(
            room, bob, tool="add_comment", arguments={"id": "ENG-1", "body": SCRIPT}
        ),
    )
    client = client_for(staff_decider)
    selection = {"action": "deny_selected", "_selected_action": [first.pk, second.pk]}

    page = client.post(CHANGELIST, {**selection, "index": 0})

    assert page.status_code == 200
    assert "admin/chat/action/deny_selected.html" in [t.name for t in page.templates]
    html = page.content.decode()
    assert 'name="reason"' in html and "Deny 2 actions" in html
    assert escape(SCRIPT) in html and SCRIPT not in html
    first.refresh_from_db()
    assert first.status == "pending"  # nothing happens before the reason is given

    done = client.post(
        CHANGELIST,
        {**selection, "post": "yes", "reason": "Not during the freeze"},
        follow=True,
    )

    for action in (first, second):
        action.refresh_from_db()
        assert action.status == "denied"
        assert (action.decided_by, action.decided_via) == (staff_decider, "admin")
        assert action.reason == "Not during the freeze"
        tool_message = Message.objects.get(request=action.request, role="tool")
        assert "Not during the freeze" in tool_message.content
    assert "Denied: delete ENG-3." in texts(done)
    assert set(LogEntry.objects.values_list("change_message", flat=True)) == {
        "Denied in the admin. Reason: Not during the freeze"
    }


# The change page ---------------------------------------------------------------------


def test_change_page_shows_everything_read_only_and_escaped(room, bob, staff_decider):
    action = make_action(
        room,
        bob,
        tool="update_issue",
        arguments={"id": "ENG-3", "title": SCRIPT},
        preview={"identifier": "ENG-3", "title": f"Old {SCRIPT}", "state": "Todo"},
    )

    response = client_for(staff_decider).get(change_url(action))

    assert response.status_code == 200
    html = response.content.decode()
    assert SCRIPT not in html
    assert escape(SCRIPT) in html
    # Pretty-printed arguments: one key a line, indented.
    assert '<pre class="chat-json">{\n  &quot;id&quot;: &quot;ENG-3&quot;,' in html
    assert escape(f"update ENG-3 'Old {SCRIPT}' title='{SCRIPT}'") in html
    assert reverse("admin:chat_request_change", args=[action.request.pk]) in html
    assert reverse("admin:chat_room_change", args=[room.pk]) in html
    # No form field: the only way to change it is a decision.
    assert '<textarea name="arguments"' not in html
    assert 'name="_save"' not in html
    assert response.context["has_change_permission"] is False


def test_change_page_shows_the_decision_record_and_edits(room, bob, alice):
    action = make_action(
        room,
        bob,
        tool="update_issue",
        arguments={"id": "ENG-3", "state": "Done"},
        preview={"identifier": "ENG-3", "title": "T", "state": "Todo"},
    )
    services.action_decide(
        action_id=str(action.pk),
        user=alice,
        decision="approve",
        reason="ok <b>then</b>",
        arguments={"id": "ENG-3", "state": "In Progress"},
        via=Action.Via.ROOM,
    )
    admin_user = User.objects.create_superuser("root", "root@example.com", "x")

    html = client_for(admin_user).get(change_url(action)).content.decode()

    assert "<th>by</th><td>alice</td>" in html
    assert "<th>through</th><td>room</td>" in html
    assert "<th>reason</th><td>ok &lt;b&gt;then&lt;/b&gt;</td>" in html
    assert "proposed_arguments" in html
    assert (
        "<th>state</th><td>&#x27;Done&#x27;</td><td>&#x27;In Progress&#x27;</td>"
        in html
    )
    assert "Waiting for a decision" not in html


def test_approve_button_on_the_change_page(delete_eng3, staff_decider):
    client = client_for(staff_decider)
    html = client.get(change_url(delete_eng3)).content.decode()
    approve_url = reverse("admin:chat_action_approve", args=[delete_eng3.pk])
    assert f'action="{approve_url}"' in html
    assert '<button type="submit" class="approve">Approve</button>' in html
    assert "Deny</button>" in html

    response = client.post(approve_url, {"reason": "fine"})

    assert response.status_code == 302
    assert response["Location"] == change_url(delete_eng3)
    delete_eng3.refresh_from_db()
    assert delete_eng3.status == "approved"
    assert (delete_eng3.decided_by, delete_eng3.decided_via) == (staff_decider, "admin")
    assert delete_eng3.reason == "fine"
    event = RoomEvent.objects.filter(room=delete_eng3.room, type="action").last()
    assert event.payload["status"] == "approved"
    entry = LogEntry.objects.get()
    assert entry.get_change_message() == "Approved in the admin. Reason: fine"
    page = client.get(change_url(delete_eng3))
    assert "Approved: delete ENG-3 &#x27;Login fails on Safari&#x27;." in (
        page.content.decode()
    )
    assert "Waiting for a decision" not in page.content.decode()

    again = client.post(approve_url, follow=True)
    assert texts(again) == [
        "delete ENG-3 'Login fails on Safari': already approved by sam."
    ]


def test_deny_button_with_reason(delete_eng3, staff_decider):
    deny_url = reverse("admin:chat_action_deny", args=[delete_eng3.pk])

    response = client_for(staff_decider).post(
        deny_url, {"reason": "Keep it"}, follow=True
    )

    delete_eng3.refresh_from_db()
    assert (delete_eng3.status, delete_eng3.reason) == ("denied", "Keep it")
    assert delete_eng3.decided_via == "admin"
    assert texts(response) == ["Denied: delete ENG-3 'Login fails on Safari'."]
    assert LogEntry.objects.get().change_message == (
        "Denied in the admin. Reason: Keep it"
    )


def test_decision_urls_want_post_with_csrf(delete_eng3, staff_decider):
    approve_url = reverse("admin:chat_action_approve", args=[delete_eng3.pk])

    assert client_for(staff_decider).get(approve_url).status_code == 405
    strict = client_for(staff_decider, enforce_csrf_checks=True)
    assert strict.post(approve_url).status_code == 403
    delete_eng3.refresh_from_db()
    assert delete_eng3.status == "pending"


def test_staff_without_permission_is_refused(delete_eng3):
    client = client_for(staff("steve"))

    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(delete_eng3)).status_code == 403
    approve_url = reverse("admin:chat_action_approve", args=[delete_eng3.pk])
    assert client.post(approve_url).status_code == 403
    deny_url = reverse("admin:chat_action_deny", args=[delete_eng3.pk])
    assert client.post(deny_url).status_code == 403
    delete_eng3.refresh_from_db()
    assert delete_eng3.status == "pending"
    assert not LogEntry.objects.exists()


def test_room_approver_without_admin_permissions_is_decided_by_the_service(
    delete_eng3, alice
):
    alice.is_staff = True
    alice.save()

    response = client_for(alice).post(
        reverse("admin:chat_action_approve", args=[delete_eng3.pk])
    )

    assert response.status_code == 302 and response["Location"] == "/admin/"
    delete_eng3.refresh_from_db()
    assert (delete_eng3.status, delete_eng3.decided_via) == ("approved", "admin")


def test_viewer_who_may_not_decide_sees_no_buttons_and_is_refused(ops, mallory, vera):
    action = make_action(ops, mallory, arguments={"id": "OPS-1"})
    client = client_for(vera)

    html = client.get(change_url(action)).content.decode()
    assert "You may not decide this action" in html
    assert "Approve</button>" not in html

    response = client.post(
        reverse("admin:chat_action_approve", args=[action.pk]), follow=True
    )
    assert texts(response)[0].startswith("delete OPS-1: not allowed")
    action.refresh_from_db()
    assert action.status == "pending"


def test_no_adding_and_only_superusers_delete(delete_eng3, staff_decider):
    root = User.objects.create_superuser("root", "root@example.com", "x")
    for model in ("action", "request", "message", "roomevent"):
        assert client_for(root).get(f"/admin/chat/{model}/add/").status_code == 403
    delete_url = reverse("admin:chat_action_delete", args=[delete_eng3.pk])
    assert client_for(staff_decider).get(delete_url).status_code == 403
    assert client_for(root).get(delete_url).status_code == 200
    actions = client_for(staff_decider).get(CHANGELIST).context["action_form"]
    choices = [name for name, _ in actions.fields["action"].choices]
    assert "approve_selected" in choices and "deny_selected" in choices
    assert "delete_selected" not in choices


def test_viewers_who_approve_nowhere_are_not_offered_decisions(delete_eng3):
    viewer = client_for(staff("vic", "view_action"))

    response = viewer.get(CHANGELIST)

    assert response.status_code == 200
    assert response.context["action_form"] is None  # no admin actions at all
    viewer.post(
        CHANGELIST,
        {
            "action": "approve_selected",
            "_selected_action": [delete_eng3.pk],
            "index": 0,
            "post": "yes",
        },
    )
    delete_eng3.refresh_from_db()
    assert delete_eng3.status == "pending"
    assert not LogEntry.objects.exists()


# Requests, messages, events, rooms -------------------------------------------------


def test_request_page_lists_its_messages_actions_and_events(room, bob, staff_decider):
    request = services.request_start(room=room, user=bob, text=f"Hi {SCRIPT}")
    Message.objects.create(
        room=room, request=request, role="assistant", content=f"Model says {SCRIPT}"
    )
    action = make_action(room, bob)
    Action.objects.filter(pk=action.pk).update(request=request)

    response = client_for(staff_decider).get(
        reverse("admin:chat_request_change", args=[request.pk])
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert SCRIPT not in html
    assert escape(f"Model says {SCRIPT}") in html
    assert reverse("admin:chat_action_change", args=[action.pk]) in html
    assert "delete ENG-3" in html
    assert '<table class="chat-events">' in html
    assert html.count("<td>message</td>") == 1 and "<td>request</td>" in html


def test_message_and_event_lists_are_read_only(room, bob, staff_decider):
    services.request_start(room=room, user=bob, text=SCRIPT)
    client = client_for(staff_decider)

    messages_page = client.get("/admin/chat/message/")
    events_page = client.get("/admin/chat/roomevent/")
    event = RoomEvent.objects.filter(room=room).first()
    event_page = client.get(reverse("admin:chat_roomevent_change", args=[event.pk]))

    for page in (messages_page, events_page, event_page):
        assert page.status_code == 200
        assert SCRIPT not in page.content.decode()
    assert escape(SCRIPT) in messages_page.content.decode()
    assert 'name="_save"' not in event_page.content.decode()


def test_room_page_lists_its_members(room, staff_decider):
    root = User.objects.create_superuser("root", "root@example.com", "x")

    html = (
        client_for(root)
        .get(reverse("admin:chat_room_change", args=[room.pk]))
        .content.decode()
    )

    assert "memberships-TOTAL_FORMS" in html
    roles = dict(room.memberships.values_list("user__username", "role"))
    assert roles == {"alice": Membership.Role.APPROVER, "bob": Membership.Role.MEMBER}
    assert f'value="{room.memberships.get(user__username="alice").user_id}"' in html
    viewer = client_for(staff_decider).get(
        reverse("admin:chat_room_change", args=[room.pk])
    )
    assert viewer.status_code == 200
    assert "approver" in viewer.content.decode()


# Membership changes in the admin drop stale votes -----------------------------------


@pytest.fixture
def quorum(room: Room, bob: User) -> tuple[Action, User, User]:
    """A pending action needing two approvals, carol's in; dave may give the other."""
    carol = User.objects.create_user("carol", password="x")
    dave = User.objects.create_user("dave", password="x")
    for user in (carol, dave):
        Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    action = make_action(room, bob)
    Action.objects.filter(pk=action.pk).update(approvals_required=2)
    services.action_decide(action_id=str(action.pk), user=carol, decision="approve")
    return action, carol, dave


def _last_action_event(action: Action) -> dict:
    event = RoomEvent.objects.filter(type="action").order_by("seq").last()
    assert event is not None and event.payload["id"] == str(action.pk)
    return event.payload


def _second_approval(action: Action, dave: User) -> str:
    return services.action_decide(
        action_id=str(action.pk), user=dave, decision="approve"
    ).status


def test_removing_an_approver_in_the_admin_drops_their_approval(
    quorum, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    monkeypatch.setattr("chat.enqueue._send", lambda *args, **kwargs: None)
    action, carol, dave = quorum
    root = client_for(User.objects.create_superuser("root", "root@example.com", "x"))
    membership = Membership.objects.get(user=carol)
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post(
            f"/admin/chat/membership/{membership.pk}/delete/", {"post": "yes"}
        )
    assert response.status_code == 302
    seen = _last_action_event(action)
    assert seen["approvals"] == [] and "carol" not in seen["eligible"]
    assert _second_approval(action, dave) == Action.Status.PENDING


def test_demoting_an_approver_in_the_room_admin_drops_their_approval(
    room, alice, quorum, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    monkeypatch.setattr("chat.enqueue._send", lambda *args, **kwargs: None)
    action, carol, dave = quorum
    root = client_for(User.objects.create_superuser("root", "root@example.com", "x"))
    memberships = list(Membership.objects.filter(room=room).order_by("pk"))
    body: dict[str, object] = {
        "name": room.name,
        "slug": room.slug,
        "linear_teams": "[]",
        "memberships-TOTAL_FORMS": len(memberships),
        "memberships-INITIAL_FORMS": len(memberships),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
        "policy_rules-TOTAL_FORMS": 0,
        "policy_rules-INITIAL_FORMS": 0,
        "policy_rules-MIN_NUM_FORMS": 0,
        "policy_rules-MAX_NUM_FORMS": 1000,
    }
    for i, membership in enumerate(memberships):
        body[f"memberships-{i}-id"] = membership.pk
        body[f"memberships-{i}-room"] = room.pk
        body[f"memberships-{i}-user"] = membership.user_id
        demoted = membership.user_id == carol.pk
        body[f"memberships-{i}-role"] = "member" if demoted else membership.role
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post(f"/admin/chat/room/{room.pk}/change/", body)
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert services.room_role(room=room, user=carol) == Membership.Role.MEMBER
    seen = _last_action_event(action)
    assert seen["approvals"] == [] and "carol" not in seen["eligible"]
    assert _second_approval(action, dave) == Action.Status.PENDING
