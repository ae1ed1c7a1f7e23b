"""Who may vote on an action, under the rule copied onto it (read-only rules).

Apart from `chat.services` so that the serializers, which show each card's remaining
voters, and the services, which refuse a vote, read the same rule.
"""

from django.contrib.auth.models import User

from chat.models import Action, Membership, Vote


def _role(action: Action, user: User) -> str | None:
    return (
        Membership.objects.filter(room_id=action.room_id, user=user)
        .values_list("role", flat=True)
        .first()
    )


def may_vote(*, action: Action, requester_id: int | None, user: User) -> bool:
    """Whether `user` may vote on `action` under the rule copied onto it."""
    if not user.is_authenticated or not user.is_active:
        return False
    if not action.requester_may_approve and user.pk == requester_id:
        return False
    if action.approvers:
        return user.username in action.approvers and (
            _role(action, user) is not None or user.has_perm("chat.decide_action")
        )
    if user.has_perm("chat.decide_action"):
        return True
    return _role(action, user) == Membership.Role.APPROVER


def eligible_voters(action: Action, requester_id: int | None) -> list[str]:
    """Who may still vote on a pending action (named approvers or the room's)."""
    if action.status != Action.Status.PENDING:
        return []
    if action.approvers:
        names = set(action.approvers)
    else:
        names = set(
            Membership.objects.filter(
                room_id=action.room_id, role=Membership.Role.APPROVER
            ).values_list("user__username", flat=True)
        )
    if not action.requester_may_approve and requester_id is not None:
        names -= set(
            User.objects.filter(pk=requester_id).values_list("username", flat=True)
        )
    voted = Vote.objects.filter(action=action, ballot=action.ballot).values_list(
        "user__username", flat=True
    )
    return sorted(names - set(voted))
