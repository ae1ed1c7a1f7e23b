"""Pages for approvers outside a room: an action's decision page and the inbox."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import services
from .eligibility import Ballots, may_vote
from .errors import AppError
from .http import AuthenticatedHttpRequest
from .links import action_id_from, decide_url
from .models import Action, Vote


@login_required
@require_http_methods(["GET", "POST"])
def decide(request: AuthenticatedHttpRequest, token: str) -> HttpResponse:
    """GET shows the action and changes nothing (mail scanners follow links); POST
    votes with `via` link, under the rules of every other interface."""
    action = _action_for_voter(request, token)
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
        "preview": json.dumps(action.preview, indent=2, ensure_ascii=False)
        if action.preview
        else "",
        "arguments": json.dumps(action.arguments, indent=2, ensure_ascii=False),
    }
    return render(request, "chat/decide.html", context)


def _action_for_voter(request: AuthenticatedHttpRequest, token: str) -> Action:
    action_id = action_id_from(token)
    if action_id is None:
        raise Http404("No such action.")
    try:
        action = services.action_get(action_id=action_id, user=request.user)
    except AppError:
        raise Http404("No such action.") from None
    if not may_vote(
        action=action, requester_id=action.request.user_id, user=request.user
    ):
        raise Http404("No such action.")
    return action


@login_required
def inbox(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Pending actions across rooms that wait for this user's vote."""
    actions = services.action_list(
        user=request.user, status=None, room_slug=None, limit=200, awaiting_me=True
    )
    rows = [(action, decide_url(action)) for action in actions]
    return render(request, "chat/inbox.html", {"rows": rows})
