"""Deciding a request's actions at once (PROTOCOL.md, "Governance").

One vote per pending action, in creation order, each through `action_decide` in a
transaction of its own: the same rule, quorum, four eyes and escalation as a single
vote, and one refusal never undoes the others.
"""

from dataclasses import dataclass, field
from typing import TypedDict
from uuid import UUID

from chat.errors import AppError, Conflict, Forbidden, Invalid
from chat.models import Action, User
from chat.payloads import ActionPayload, action_payload

from .actions import action_decide, reason_clean
from .requests import request_get


class Refusal(TypedDict):
    action: str
    status: int  # 403 or 409
    detail: str


@dataclass
class DecidedAll:
    """What a decide-all did: each action voted on, as it was right after its vote,
    and each other pending action with why it was not."""

    actions: list[ActionPayload] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def request_decide_all(
    *,
    request_id: str,
    user: User,
    decision: str,
    reason: str = "",
    via: str = Action.Via.API,
) -> DecidedAll:
    """Vote `decision` on every pending action of the request.

    404 when the user may not see it; 409 when nothing in it is pending; 403 (with
    `refused`) when every pending action refuses the user with 403. An action the
    user already voted on is refused with 409, so a retry changes nothing.
    """
    request = request_get(request_id=request_id, user=user)
    if decision not in ("approve", "deny"):
        raise Invalid("decision must be approve or deny.")
    reason = reason_clean(reason)
    pending = list(
        Action.objects.filter(request=request, status=Action.Status.PENDING)
        .order_by("created", "pk")
        .values_list("pk", flat=True)
    )
    if not pending:
        raise Conflict("This request has no pending action.")
    done = DecidedAll()
    for action_id in pending:
        try:
            action = action_decide(
                action_id=str(action_id),
                user=user,
                decision=decision,
                reason=reason,
                via=via,
            )
        except (Forbidden, Conflict) as exc:
            if isinstance(exc, Conflict) and not _still_pending(action_id):
                continue  # decided meanwhile (by someone else): in neither list
            done.refused.append(_refusal(action_id, exc))
            continue
        done.actions.append(action_payload(action))
    if not done.actions and all(r["status"] == 403 for r in done.refused):
        raise Forbidden(
            "You may not vote on any pending action of this request.",
            refused=done.refused,
        )
    return done


def _still_pending(action_id: UUID) -> bool:
    return Action.objects.filter(pk=action_id, status=Action.Status.PENDING).exists()


def _refusal(action_id: UUID, exc: AppError) -> Refusal:
    return Refusal(action=str(action_id), status=exc.status, detail=exc.detail)
