"""The decision page at `decide_url` and the inbox (`GET /api/actions?awaiting=me`,
`/inbox/`)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from chat import services
from chat.links import decide_url
from chat.models import Action, Membership, Vote
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    pending_action,
    refusal,
)
from tests.plugins.people import _user


@pytest.fixture(autouse=True)
def _no_enqueue(monkeypatch) -> None:
    # An approval queues its tool call; these tests are about the page, not the run.
    monkeypatch.setattr("chat.enqueue._send", lambda *args, **kwargs: None)


def _path(action: Action) -> str:
    return urlsplit(decide_url(action)).path


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_decide_url_is_absolute_and_in_the_action_payload(room, alice, bob, settings):
    action = pending_action(room, bob)
    body = api(alice).get(f"/api/actions/{action.pk}").json()
    assert body["decide_url"] == decide_url(action)
    assert body["decide_url"].startswith(settings.SITE_URL + "/decide/")


def test_anonymous_visitor_is_sent_to_login_and_back(room, bob):
    action = pending_action(room, bob)
    response = Client().get(_path(action))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/decide/")


def test_eligible_user_sees_preview_arguments_and_votes_and_get_changes_nothing(
    room, alice, bob
):
    action = pending_action(room, bob)
    before = Action.objects.filter(pk=action.pk).values().get()
    page = _client(alice).get(_path(action)).content.decode()
    assert "delete_issue" in page and "Flaky login" in page and "ENG-3" in page
    assert 'value="approve"' in page and 'value="deny"' in page
    assert Action.objects.filter(pk=action.pk).values().get() == before
    assert not Vote.objects.exists()


def test_an_outsider_gets_404_and_learns_nothing(room, bob, mallory):
    action = pending_action(room, bob)
    for response in (
        _client(mallory).get(_path(action)),
        _client(mallory).post(_path(action), {"decision": "approve"}),
    ):
        assert response.status_code == 404
        assert "delete_issue" not in response.content.decode()


def test_a_member_who_may_not_vote_is_told_so_and_sent_to_the_room(room, bob):
    action = pending_action(room, bob)
    client = _client(bob)
    response = client.get(_path(action))
    assert response.status_code == 404
    page = response.content.decode()
    assert "You can't decide this action" in page
    assert "Only approvers of this room may decide its actions." in page
    assert f'href="/rooms/{room.slug}/"' in page
    assert 'value="approve"' not in page
    assert client.post(_path(action), {"decision": "approve"}).status_code == 404
    action.refresh_from_db()
    assert action.status == "pending"
    assert not Vote.objects.exists()


def test_the_page_shows_the_preview_as_rows_and_an_empty_list_as_none(room, alice, bob):
    action = pending_action(room, bob)
    Action.objects.filter(pk=action.pk).update(
        preview={"creates": "Flaky login", "labels": [], "repository": "acme/web"}
    )
    page = _client(alice).get(_path(action)).content.decode()
    assert re.search(r"<dt>Labels</dt><dd>none</dd>", page)
    assert re.search(r"<dt>Repository</dt><dd>acme/web</dd>", page)


def test_a_forged_link_gets_404(room, alice, bob):
    action = pending_action(room, bob)
    assert _client(alice).get(f"/decide/{action.pk}:forged/").status_code == 404


def test_approve_on_the_page_decides_via_link(room, alice, bob):
    action = pending_action(room, bob)
    response = _client(alice).post(
        _path(action), {"decision": "approve", "reason": "fine"}
    )
    assert response.status_code == 302
    action.refresh_from_db()
    assert (action.status, action.decided_via, action.decided_by) == (
        "approved",
        "link",
        alice,
    )


def test_the_post_needs_the_csrf_token(room, alice, bob):
    action = pending_action(room, bob)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(_path(action), {"decision": "approve"}).status_code == 403
    action.refresh_from_db()
    assert action.status == "pending"


def test_the_link_stops_deciding_once_the_action_is_decided(room, alice, bob):
    action = pending_action(room, bob)
    services.action_decide(action_id=str(action.pk), user=alice, decision="deny")
    client = _client(alice)
    page = client.get(_path(action)).content.decode()
    assert "no longer pending" in page and 'value="approve"' not in page
    client.post(_path(action), {"decision": "approve"})
    action.refresh_from_db()
    assert (action.status, action.decided_via) == ("denied", "api")


# The inbox --------------------------------------------------------------------------


def test_awaiting_me_lists_what_waits_for_my_vote_soonest_first(
    room, alice, bob, mallory
):
    later, sooner, voted = (pending_action(room, bob, call=f"c{n}") for n in range(3))
    now = timezone.now()
    Action.objects.filter(pk=later.pk).update(expires_at=now + timedelta(hours=5))
    Action.objects.filter(pk=sooner.pk).update(expires_at=now + timedelta(hours=1))
    Action.objects.filter(pk=voted.pk).update(approvals_required=2)
    services.action_decide(action_id=str(voted.pk), user=alice, decision="approve")
    mine = api(alice).get("/api/actions?awaiting=me").json()
    assert [a["id"] for a in mine] == [str(sooner.pk), str(later.pk)]
    # bob is a member: nothing waits for him; mallory sees nothing of the room.
    assert api(bob).get("/api/actions?awaiting=me").json() == []
    assert api(mallory).get("/api/actions?awaiting=me").json() == []
    refusal(api(alice).get("/api/actions?awaiting=you"), 400)


def test_awaiting_me_follows_the_rule_copied_onto_the_action(room, alice, bob):
    services.member_add(
        room=room, actor=alice, username="bob", role=Membership.Role.APPROVER
    )
    action = pending_action(room, bob)
    Action.objects.filter(pk=action.pk).update(requester_may_approve=False)
    assert api(bob).get("/api/actions?awaiting=me").json() == []
    assert len(api(alice).get("/api/actions?awaiting=me").json()) == 1


def test_the_inbox_page_links_each_waiting_action(room, alice, bob):
    action = pending_action(room, bob)
    page = _client(alice).get("/inbox/").content.decode()
    assert decide_url(action) in page
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    page = _client(alice).get("/inbox/").content.decode()
    assert decide_url(action) not in page
    # The module, by its hashed name once collectstatic ran.
    assert re.search(r'src="/static/js/inbox(\.[0-9a-f]+)?\.js"', page)
    assert "data-inbox-count" in page


def test_the_page_shows_only_votes_that_count(room, alice, bob):
    """A vote whose voter was removed where no service heard of it (a shell's
    queryset delete) is neither counted nor shown as counting."""
    carol = _user("carol")
    Membership.objects.create(room=room, user=carol, role=Membership.Role.APPROVER)
    action = pending_action(room, bob)
    Action.objects.filter(pk=action.pk).update(approvals_required=2)
    services.action_decide(action_id=str(action.pk), user=carol, decision="approve")
    assert "carol: approve" in _client(alice).get(_path(action)).content.decode()
    Membership.objects.filter(room=room, user=carol).delete()
    page = _client(alice).get(_path(action)).content.decode()
    assert "carol: approve" not in page and 'value="approve"' in page
    _client(alice).post(_path(action), {"decision": "approve"})
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING  # alice's is the only one counting
