"""Deciding a request's actions at once (PROTOCOL.md, "Governance"): REST and the
room socket, each action in its own transaction, refusals listed, retries harmless.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import enqueue, services
from chat.models import (
    Action,
    Membership,
    PolicyRule,
    Request,
    Room,
    RoomEvent,
    User,
    Vote,
)
from chat.tools import check_call
from tests.chat.test_api import api, refusal
from tests.plugins.people import _user

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(room: Room) -> User:
    user = _user("carol")
    Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
    return user


def propose_many(room: Room, requester: User, *ids: str) -> list[Action]:
    """The model proposes one delete_issue per id in one step of a fresh request."""
    request = services.request_start(room=room, user=requester, text="clean up")
    claimed = services.step_claim(request_id=request.pk, step=0)
    assert claimed is not None
    calls = [
        check_call(
            call_id=f"call_{n}", name="delete_issue", arguments=json.dumps({"id": i})
        )
        for n, i in enumerate(ids)
    ]
    services.step_record(
        request=claimed,
        text="",
        calls=calls,
        previews={c.id: {"identifier": i} for c, i in zip(calls, ids, strict=True)},
        usage={},
    )
    return list(Action.objects.filter(request=request).order_by("created", "pk"))


def decide(user: User, request_id: Any, **body: Any):
    return api(user).post(f"/api/requests/{request_id}/decide", body, format="json")


def test_approve_all_votes_on_each_pending_action_in_order(room, alice, bob) -> None:
    actions = propose_many(room, bob, "ENG-1", "ENG-2", "ENG-3")
    response = decide(alice, actions[0].request_id, decision="approve", reason="ok")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [a["id"] for a in body["actions"]] == [str(a.pk) for a in actions]
    assert {a["status"] for a in body["actions"]} == {"approved"}
    assert body["refused"] == []
    assert {a.status for a in Action.objects.filter(request=actions[0].request)} == {
        "approved"
    }
    assert set(Vote.objects.values_list("via", "reason")) == {("api", "ok")}


def test_a_quorum_of_two_is_kept_and_a_retry_is_harmless(room, alice, carol, bob):
    PolicyRule.objects.create(room=room, tool="delete_issue", approvals_required=2)
    actions = propose_many(room, bob, "ENG-1", "ENG-2")
    first = decide(alice, actions[0].request_id, decision="approve").json()
    assert [a["status"] for a in first["actions"]] == ["pending", "pending"]
    assert [len(a["approvals"]) for a in first["actions"]] == [1, 1]
    again = decide(alice, actions[0].request_id, decision="approve")
    assert again.status_code == 200
    assert again.json()["actions"] == []
    assert {r["status"] for r in again.json()["refused"]} == {409}
    assert Vote.objects.count() == 2
    done = decide(carol, actions[0].request_id, decision="approve").json()
    assert [a["status"] for a in done["actions"]] == ["approved", "approved"]


def test_refusals_are_listed_per_action_and_never_undo_the_others(
    room, alice, bob, carol
) -> None:
    actions = propose_many(room, bob, "ENG-1", "ENG-2", "ENG-3")
    # ENG-2: only carol may vote; ENG-3 is already decided (in neither list).
    Action.objects.filter(pk=actions[1].pk).update(approvers=["carol"])
    Action.objects.filter(pk=actions[2].pk).update(status=Action.Status.DENIED)
    body = decide(alice, actions[0].request_id, decision="deny", reason="no").json()
    assert [a["id"] for a in body["actions"]] == [str(actions[0].pk)]
    assert body["actions"][0]["status"] == "denied"
    [refused] = body["refused"]
    assert refused["action"] == str(actions[1].pk) and refused["status"] == 403
    assert "carol" in refused["detail"]
    assert Action.objects.get(pk=actions[1].pk).status == "pending"


def test_403_when_every_pending_action_refuses_the_caller(room, bob) -> None:
    actions = propose_many(room, bob, "ENG-1", "ENG-2")
    response = decide(bob, actions[0].request_id, decision="approve")
    refusal(response, 403)
    assert [r["status"] for r in response.json()["refused"]] == [403, 403]
    assert not Vote.objects.exists()


def test_409_without_pending_actions_404_for_outsiders_400_for_bad_bodies(
    room, alice, bob, mallory
) -> None:
    actions = propose_many(room, bob, "ENG-1")
    request_id = actions[0].request_id
    refusal(decide(mallory, request_id, decision="approve"), 404)
    refusal(decide(alice, "not-a-uuid", decision="approve"), 404)
    refusal(decide(alice, request_id, decision="maybe"), 400)
    refusal(decide(alice, request_id, decision="approve", grant={"seconds": 5}), 400)
    refusal(decide(alice, request_id, decision="approve", reason=7), 400)
    refusal(decide(alice, request_id), 400)
    assert not Vote.objects.exists()
    assert decide(alice, request_id, decision="approve").status_code == 200
    refusal(decide(alice, request_id, decision="approve"), 409)
    finished = services.request_start(room=room, user=alice, text="hi")
    refusal(decide(alice, finished.pk, decision="approve"), 409)


def test_a_reason_over_2000_characters_is_refused(room, alice, bob) -> None:
    actions = propose_many(room, bob, "ENG-1")
    refusal(
        decide(alice, actions[0].request_id, decision="deny", reason="x" * 2001), 400
    )


@pytest.mark.django_db(transaction=True)
def test_two_decide_alls_racing_on_a_quorum_of_two_run_each_action_once(
    room, bob, task_queue
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every write; the race needs row locks")
    voters = []
    for name in ("v1", "v2"):
        user = _user(name)
        Membership.objects.create(room=room, user=user, role=Membership.Role.APPROVER)
        voters.append(user)
        api(user)  # each token, made before the threads
    PolicyRule.objects.create(room=room, tool="delete_issue", approvals_required=2)
    actions = propose_many(room, bob, "ENG-1", "ENG-2", "ENG-3")
    request_id = actions[0].request_id

    def vote(user: User) -> tuple[int, int]:
        try:
            response = decide(user, request_id, decision="approve")
            return response.status_code, len(response.json()["actions"])
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(vote, voters))

    assert answers == [(200, 3), (200, 3)]
    assert {a.status for a in Action.objects.filter(request_id=request_id)} == {
        "approved"
    }
    assert Vote.objects.count() == 6
    calls = [m for m in task_queue() if m["task"] == enqueue.TOOL_CALL]
    assert len(calls) == 3
    for action in actions:
        assert services.action_claim(action_id=action.pk) is not None
        assert services.action_claim(action_id=action.pk) is None


# The room socket ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_decide_all_frame_answers_the_sender_alone_and_each_vote_is_an_event(
    room, alice, bob
) -> None:
    from tests.chat.test_consumer import connect, receive_until, run, token_headers

    actions = propose_many(room, bob, "ENG-1", "ENG-2")
    Action.objects.filter(pk=actions[1].pk).update(approvers=["bob"])
    request_id = str(actions[0].request_id)
    headers_alice, headers_bob = token_headers(alice), token_headers(bob)

    async def scenario():
        alice_ws, _ = await connect(headers_alice)
        bob_ws, _ = await connect(headers_bob)
        await alice_ws.send_json_to(
            {"type": "decide_all", "request": request_id, "decision": "approve"}
        )
        answer = await receive_until(alice_ws, lambda f: f["type"] == "decided_all")
        seen = await receive_until(bob_ws, lambda f: f["type"] == "action")
        await alice_ws.send_json_to(
            {"type": "decide_all", "request": "nope", "decision": "approve"}
        )
        error = await receive_until(alice_ws, lambda f: f["type"] == "error")
        await bob_ws.send_json_to(
            {"type": "decide_all", "request": request_id, "decision": "approve"}
        )
        bobs = await receive_until(bob_ws, lambda f: f["type"] == "decided_all")
        await alice_ws.disconnect()
        await bob_ws.disconnect()
        return answer, seen, error[-1], bobs

    answer, seen, error, bobs = run(scenario())
    assert not any(f["type"] == "decided_all" for f in seen)
    frame = answer[-1]
    assert frame["request"] == request_id and frame["decision"] == "approve"
    assert frame["actions"] == [str(actions[0].pk)]
    assert [(r["action"], r["status"]) for r in frame["refused"]] == [
        (str(actions[1].pk), 403)
    ]
    assert seen[-1]["action"]["decided_via"] == "room"
    assert error["frame"] == "decide_all"
    # bob may vote on his named action (four eyes is off), not on the decided one.
    assert bobs[-1]["actions"] == [str(actions[1].pk)]
    events = RoomEvent.objects.filter(room=room, type="action")
    assert events.count() >= 2
    assert Request.objects.get(pk=request_id).status != Request.Status.AWAITING_APPROVAL
