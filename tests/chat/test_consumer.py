"""The room WebSocket against the real Redis (room channels and the hub, no fakes)."""

import asyncio
import json
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client

from agentsite.asgi import application
from chat import services
from chat.connection import FrameThrottle, Verdict
from chat.models import Action, Request, RoomEvent
from chat.realtime import delta_send, publisher, room_channel
from chat.redis_client import redis_client
from tests.plugins.people import token_for

pytestmark = pytest.mark.django_db(transaction=True)
PATH = "/ws/rooms/triage/"


def run(coro):
    return asyncio.run(coro)


def token_headers(user) -> list[tuple[bytes, bytes]]:
    # Called before entering the event loop: the ORM is synchronous.
    return [(b"authorization", f"Token {token_for(user)}".encode())]


def session_headers(user, origin: str | None = "http://127.0.0.1") -> list:
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    # The host the client connected to, as every browser sends it.
    headers = [(b"cookie", cookie.encode()), (b"host", b"127.0.0.1")]
    if origin:
        headers.append((b"origin", origin.encode()))
    return headers


async def connect(headers, path: str = PATH) -> tuple[WebsocketCommunicator, dict]:
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await ws.connect(timeout=5)
    assert connected, f"refused with {code}"
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    return ws, snapshot


async def receive_until(ws, predicate, timeout: float = 5) -> list[dict]:
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive_json_from(timeout=timeout)
            frames.append(frame)
            if predicate(frame):
                return frames


async def refused(headers, path: str = PATH) -> int | None:
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await ws.connect(timeout=5)
    if connected:
        # Accepted then closed is also a refusal; anything else is not.
        output = await ws.receive_output(timeout=5)
        assert output["type"] == "websocket.close", output
        return output.get("code")
    return code


def pending_action(room, bob, tool: str = "delete_issue", **arguments) -> Action:
    request = Request.objects.create(
        room=room, user=bob, step=1, status=Request.Status.AWAITING_APPROVAL
    )
    return Action.objects.create(
        request=request,
        room=room,
        step=0,
        tool=tool,
        tool_call_id="call_1",
        arguments=arguments or {"id": "ENG-3"},
        requires_approval=True,
        status=Action.Status.PENDING,
    )


# Who gets in --------------------------------------------------------------------------


def test_anonymous_is_refused(room):
    assert run(refused([(b"origin", b"http://127.0.0.1")])) == 4401


def test_outsider_and_unknown_room_are_refused(room, mallory, bob):
    assert run(refused(token_headers(mallory))) == 4404
    assert run(refused(token_headers(bob), "/ws/rooms/nope/")) == 4404


def test_foreign_or_missing_origin_is_refused_for_browsers(room, bob):
    assert run(refused(session_headers(bob, origin="http://evil.example"))) == 4403
    assert run(refused(session_headers(bob, origin=None))) == 4403


def test_session_with_own_origin_and_token_without_origin_get_in(room, bob):
    both_headers = (session_headers(bob), token_headers(bob))

    async def both():
        for headers in both_headers:
            ws, snapshot = await connect(headers)
            assert snapshot["seq"] == 0
            await ws.disconnect()

    run(both())


def test_bad_token_is_refused_even_with_a_session_cookie(room, bob):
    headers = [*session_headers(bob), (b"authorization", b"Token not-a-token")]
    assert run(refused(headers)) == 4401


# Snapshot -----------------------------------------------------------------------------


def test_snapshot_has_history_pending_actions_and_the_partial_answer(room, bob):
    headers_bob = token_headers(bob)
    action = pending_action(room, bob)
    running = Request.objects.create(room=room, user=bob, status=Request.Status.RUNNING)
    services.request_start(room=room, user=bob, text="earlier question")
    delta_send(
        room_id=room.pk,
        request_id=running.pk,
        message_id=running.draft_message_id,
        offset=0,
        text="Half an ans",
    )

    async def check():
        ws, snapshot = await connect(headers_bob)
        await ws.disconnect()
        return snapshot

    snapshot = run(check())
    assert snapshot["seq"] == RoomEvent.objects.filter(room=room).count()
    assert [m["content"] for m in snapshot["messages"]] == ["earlier question"]
    assert [a["id"] for a in snapshot["actions"]] == [str(action.pk)]
    partial = next(r for r in snapshot["requests"] if r["id"] == str(running.pk))[
        "partial"
    ]
    assert partial == {
        "message": str(running.draft_message_id),
        "content": "Half an ans",
    }


# Frames -------------------------------------------------------------------------------


def test_chat_frame_posts_a_message_with_the_next_seq(room, bob):
    headers_bob = token_headers(bob)

    async def scenario():
        ws, snapshot = await connect(headers_bob)
        await ws.send_json_to({"type": "chat", "text": "hello agent"})
        frames = await receive_until(ws, lambda f: f["type"] == "request")
        await ws.disconnect()
        return snapshot, frames

    snapshot, frames = run(scenario())
    durable = [f for f in frames if "seq" in f]
    assert durable[0]["type"] == "message"
    assert durable[0]["message"]["content"] == "hello agent"
    assert durable[0]["message"]["author"] == "bob"
    assert [f["seq"] for f in durable] == [snapshot["seq"] + 1, snapshot["seq"] + 2]


def test_member_decide_is_refused_and_approver_decide_is_broadcast(room, alice, bob):
    headers_bob = token_headers(bob)
    headers_alice = token_headers(alice)
    action = pending_action(room, bob)

    async def scenario():
        bob_ws, _ = await connect(headers_bob)
        alice_ws, _ = await connect(headers_alice)
        decide = {"type": "decide", "action": str(action.pk), "decision": "approve"}
        await bob_ws.send_json_to(decide)
        refusal = await receive_until(bob_ws, lambda f: f["type"] == "error")
        await alice_ws.send_json_to(decide)
        seen_by_bob = await receive_until(bob_ws, lambda f: f["type"] == "action")
        await alice_ws.send_json_to(decide)
        second = await receive_until(alice_ws, lambda f: f["type"] == "error")
        await bob_ws.disconnect()
        await alice_ws.disconnect()
        return refusal[-1], seen_by_bob[-1], second[-1]

    refusal, event, second = run(scenario())
    assert refusal["frame"] == "decide" and "approvers" in refusal["detail"]
    assert event["action"]["status"] == "approved"
    assert event["action"]["decided_by"] == "alice"
    assert event["action"]["decided_via"] == "room"
    assert "no longer pending" in second["detail"]


def test_decide_on_an_action_of_another_room_is_refused(room, alice, bob):
    headers_alice = token_headers(alice)
    other = services.room_create(user=alice, name="Elsewhere")
    action = pending_action(other, alice)

    async def scenario():
        ws, _ = await connect(headers_alice)
        await ws.send_json_to(
            {"type": "decide", "action": str(action.pk), "decision": "approve"}
        )
        frames = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1]

    assert "No such action" in run(scenario())["detail"]
    action.refresh_from_db()
    assert action.status == Action.Status.PENDING


def test_cancel_frame_cancels_the_request_and_its_pending_actions(room, bob):
    headers_bob = token_headers(bob)
    action = pending_action(room, bob)

    async def scenario():
        ws, _ = await connect(headers_bob)
        await ws.send_json_to({"type": "cancel", "request": str(action.request_id)})
        frames = await receive_until(ws, lambda f: f["type"] == "request")
        await ws.disconnect()
        return frames

    frames = run(scenario())
    assert [f["action"]["status"] for f in frames if f["type"] == "action"] == [
        "cancelled"
    ]
    assert frames[-1]["request"]["status"] == "cancelled"


def test_resync_sends_every_event_after_the_seq_in_order(room, bob):
    headers_bob = token_headers(bob)
    for text in ("one", "two", "three"):
        services.request_start(room=room, user=bob, text=text)

    async def scenario():
        ws, snapshot = await connect(headers_bob)
        await ws.send_json_to({"type": "resync", "after": 2})
        # Durable events only: this join's (batched) presence event may come between.
        frames = [
            (await receive_until(ws, lambda f: "seq" in f))[-1]
            for _ in range(snapshot["seq"] - 2)
        ]
        await ws.disconnect()
        return frames

    frames = run(scenario())
    assert [f["seq"] for f in frames] == list(range(3, 3 + len(frames)))


def test_resync_from_far_back_answers_a_snapshot_instead_of_the_events(room, bob):
    """600 events behind: one fresh snapshot (contract: "Limits"); 500 behind still
    replays the events, in order."""
    from django.db import transaction

    from chat.models import Message
    from chat.services.events import message_emit

    with transaction.atomic():
        for n in range(600):
            message = Message.objects.create(
                room=room, role=Message.Role.USER, content=f"m{n}", author=bob
            )
            message_emit(message)
    publisher.flush()
    headers_bob = token_headers(bob)

    def durable_or_snapshot(frame: dict) -> bool:
        return frame["type"] == "snapshot" or "seq" in frame

    async def scenario():
        ws, _ = await connect(headers_bob)
        await ws.send_json_to({"type": "resync", "after": 0})
        far = (await receive_until(ws, durable_or_snapshot))[-1]
        await ws.send_json_to({"type": "resync", "after": 100})
        near = [(await receive_until(ws, durable_or_snapshot))[-1] for _ in range(500)]
        await ws.disconnect()
        return far, near

    far, near = run(scenario())
    assert far["type"] == "snapshot" and far["seq"] == 600
    assert far["messages"][-1]["content"] == "m599"
    assert [f["seq"] for f in near] == list(range(101, 601))


# Sockets per user (contract: "Limits") ----------------------------------------------


def test_a_socket_past_the_users_cap_is_refused_and_a_closed_one_frees_a_slot(
    room, alice, bob, settings
):
    cap = settings.WS_MAX_SOCKETS_PER_USER
    headers_bob, headers_alice = token_headers(bob), token_headers(alice)

    async def scenario():
        sockets = [(await connect(headers_bob))[0] for _ in range(cap)]
        one_more = await refused(headers_bob)
        # Another user's sockets are counted apart.
        alice_ws, _ = await connect(headers_alice)
        await sockets.pop().disconnect()
        sockets.append((await connect(headers_bob))[0])
        after_refill = await refused(headers_bob)
        for ws in [*sockets, alice_ws]:
            await ws.disconnect()
        return one_more, after_refill

    assert cap == 20  # the contract's default
    assert run(scenario()) == (4429, 4429)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not json", "not valid JSON"),
        (json.dumps({"type": "dance"}), "Unknown frame type"),
        (json.dumps(["chat"]), "Unknown frame type"),
        (json.dumps({"type": "chat", "text": "x" * 70_000}), "at most"),
        (
            json.dumps({"type": "decide", "action": "nope", "decision": "approve"}),
            "No such",
        ),
        # A fixed id (no action has it): every pytest-xdist worker names it alike.
        (json.dumps({"type": "decide", "action": str(uuid.UUID(int=7))}), "decision"),
        (json.dumps({"type": "cancel", "request": 5}), "request id"),
        (json.dumps({"type": "resync", "after": "x"}), "seq"),
        (json.dumps({"type": "chat", "text": ""}), "empty"),
    ],
)
def test_bad_frames_answer_an_error_and_keep_the_socket_open(room, bob, raw, fragment):
    headers_bob = token_headers(bob)

    async def scenario():
        ws, _ = await connect(headers_bob)
        await ws.send_to(text_data=raw)
        # The presence event of this very join may come first (it is batched).
        error = (await receive_until(ws, lambda f: f["type"] != "presence"))[-1]
        await ws.send_json_to({"type": "resync", "after": 0})
        await ws.send_json_to({"type": "chat", "text": "still here"})
        after = await receive_until(ws, lambda f: f["type"] == "message")
        await ws.disconnect()
        return error, after

    error, after = run(scenario())
    assert error["type"] == "error" and fragment in error["detail"]
    assert after[-1]["message"]["content"] == "still here"


def test_a_flood_of_frames_is_throttled(room, bob):
    headers_bob = token_headers(bob)

    async def scenario():
        ws, _ = await connect(headers_bob)
        for _ in range(100):
            await ws.send_json_to({"type": "resync", "after": 10**9})
        frames = await receive_until(ws, lambda f: f["type"] == "error")
        await ws.disconnect()
        return frames[-1]

    assert "Too many frames" in run(scenario())["detail"]


@pytest.mark.slow
def test_frames_waiting_behind_slow_ones_refill_no_tokens():
    """A server that takes 50 ms over each frame of a client sending faster still
    refuses the 31st: the bucket refills while the consumer waits for the client,
    not while it works (charged by the server's clock alone, the 1.5 s spent on 30
    frames would have refilled 15 tokens, and a flood would get in the slower the
    server drains it)."""
    throttle = FrameThrottle()
    verdicts = []
    for _ in range(31):
        verdicts.append(throttle.take())
        time.sleep(0.05)  # handling the frame, while the next waits in the buffer
        throttle.handled()
    assert verdicts[:30] == [Verdict.READ] * 30
    assert verdicts[30] is Verdict.WARN
    # A client that pauses gets its tokens back at the steady rate.
    time.sleep(0.25)
    assert throttle.take() is Verdict.READ


def test_permissions_are_checked_on_every_frame(room, alice, bob):
    headers_bob = token_headers(bob)

    async def scenario():
        ws, _ = await connect(headers_bob)
        await database_sync_to_async(room.memberships.filter(user=bob).delete)()
        await ws.send_json_to({"type": "chat", "text": "am I still in?"})
        # A presence frame (batched, 50 ms) may come first under load.
        [*_, frame] = await receive_until(ws, lambda f: f["type"] != "presence")
        await ws.disconnect()
        return frame

    frame = run(scenario())
    assert frame["type"] == "error" and "No such room" in frame["detail"]
    assert not Request.objects.filter(room=room).exists()


# Delivery ----------------------------------------------------------------------------


def test_presence_lists_who_is_connected(room, alice, bob):
    headers_bob = token_headers(bob)
    headers_alice = token_headers(alice)

    async def scenario():
        alice_ws, _ = await connect(headers_alice)
        bob_ws, _ = await connect(headers_bob)
        joined = await receive_until(
            alice_ws, lambda f: f["type"] == "presence" and "bob" in f["users"]
        )
        await bob_ws.disconnect()
        left = await receive_until(
            alice_ws, lambda f: f["type"] == "presence" and "bob" not in f["users"]
        )
        await alice_ws.disconnect()
        return joined[-1], left[-1]

    joined, left = run(scenario())
    assert joined["users"] == ["alice", "bob"]
    assert left["users"] == ["alice"]


def test_deltas_carry_offsets_that_rebuild_the_text(room, bob):
    headers_bob = token_headers(bob)
    running = Request.objects.create(room=room, user=bob, status=Request.Status.RUNNING)
    message_id = running.draft_message_id

    async def scenario():
        ws, _ = await connect(headers_bob)
        offset = 0
        for piece in ("Hello ", "there, ", "Bob."):
            await database_sync_to_async(delta_send)(
                room_id=room.pk,
                request_id=running.pk,
                message_id=message_id,
                offset=offset,
                text=piece,
            )
            offset += len(piece)
        frames = await receive_until(ws, lambda f: f.get("text") == "Bob.")
        await ws.disconnect()
        return [f for f in frames if f["type"] == "delta"]

    content = ""
    for delta in run(scenario()):
        content = content[: delta["offset"]] + delta["text"]
    assert content == "Hello there, Bob."


def test_a_gap_is_filled_from_the_database_in_seq_order(room, bob):
    headers_bob = token_headers(bob)

    async def scenario():
        ws, snapshot = await connect(headers_bob)
        # An event of another process whose publish is late: stored, not yet heard.
        await database_sync_to_async(RoomEvent.objects.create)(
            room=room,
            seq=snapshot["seq"] + 1,
            type="request",
            payload={"id": "late", "status": "running", "error": ""},
        )
        await database_sync_to_async(room.__class__.objects.filter(pk=room.pk).update)(
            last_seq=snapshot["seq"] + 1
        )
        await database_sync_to_async(services.request_start)(
            room=room, user=bob, text="after the gap"
        )
        await database_sync_to_async(publisher.flush)()
        frames = await receive_until(ws, lambda f: f["type"] == "message")
        await ws.disconnect()
        return snapshot, frames

    snapshot, frames = run(scenario())
    durable = [f for f in frames if "seq" in f]
    assert durable[0]["seq"] == snapshot["seq"] + 1
    assert durable[0]["request"]["id"] == "late"
    assert durable[1]["seq"] == snapshot["seq"] + 2


def test_a_process_subscribes_once_per_room_however_many_watch(room, alice, bob):
    """Redis carries a room's events once to a web process, not once per watcher,
    and forgets the room there when its last watcher leaves."""
    headers = [token_headers(bob), token_headers(alice), token_headers(bob)]
    channel = room_channel(room.pk)

    def subscribers() -> int:
        return dict(redis_client().pubsub_numsub(channel))[channel]

    async def scenario() -> tuple[int, list[int]]:
        sockets = [(await connect(h))[0] for h in headers]
        during = await asyncio.to_thread(subscribers)
        for ws in sockets:
            await ws.disconnect()
        after = []
        for _ in range(50):  # Redis handles the UNSUBSCRIBE a moment later
            after.append(await asyncio.to_thread(subscribers))
            if after[-1] == 0:
                break
            await asyncio.sleep(0.05)
        return during, after

    during, after = run(scenario())
    assert during == 1
    assert after[-1] == 0


def test_retract_frame_puts_an_approval_in_its_delay_back_to_pending(room, alice, bob):
    from chat.models import PolicyRule
    from tests.chat.test_policies import propose

    PolicyRule.objects.create(room=room, tool="delete_issue", mode="ask", delay=60)
    action = propose(room, bob)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    headers_alice, headers_bob = token_headers(alice), token_headers(bob)

    async def scenario():
        member, _ = await connect(headers_bob)
        await member.send_json_to({"type": "retract", "action": str(action.pk)})
        refused = await receive_until(member, lambda f: f["type"] == "error")
        approver, _ = await connect(headers_alice)
        await approver.send_json_to(
            {"type": "retract", "action": str(action.pk), "reason": "wrong one"}
        )
        frames = await receive_until(
            approver,
            lambda f: f["type"] == "action" and f["action"]["status"] == "pending",
        )
        await member.disconnect()
        await approver.disconnect()
        return refused[-1], frames[-1]["action"]

    refused, retracted = run(scenario())
    assert refused["frame"] == "retract"
    assert (retracted["runs_at"], retracted["approvals"]) == (None, [])
    assert retracted["retractions"][0]["reason"] == "wrong one"


# Removal (contract semantic 8) --------------------------------------------------------


async def closed_with(ws, timeout: float = 2) -> int | None:
    """The close code the server sends within `timeout`, skipping other frames."""
    async with asyncio.timeout(timeout):
        while True:
            output = await ws.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                return output.get("code")


def _as(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def test_removed_member_is_closed_with_4403_and_later_calls_get_404(room, alice, bob):
    headers_bob = token_headers(bob)
    approver, member = _as(alice), _as(bob)

    async def scenario():
        ws, _ = await connect(headers_bob)
        refused = await database_sync_to_async(member.delete)(
            "/api/rooms/triage/members/alice"
        )
        assert refused.status_code == 403
        removed = await database_sync_to_async(approver.delete)(
            "/api/rooms/triage/members/bob"
        )
        assert removed.status_code == 204
        return await closed_with(ws)

    assert run(scenario()) == 4403
    assert member.get("/api/rooms/triage").status_code == 404
    assert approver.delete("/api/rooms/triage/members/bob").status_code == 404


def test_the_last_approver_cannot_be_removed(room, alice):
    response = _as(alice).delete("/api/rooms/triage/members/alice")
    assert response.status_code == 409
    assert room.memberships.filter(user=alice).exists()


def test_a_role_change_closes_the_members_sockets(room, alice, bob):
    headers_bob = token_headers(bob)
    approver = _as(alice)

    async def scenario():
        ws, _ = await connect(headers_bob)
        changed = await database_sync_to_async(approver.post)(
            "/api/rooms/triage/members",
            {"username": "bob", "role": "approver"},
            format="json",
        )
        assert changed.status_code == 201
        return await closed_with(ws)

    assert run(scenario()) == 4403


def _staff(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def test_the_admins_delete_and_a_deactivation_close_the_sockets(
    room, alice, bob, admin_user
):
    headers_bob, headers_alice = token_headers(bob), token_headers(alice)
    staff = _staff(admin_user)
    membership = room.memberships.get(user=bob)

    async def scenario():
        ws_bob, _ = await connect(headers_bob)
        ws_alice, _ = await connect(headers_alice)
        deleted = await database_sync_to_async(staff.post)(
            f"/admin/chat/membership/{membership.pk}/delete/", {"post": "yes"}
        )
        assert deleted.status_code == 302
        bob_code = await closed_with(ws_bob)
        form = {
            "username": "alice",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            # is_active left out: the checkbox unticked.
        }
        changed = await database_sync_to_async(staff.post)(
            f"/admin/chat/user/{alice.pk}/change/", form
        )
        assert changed.status_code == 302, changed.content[:2000]
        return bob_code, await closed_with(ws_alice)

    assert run(scenario()) == (4403, 4403)


def test_the_snapshot_after_a_lost_redis_checks_membership(room, bob):
    from chat.hub import hub

    headers_bob = token_headers(bob)

    async def scenario():
        ws, _ = await connect(headers_bob)
        # Removed while this process heard nothing (Redis away): no control message.
        await database_sync_to_async(room.memberships.filter(user=bob).delete)()
        for watcher in list(hub()._rooms[room.pk]):
            watcher.resync()  # what the hub does once Redis is back
        return await closed_with(ws)

    assert run(scenario()) == 4403


def _with_host(headers: list, host: bytes) -> list:
    return [*headers, (b"host", host)]


def test_origin_of_another_scheme_or_port_is_refused(room, bob):
    same = _with_host(session_headers(bob, "http://127.0.0.1:8000"), b"127.0.0.1:8000")
    other_port = _with_host(
        session_headers(bob, "http://127.0.0.1:9999"), b"127.0.0.1:8000"
    )
    other_scheme = _with_host(
        session_headers(bob, "https://127.0.0.1:8000"), b"127.0.0.1:8000"
    )
    bad_port = _with_host(session_headers(bob, "http://127.0.0.1:x"), b"127.0.0.1")

    async def scenario():
        ws, _ = await connect(same)
        await ws.disconnect()
        return [await refused(h) for h in (other_port, other_scheme, bad_port)]

    assert run(scenario()) == [4403, 4403, 4403]


def test_origin_of_another_allowed_host_is_refused(room, bob, settings):
    # A sibling subdomain is allowed to serve the app too, but it is another site:
    # a page there must not open a socket with the victim's cookie here.
    settings.ALLOWED_HOSTS = [".example.com"]
    own = _with_host(session_headers(bob, "http://app.example.com"), b"app.example.com")
    sibling = _with_host(
        session_headers(bob, "http://evil.example.com"), b"app.example.com"
    )

    async def scenario():
        ws, _ = await connect(own)
        await ws.disconnect()
        return await refused(sibling)

    assert run(scenario()) == 4403
