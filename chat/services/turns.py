"""A turn's model calls: claimed with a lease, recorded, ended.

The worker streams the model's answer; everything it writes goes through these
functions, each under the request's row lock (`request_lock`). A step is claimed
with a lease token that the worker renews while it streams; a redelivered or
duplicated task finds the step taken or done and does nothing.
"""

import json
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agentsite import telemetry
from chat import enqueue, metrics
from chat.eligibility import Ballots
from chat.models import Action, Message, PolicyRule, Request
from chat.realtime import partial_clear
from chat.tools import CheckedCall

from .audit import audit_write
from .events import action_emit, message_emit, request_emit, tool_result_emit
from .leases import (
    lease_end,
    lease_exhausted,
    lease_held,
    lease_live,
    lease_release,
    lease_renew,
    lease_take,
)
from .locks import request_lock
from .notify import action_notify
from .policies import rule_copy, rule_resolve
from .requests import request_advance, request_finish

Status = Request.Status


def step_claim(*, request_id: uuid.UUID | str, step: int) -> Request | None:
    """Take model call `step` of a request with a fresh lease, or None if not ours.

    None when the step is done or ended, waits for a person, or another worker's
    lease on it is still live. A request that failed too often is ended here.
    """
    now = timezone.now()
    with transaction.atomic():
        request = request_lock(request_id=request_id)
        if (
            request is None
            or request.step != step
            or request.ended
            or request.status == Status.AWAITING_APPROVAL
            or lease_live(request, now)
            # A step's actions are created as the request moves past it: step 0,
            # every turn's first, has none to wait for.
            or (step > 0 and request.actions.filter(status__in=Action.ACTIVE).exists())
        ):
            return None
        if lease_exhausted(request, limit=settings.AGENT_MAX_ATTEMPTS):
            request_finish(
                request=request,
                status=Status.FAILED,
                error=(
                    f"The agent's worker failed {request.attempts} times on this "
                    "request; giving up."
                ),
            )
            return None
        previous = request.status
        lease_take(request, status=Status.RUNNING)
        if previous != Status.RUNNING:
            request_emit(request)
    return request


def step_renew(*, request: Request, until: datetime) -> bool:
    """Extend our lease; False when it is no longer ours (cancelled, taken over)."""
    return lease_renew(held=request, until=until, lock=_running)


def step_release(*, request: Request) -> None:
    """Give the lease up after a transient failure, so the retry claims at once."""
    lease_release(held=request, lock=_running)


def step_end(*, request: Request, status: str, error: str = "") -> None:
    """End the request from the step we hold (too many steps, a refused call)."""
    with transaction.atomic():
        if locked := _locked_if_ours(request):
            request_finish(request=locked, status=status, error=error)
            transaction.on_commit(lambda: partial_clear(request.draft_message_id))


def step_gave_up(*, request_id: uuid.UUID | str, step: int, error: str) -> None:
    """Fail the request when its model call kept failing after every retry."""
    with transaction.atomic():
        request = request_lock(request_id=request_id)
        if request is not None and not request.ended and request.step == step:
            request_finish(request=request, status=Status.FAILED, error=error)


def step_record(
    *,
    request: Request,
    text: str,
    calls: list[CheckedCall],
    previews: dict[str, dict[str, Any] | None],
    usage: dict[str, Any],
    names: dict[str, tuple[str, ...]] | None = None,
    model: str = "",
    first_token: float | None = None,
) -> None:
    """Record the model's answer: its message, an action per valid tool call.

    `previews` and `names` (what each call's target is known by, for the rules)
    are read from the services by call id, before the request's lock is taken.

    An invalid call becomes a tool message telling the model what was wrong, never
    an action. With no calls the turn is complete; otherwise the request advances:
    approval-free actions are queued, the rest wait for a person.
    """
    calls = calls_within_cap(calls)
    with transaction.atomic():
        locked = _locked_if_ours(request)
        if locked is None:
            return
        _store_answer(locked, text, calls)
        actions = [
            _create_action(
                locked, call, previews.get(call.id), (names or {}).get(call.id, ())
            )
            for call in calls
            if call.spec is not None
        ]
        locked.step += 1
        locked.attempts = 0
        lease_end(locked)
        locked.usage = _add_usage(locked.usage, usage)
        locked.model = model or locked.model
        if locked.first_token_seconds is None:
            locked.first_token_seconds = first_token
        locked.save()
        if not calls:
            request_finish(request=locked, status=Status.COMPLETED)
        ballots = Ballots(actions, {a.pk: locked.user_id for a in actions})
        for action in actions:
            announced = action_emit(action, ballots)
            # A call that asks mails its voters; one the policy denies is reported
            # decided; one that runs at once is the room's business only.
            action_notify(action, announced)
            if action.status == Action.Status.EXECUTING:
                transaction.on_commit(
                    partial(
                        enqueue.tool_call,
                        action_id=action.pk,
                        trace=action.trace_context,
                    )
                )
        transaction.on_commit(lambda: partial_clear(request.draft_message_id))
    if calls:
        request_advance(request_id=request.pk)


def calls_within_cap(calls: list[CheckedCall]) -> list[CheckedCall]:
    """The answer's calls, those past AGENT_MAX_TOOL_CALLS turned into errors: each
    one costs a tool run (or a person's attention), and a model in a loop must not
    make hundreds of them at once. The model is told, and may ask again."""
    cap = settings.AGENT_MAX_TOOL_CALLS
    for call in calls[cap:]:
        call.spec, call.parsed = None, None
        call.error = (
            f"Not run: one answer may make at most {cap} tool calls "
            "(AGENT_MAX_TOOL_CALLS). Make this call again in a later answer if it "
            "is still needed."
        )
    return calls


def _locked_if_ours(request: Request) -> Request | None:
    # None when cancelled meanwhile, or our lease ran out and another took over.
    return lease_held(held=request, lock=_running)


def _running(request: Request) -> Request | None:
    locked = request_lock(request_id=request.pk)
    return locked if locked is not None and locked.status == Status.RUNNING else None


def _store_answer(request: Request, text: str, calls: list[CheckedCall]) -> None:
    message = Message.objects.create(
        id=request.draft_message_id,
        room_id=request.room_id,
        request=request,
        role=Message.Role.ASSISTANT,
        content=text,
        tool_calls=[
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls
        ],
    )
    if message.content:
        message_emit(message)
    for call in calls:
        if call.error:
            invalid = Message.objects.create(
                room_id=request.room_id,
                request=request,
                role=Message.Role.TOOL,
                tool_call_id=call.id,
                content=json.dumps(
                    {"tool": call.name, "status": "invalid", "error": call.error}
                ),
            )
            message_emit(invalid)


def _create_action(
    request: Request,
    call: CheckedCall,
    preview: dict[str, Any] | None,
    names: tuple[str, ...],
) -> Action:
    """The call as an action, under the room's rule for it, copied onto the row."""
    assert call.spec is not None and call.parsed is not None
    rule = rule_resolve(
        room_id=request.room_id, spec=call.spec, arguments=call.parsed, names=names
    )
    now = timezone.now()
    action = Action(
        request=request,
        room_id=request.room_id,
        step=request.step,
        tool=call.spec.name,
        pack=call.spec.pack,
        tool_call_id=call.id,
        arguments=call.parsed,
        preview=preview,
        # The proposing step's span: the approval, then the tool call, under it.
        trace_context=telemetry.carrier(),
    )
    rule_copy(action=action, rule=rule)
    if rule.mode == PolicyRule.Mode.ASK:
        action.status = Action.Status.PENDING
        action.expires_at = now + timedelta(seconds=rule.timeout)
    elif rule.mode == PolicyRule.Mode.AUTO:
        action.status = Action.Status.EXECUTING
    else:
        action.status = Action.Status.DENIED
        action.decided_at, action.decided_via = now, Action.Via.POLICY
        action.reason = (
            f"The room's policy never allows {call.spec.name} here "
            f"({rule.named}); ask a person to do it, or ask the room's "
            "approvers to change the rule."
        )
    action.save(force_insert=True)
    if action.escalates_at is not None and rule.escalate_after:
        # `created` + escalate_after exactly; `created` is set by the insert.
        action.escalates_at = action.created + timedelta(seconds=rule.escalate_after)
        action.save(update_fields=["escalates_at"])
    if action.status != Action.Status.PENDING:
        audit_write(
            room=request.room_id,
            kind="auto" if action.status == Action.Status.EXECUTING else "never",
            actor="policy",
            via=Action.Via.POLICY,
            request=request.pk,
            action=action,
            reason=action.reason,
            data={"rule": rule.rule_id},
        )
    if action.status == Action.Status.DENIED:
        tool_result_emit(action)
        metrics.action_ended(tool=action.tool, outcome=action.status)
    return action


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    keys = set(total) | set(usage)
    return {k: int(total.get(k, 0)) + int(usage.get(k, 0)) for k in sorted(keys)}
