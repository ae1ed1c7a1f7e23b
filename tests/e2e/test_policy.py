"""Approval policies with real workers: the grace period across restarts, and an
edited target previewed afresh and checked again when the tool runs."""

import time

import pytest

from chat import services
from chat.models import Action, Message, PolicyRule, Request
from tasks.linear_client import LinearClient
from tests.plugins.stack import effects, reached, wait_for

pytestmark = pytest.mark.e2e
S = Request.Status


def pending_delete(room, bob, text: str = "delete ENG-3") -> tuple[Request, Action]:
    request = services.request_start(room=room, user=bob, text=text)
    reached(request, S.AWAITING_APPROVAL, timeout=60)
    return request, Action.objects.get(request=request, status="pending")


def test_a_retract_during_the_delay_never_runs_the_tool_across_a_worker_restart(
    stack, room, alice, bob, linear_standin
):
    PolicyRule.objects.create(room=room, tool="delete_issue", delay=8)
    worker = stack.worker()
    request, action = pending_delete(room, bob)
    approved = services.action_decide(
        action_id=str(action.pk), user=alice, decision="approve"
    )
    assert approved.status == "approved" and approved.runs_at

    worker.kill()  # its delayed message dies with it
    services.action_retract(action_id=str(action.pk), user=alice, reason="oops")
    stack.worker("worker-2")
    stack.beat()
    # Well past runs_at and several sweeps: nothing runs a retracted approval.
    wait_for(
        lambda: time.time() > approved.runs_at.timestamp() + 12,
        timeout=30,
        what="the delay and the sweep's grace to pass",
    )
    action.refresh_from_db()
    assert action.status == "pending" and action.runs_at is None
    assert effects(linear_standin, "issueDelete") == []

    services.action_decide(action_id=str(action.pk), user=alice, decision="deny")
    reached(request, S.COMPLETED)
    told = Message.objects.get(request=request, role="tool").content
    assert "retracted" in told and "oops" in told
    assert effects(linear_standin, "issueDelete") == []


def test_a_delay_that_passes_during_a_restart_runs_the_tool_once(
    stack, room, alice, bob, linear_standin
):
    PolicyRule.objects.create(room=room, tool="delete_issue", delay=3)
    worker = stack.worker()
    request, action = pending_delete(room, bob)
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    worker.kill()
    time.sleep(4)  # the delay passes while no worker runs

    stack.worker("worker-2")
    stack.beat()
    reached(request, S.COMPLETED, timeout=60)

    action.refresh_from_db()
    assert action.status == "succeeded"
    assert len(effects(linear_standin, "issueDelete")) == 1


def test_an_edited_target_is_previewed_afresh_and_a_changed_one_is_refused(
    stack, room, alice, bob, linear_standin, settings
):
    # The edit is previewed where it is made: here, this process plays the web.
    settings.LINEAR_API_URL = linear_standin.url
    stack.worker()
    request, action = pending_delete(room, bob)
    edited = services.action_decide(
        action_id=str(action.pk),
        user=alice,
        decision="approve",
        arguments={"id": "ENG-2"},
    )
    # The preview is the edited target's, read when the edit was made.
    assert edited.preview["identifier"] == "ENG-2"
    reached(request, S.COMPLETED)
    assert [e["identifier"] for e in effects(linear_standin, "issueDelete")] == [
        "ENG-2"
    ]

    # Someone renames ENG-5 in Linear between the proposal and the approval: the
    # delete refuses, readably, and ENG-5 stays.
    second, action = pending_delete(room, bob, "delete ENG-5")
    time.sleep(0.01)  # Linear's updatedAt has millisecond resolution
    LinearClient(linear_standin.url, "demo-key").update_issue(
        "ENG-5", title="Renamed while it waited"
    )
    services.action_decide(action_id=str(action.pk), user=alice, decision="approve")
    reached(second, S.COMPLETED)
    action.refresh_from_db()
    assert action.status == "failed"
    assert "changed after it was shown for approval" in action.error
    assert [e["identifier"] for e in effects(linear_standin, "issueDelete")] == [
        "ENG-2"
    ]
