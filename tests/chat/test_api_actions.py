"""Actions over REST: listing, reading, approving (with edits) and denying.

The agent normally proposes actions; here they are made with the ORM, as the agent
leaves them (see `pending_action`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.http import HttpResponseBase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat import enqueue, services
from chat.models import (
    Action,
    Membership,
    Message,
    Request,
    Room,
    RoomEvent,
    User,
    Vote,
)
from chat.snapshot import snapshot_build
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    api,
    fast_password_hashing,
    forget_throttle_counts,
    pending_action,
    refusal,
)


@pytest.fixture
def action(room: Room, bob: User) -> Action:
    return pending_action(room, bob)


def _approve(user: User, action: Action, body: dict | None = None) -> HttpResponseBase:
    return api(user).post(
        f"/api/actions/{action.pk}/approve", body or {}, format="json"
    )


def _deny(user: User, action: Action, body: dict | None = None) -> HttpResponseBase:
    return api(user).post(f"/api/actions/{action.pk}/deny", body or {}, format="json")


# Reading ----------------------------------------------------------------------------


def test_member_reads_an_action(bob: User, action: Action) -> None:
    response = api(bob).get(f"/api/actions/{action.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(action.pk)
    assert body["request"] == str(action.request_id)
    assert body["room"] == "triage"
    assert body["tool"] == "delete_issue"
    assert body["arguments"] == {"id": "ENG-3"}
    assert body["requires_approval"] is True
    assert body["preview"] == {
        "identifier": "ENG-3",
        "title": "Flaky login",
        "state": "Todo",
    }
    assert body["status"] == "pending"
    assert (body["decided_by"], body["decided_at"], body["reason"]) == (None, None, "")
    assert (body["result"], body["error"]) == (None, "")
    assert parse_datetime(body["created"]) is not None


def test_an_action_reads_over_rest_as_its_room_event_showed_it(
    room: Room, alice: User, bob: User, action: Action
) -> None:
    """One payload, built by the domain: the REST answer, the room's event (and
    so the snapshot and the webhooks) cannot drift apart."""
    decided = _approve(alice, action, {"reason": "fine"})
    assert decided.status_code == 200
    event = last_action_event(room)
    assert decided.json() == event
    assert api(bob).get(f"/api/actions/{action.pk}").json() == event


def test_outsider_gets_404_for_an_action_like_a_missing_one(
    mallory: User, action: Action
) -> None:
    hidden = refusal(api(mallory).get(f"/api/actions/{action.pk}"), 404)
    assert hidden == refusal(api(mallory).get(f"/api/actions/{uuid.uuid4()}"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/actions/not-a-uuid"),
        ("post", "/api/actions/not-a-uuid/approve"),
        ("post", "/api/actions/not-a-uuid/deny"),
        ("get", "/api/actions/1"),
    ],
)
def test_malformed_action_id_gets_404_json(
    alice: User, action: Action, method: str, path: str
) -> None:
    refusal(getattr(api(alice), method)(path, {}, format="json"), 404)


def test_decider_reads_actions_of_any_room(staff_decider: User, action: Action) -> None:
    assert api(staff_decider).get(f"/api/actions/{action.pk}").status_code == 200


# Approving --------------------------------------------------------------------------


def test_approver_approves_and_the_decision_is_recorded(
    alice: User, action: Action
) -> None:
    before = timezone.now()
    response = _approve(alice, action, {"reason": "  It is a duplicate. "})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "approved"
    assert body["decided_by"] == "alice"
    assert body["decided_via"] == "api"
    assert body["reason"] == "It is a duplicate."
    assert before <= parse_datetime(body["decided_at"]) <= timezone.now()
    assert body["arguments"] == {"id": "ENG-3"}
    assert body["proposed_arguments"] is None
    action.refresh_from_db()
    assert (action.status, action.decided_by, action.decided_via) == (
        Action.Status.APPROVED,
        alice,
        Action.Via.API,
    )


def test_approval_moves_the_request_on(alice: User, action: Action) -> None:
    _approve(alice, action)
    assert Request.objects.get().status == Request.Status.RUNNING


def test_approval_with_edited_arguments_keeps_the_proposed_ones(
    alice: User, action: Action
) -> None:
    response = _approve(alice, action, {"arguments": {"id": "ENG-4"}})
    assert response.status_code == 200
    body = response.json()
    assert body["arguments"] == {"id": "ENG-4"}
    assert body["proposed_arguments"] == {"id": "ENG-3"}
    action.refresh_from_db()
    assert (action.arguments, action.proposed_arguments) == (
        {"id": "ENG-4"},
        {"id": "ENG-3"},
    )


def test_approval_with_unchanged_arguments_is_no_edit(
    alice: User, action: Action
) -> None:
    body = _approve(alice, action, {"arguments": {"id": "ENG-3"}}).json()
    assert (body["arguments"], body["proposed_arguments"]) == ({"id": "ENG-3"}, None)


@pytest.mark.parametrize(
    "arguments",
    [
        {"id": 3},
        {},
        {"id": ""},
        {"id": "ENG-3", "force": True},
        ["ENG-3"],
        "ENG-3",
        None,
        {"id": "ENG\x003"},
        {"id\x00": "ENG-3"},
    ],
    ids=[
        "wrong-type",
        "missing",
        "empty",
        "unknown-field",
        "list",
        "text",
        "null",
        "nul-in-value",
        "nul-in-key",
    ],
)
def test_invalid_edited_arguments_get_400(
    alice: User, action: Action, arguments: object
) -> None:
    refusal(_approve(alice, action, {"arguments": arguments}), 400)
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING
    assert action.arguments == {"id": "ENG-3"}
    assert action.decided_by is None


def test_invalid_edit_names_the_problem(alice: User, action: Action) -> None:
    detail = refusal(_approve(alice, action, {"arguments": {"id": 3}}), 400)
    assert "id" in detail and "string" in detail


def test_edit_is_validated_against_the_actions_own_tool(
    alice: User, room: Room, bob: User
) -> None:
    comment = pending_action(
        room, bob, tool="add_comment", arguments={"id": "ENG-3", "body": "Done."}
    )
    refusal(_approve(alice, comment, {"arguments": {"id": "ENG-3"}}), 400)
    edited = {"id": "ENG-3", "body": "Fixed in 1.2."}
    assert _approve(alice, comment, {"arguments": edited}).json()["arguments"] == edited


def test_reason_too_long_or_with_nul_gets_400(alice: User, action: Action) -> None:
    refusal(_approve(alice, action, {"reason": "x" * 2001}), 400)
    refusal(_deny(alice, action, {"reason": "x" * 2001}), 400)
    refusal(_approve(alice, action, {"reason": "nul \x00 inside"}), 400)
    refusal(_deny(alice, action, {"reason": "nul \x00 inside"}), 400)
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING


def test_member_approving_gets_403(bob: User, action: Action) -> None:
    refusal(_approve(bob, action), 403)
    action.refresh_from_db()
    assert (action.status, action.decided_by) == (Action.Status.PENDING, None)


def test_member_denying_gets_403(bob: User, action: Action) -> None:
    refusal(_deny(bob, action), 403)
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING


def test_outsider_deciding_gets_404(mallory: User, action: Action) -> None:
    refusal(_approve(mallory, action), 404)
    refusal(_deny(mallory, action), 404)
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING


def test_decider_approves_in_a_room_they_are_not_in(
    staff_decider: User, action: Action
) -> None:
    response = _approve(staff_decider, action)
    assert response.status_code == 200
    assert response.json()["decided_by"] == "sam"


def test_second_approval_gets_409(
    alice: User, staff_decider: User, action: Action
) -> None:
    assert _approve(alice, action, {"reason": "first"}).status_code == 200
    detail = refusal(_approve(staff_decider, action, {"reason": "second"}), 409)
    assert "approved" in detail and "alice" in detail
    action.refresh_from_db()
    assert (action.decided_by, action.reason) == (alice, "first")


def test_deny_after_approve_gets_409(alice: User, action: Action) -> None:
    assert _approve(alice, action).status_code == 200
    refusal(_deny(alice, action), 409)
    action.refresh_from_db()
    assert action.status == Action.Status.APPROVED
    assert not Message.objects.filter(role=Message.Role.TOOL).exists()


def test_approve_after_deny_gets_409(alice: User, action: Action) -> None:
    assert _deny(alice, action).status_code == 200
    refusal(_approve(alice, action), 409)
    action.refresh_from_db()
    assert action.status == Action.Status.DENIED


def test_second_denial_gets_409(alice: User, action: Action) -> None:
    assert _deny(alice, action).status_code == 200
    refusal(_deny(alice, action), 409)
    assert Message.objects.filter(role=Message.Role.TOOL).count() == 1


@pytest.mark.parametrize(
    "status", ["executing", "succeeded", "failed", "expired", "cancelled"]
)
def test_deciding_an_action_no_longer_pending_gets_409(
    alice: User, action: Action, status: str
) -> None:
    Action.objects.filter(pk=action.pk).update(status=status)
    refusal(_approve(alice, action), 409)
    refusal(_deny(alice, action), 409)
    action.refresh_from_db()
    assert action.status == status


def test_deciding_after_the_request_was_cancelled_gets_409(
    alice: User, bob: User, action: Action
) -> None:
    assert api(bob).post(f"/api/requests/{action.request_id}/cancel").status_code == 200
    refusal(_approve(alice, action), 409)
    action.refresh_from_db()
    assert action.status == Action.Status.CANCELLED


# Denying ----------------------------------------------------------------------------


def test_denial_is_recorded_with_its_reason(alice: User, action: Action) -> None:
    response = _deny(alice, action, {"reason": "Not this one."})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "denied"
    assert (body["decided_by"], body["decided_via"]) == ("alice", "api")
    assert body["reason"] == "Not this one."
    assert body["decided_at"] is not None


def test_denial_reaches_the_model_as_the_tool_result(
    alice: User, bob: User, action: Action
) -> None:
    _deny(alice, action, {"reason": "Not this one."})
    detail = api(bob).get(f"/api/requests/{action.request_id}").json()
    tool_message = next(m for m in detail["messages"] if m["role"] == "tool")
    content = json.loads(tool_message["content"])
    assert content["denied"] is True
    assert content["reason"] == "Not this one."
    assert detail["status"] == "running"


def test_denial_ignores_arguments(alice: User, action: Action) -> None:
    response = _deny(alice, action, {"arguments": {"id": "ENG-9"}})
    assert response.status_code == 200
    assert response.json()["arguments"] == {"id": "ENG-3"}


# After commit: the worker hears of it ----------------------------------------------


def test_approval_enqueues_the_action_only_after_commit(
    alice: User,
    action: Action,
    task_queue: Callable[[], list[dict]],
    django_capture_on_commit_callbacks: Callable,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert _approve(alice, action).status_code == 200
    assert task_queue() == []
    for callback in callbacks:
        callback()
    [message] = [m for m in task_queue() if m["task"] == enqueue.TOOL_CALL]
    assert str(action.pk) in message["argsrepr"]


def test_denial_enqueues_the_next_model_step(
    alice: User,
    action: Action,
    task_queue: Callable[[], list[dict]],
    django_capture_on_commit_callbacks: Callable,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert _deny(alice, action).status_code == 200
    tasks = [m["task"] for m in task_queue()]
    assert tasks == [enqueue.MODEL_STEP]
    assert str(action.request_id) in task_queue()[0]["argsrepr"]


# Listing ----------------------------------------------------------------------------


@pytest.fixture
def actions(room: Room, alice: User, bob: User, mallory: User) -> dict[str, Action]:
    """A pending and an approved action in triage, and one in mallory's own room."""
    pending = pending_action(room, bob, call="call_1")
    approved = pending_action(room, bob, call="call_2")
    services.action_decide(action_id=str(approved.pk), user=alice, decision="approve")
    secret = services.room_create(user=mallory, name="Secret", slug="secret")
    hidden = pending_action(secret, mallory, call="call_3")
    # Distinct creation times, so "newest first" is well defined.
    now = timezone.now()
    for age, row in enumerate([hidden, approved, pending]):
        Action.objects.filter(pk=row.pk).update(created=now - timedelta(minutes=age))
    return {"pending": pending, "approved": approved, "hidden": hidden}


def _ids(response: HttpResponseBase) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()]


def test_list_shows_the_users_rooms_newest_first(alice: User, actions: dict) -> None:
    assert _ids(api(alice).get("/api/actions")) == [
        str(actions["approved"].pk),
        str(actions["pending"].pk),
    ]


def test_list_rows_are_whole_actions(bob: User, actions: dict) -> None:
    row = api(bob).get("/api/actions?status=pending").json()[0]
    assert row == api(bob).get(f"/api/actions/{actions['pending'].pk}").json()


def test_outsider_lists_nothing(room: Room, bob: User, mallory: User) -> None:
    pending_action(room, bob)
    assert _ids(api(mallory).get("/api/actions")) == []
    assert _ids(api(mallory).get("/api/actions?room=triage")) == []


def test_list_filters_by_status(alice: User, actions: dict) -> None:
    assert _ids(api(alice).get("/api/actions?status=pending")) == [
        str(actions["pending"].pk)
    ]
    assert _ids(api(alice).get("/api/actions?status=approved")) == [
        str(actions["approved"].pk)
    ]
    assert _ids(api(alice).get("/api/actions?status=denied")) == []


def test_list_filters_by_room(alice: User, mallory: User, actions: dict) -> None:
    assert len(_ids(api(alice).get("/api/actions?room=triage"))) == 2
    assert _ids(api(alice).get("/api/actions?room=secret")) == []
    assert _ids(api(mallory).get("/api/actions?room=secret")) == [
        str(actions["hidden"].pk)
    ]
    assert _ids(api(alice).get("/api/actions?room=nope")) == []


def test_decider_lists_every_room(staff_decider: User, actions: dict) -> None:
    assert _ids(api(staff_decider).get("/api/actions?status=pending")) == [
        str(actions["hidden"].pk),
        str(actions["pending"].pk),
    ]
    assert len(_ids(api(staff_decider).get("/api/actions"))) == 3


def test_list_honours_limit(alice: User, actions: dict) -> None:
    assert _ids(api(alice).get("/api/actions?limit=1")) == [str(actions["approved"].pk)]


@pytest.mark.parametrize(
    "query",
    [
        "status=nonsense",
        "status=PENDING",
        "status=pen%00ding",
        "room=tri%00age",
        "room=tri%20age",
        "limit=0",
        "limit=501",
        "limit=x",
    ],
)
def test_bad_list_query_gets_400(alice: User, actions: dict, query: str) -> None:
    refusal(api(alice).get(f"/api/actions?{query}"), 400)


# Costs: queries that do not grow with the number of actions --------------------------


def _park(room: Room, requester: User, count: int, voter: User | None = None) -> None:
    """`count` pending actions of one request (a flood), each with `voter`'s vote."""
    agent_request = Request.objects.create(
        room=room, user=requester, step=1, status=Request.Status.AWAITING_APPROVAL
    )
    made = Action.objects.bulk_create(
        Action(
            request=agent_request,
            room=room,
            step=0,
            tool="delete_issue",
            tool_call_id=f"call_{uuid.uuid4().hex[:12]}",
            arguments={"id": f"ENG-{n}"},
            requires_approval=True,
            status=Action.Status.PENDING,
            approvals_required=2,
            preview={"identifier": f"ENG-{n}", "title": "Flaky", "state": "Todo"},
        )
        for n in range(count)
    )
    if voter is not None:
        Vote.objects.bulk_create(
            Vote(action=a, user=voter, ballot=0, decision="approve", via="api")
            for a in made
        )


def last_action_event(room: Room) -> dict:
    event = RoomEvent.objects.filter(room=room, type="action").order_by("seq").last()
    assert event is not None
    return event.payload


def _queries(call: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries)


@pytest.fixture
def carol(room: Room) -> User:
    user = User.objects.create_user("carol", password="x")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


def test_listing_actions_costs_the_same_queries_for_1_and_for_200(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    client = api(alice)
    _park(room, bob, 1, voter=carol)
    client.get("/api/actions?limit=500")  # the token's first use is not the point
    one = _queries(lambda: client.get("/api/actions?limit=500"))
    inbox_one = _queries(lambda: client.get("/api/actions?awaiting=me&limit=500"))
    _park(room, bob, 199, voter=carol)
    listed: list = []
    many = _queries(lambda: listed.append(client.get("/api/actions?limit=500")))
    inbox_many = _queries(
        lambda: listed.append(client.get("/api/actions?awaiting=me&limit=500"))
    )
    body, inbox = listed[0].json(), listed[1].json()
    assert len(body) == 200 and len(inbox) == 200
    assert all(a["approvals"][0]["username"] == "carol" for a in body)
    assert all(a["eligible"] == ["alice"] for a in body)
    assert (many, inbox_many) == (one, inbox_one)
    assert many <= 10, many


def test_the_snapshot_costs_the_same_queries_for_1_and_for_200_actions(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    _park(room, bob, 1, voter=carol)
    snapshot_build(room=room, user=alice, with_presence=False)
    one = _queries(lambda: snapshot_build(room=room, user=alice, with_presence=False))
    _park(room, bob, 199, voter=carol)
    built: list = []
    many = _queries(
        lambda: built.append(snapshot_build(room=room, user=alice, with_presence=False))
    )
    assert len(built[0]["actions"]) == 200
    assert many == one, (one, many)
    # Six reads of the room, and the ballots of both action lists read once (14
    # when each list read its own).
    assert many <= 10, many


def test_a_vote_costs_a_few_queries_however_many_actions_wait(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    """The deciding vote over REST, all of it: the token, the lock, who may vote,
    the vote, the decision, its room event and outbox rows, the request moving on,
    and the answer. Who may vote and the votes are read once, for the check, the
    quorum and the event alike (it was 33 queries when each read its own)."""
    client = api(carol)

    def vote() -> int:
        action = pending_action(room, bob, call=f"call_{uuid.uuid4().hex[:8]}")
        path = f"/api/actions/{action.pk}/approve"
        answers: list = []
        queries = _queries(lambda: answers.append(client.post(path, {}, format="json")))
        assert answers[0].json()["status"] == "approved"
        assert last_action_event(room)["approvals"][0]["username"] == "carol"
        return queries

    vote()  # caches warm (content types, the token's first use)
    one = vote()
    # Others' requests: bob may not park more than AGENT_MAX_PENDING_PER_USER.
    _park(room, alice, 200, voter=carol)
    assert vote() == one
    # 24, and 2 for the audit's vote and decision records (one seq bump, one insert).
    assert one <= 26, one


def test_an_expiry_costs_a_few_queries_however_many_actions_wait(
    room: Room, alice: User, bob: User, carol: User
) -> None:
    """The sweep expiring an action: the lock, the change, its room event and
    outbox rows, the model's tool result, the request moving on."""

    def expire() -> int:
        action = pending_action(room, bob, call=f"call_{uuid.uuid4().hex[:8]}")
        past = timezone.now() - timedelta(seconds=1)
        Action.objects.filter(pk=action.pk).update(expires_at=past)
        queries = _queries(services.action_expire_overdue)
        assert last_action_event(room)["status"] == "expired"
        return queries

    expire()
    one = expire()
    _park(room, alice, 200, voter=carol)
    assert expire() == one
    # 20, and 2 for the audit's `expired` record (its seq, its row).
    assert one <= 22, one
