"""Pages for approvers outside a room: an action's decision page and the inbox."""

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import services
from .eligibility import Ballots, vote_refusal
from .errors import AppError
from .http import AuthenticatedHttpRequest
from .links import action_id_from, decide_url
from .models import Action, Vote


@login_required
@require_http_methods(["GET", "POST"])
def decide(request: AuthenticatedHttpRequest, token: str) -> HttpResponse:
    """GET shows the action and changes nothing (mail scanners follow links); POST
    votes with `via` link, under the rules of every other interface.

    Whoever may not decide gets 404, as the contract says; a member of the room (who
    sees the action there anyway) gets a 404 page that says why and links to the
    room, anyone else one that tells nothing."""
    action = _action_for_member(request, token)
    refusal = vote_refusal(
        action=action, requester_id=action.request.user_id, user=request.user
    )
    if refusal is not None:
        context = {"action": action, "refusal": refusal}
        return render(request, "chat/decide_refused.html", context, status=404)
    if request.method == "POST":
        decision = request.POST.get("decision", "")
        try:
            services.action_decide(
                action_id=str(action.pk),
                user=request.user,
                decision=decision,
                reason=request.POST.get("reason", ""),
                via=Action.Via.LINK,
            )
        except AppError as exc:
            messages.error(request, exc.detail)
        else:
            verb = "approved" if decision == "approve" else "denied"
            messages.success(request, f"You {verb} {action.tool}.")
        return redirect("decide", token=token)
    # The votes that count: a removed or demoted voter's are not shown as counting.
    ballots = Ballots([action])
    counted = {
        v.user_id
        for v in ballots.current_votes(action)
        if action.status != Action.Status.PENDING or ballots.counts(action, v)
    }
    votes = [
        vote
        for vote in Vote.objects.filter(
            action=action, ballot=action.ballot
        ).select_related("user")
        if vote.user_id in counted
    ]
    context = {
        "action": action,
        "pending": action.status == Action.Status.PENDING,
        "voted": any(vote.user_id == request.user.pk for vote in votes),
        "votes": votes,
        "preview": preview_rows(action.preview),
        "preview_label": preview_label(action.status),
        "arguments": json.dumps(action.arguments, indent=2, ensure_ascii=False),
    }
    return render(request, "chat/decide.html", context)


def _action_for_member(request: AuthenticatedHttpRequest, token: str) -> Action:
    action_id = action_id_from(token)
    if action_id is None:
        raise Http404("No such action.")
    try:
        return services.action_get(action_id=action_id, user=request.user)
    except AppError:
        raise Http404("No such action.") from None


# The room page's names for preview fields (static/js/actions.js, PREVIEW_LABELS).
_PREVIEW_LABELS = {
    "identifier": "Issue",
    "title": "Title",
    "state": "State",
    "creates": "Creates",
    "team": "Team",
    "missing": "Not found",
    "unavailable": "Preview unavailable",
    "repository": "Repository",
    "labels": "Labels",
}


def preview_label(status: str) -> str:
    """The preview was read when the call was proposed: once it ran (or could
    have), it shows how things were before."""
    if status in (
        Action.Status.EXECUTING,
        Action.Status.SUCCEEDED,
        Action.Status.FAILED,
    ):
        return "Before"
    if status in (Action.Status.DENIED, Action.Status.EXPIRED, Action.Status.CANCELLED):
        return "When proposed"
    return "Preview"


def preview_rows(preview: Any) -> list[tuple[str, str]]:
    """A preview as (label, text) rows in reading order, as the room's card shows
    it: lists as "a, b", an empty one as "none"."""
    if not isinstance(preview, dict):
        return []
    keys = [k for k in _PREVIEW_LABELS if k in preview]
    keys += [k for k in preview if k not in _PREVIEW_LABELS]
    rows = []
    for key in keys:
        value = preview[key]
        if value is None or value is False:
            continue
        label = _PREVIEW_LABELS.get(key) or key.replace("_", " ").capitalize()
        text = (
            "This issue does not exist (any more)."
            if key == "missing"
            else _preview_text(value)
        )
        rows.append((label, text))
    return rows


def _preview_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_preview_text(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return str(value.get("name") or json.dumps(value, ensure_ascii=False))
    return str(value) if value != "" else "none"


@login_required
def inbox(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Pending actions across rooms that wait for this user's vote."""
    actions = services.action_list(
        user=request.user, status=None, room_slug=None, limit=200, awaiting_me=True
    )
    rows = [(action, decide_url(action)) for action in actions]
    return render(request, "chat/inbox.html", {"rows": rows})
