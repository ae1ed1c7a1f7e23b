"""Who may vote on an action now, under the rule copied onto it (read-only rules).

The one answer every interface uses: the services refuse a vote and count a quorum
with it, the serializers list `eligible` and `approvals` from it (the page draws its
buttons from those), notifications mail its voters, the admin and the decision page
ask it. `allows` is the rule; `may_vote` asks it for one user, `Ballots` for many
actions at once in a fixed number of queries (a list, a snapshot, an event).

Apart from `chat.services` so that the payloads (chat.payloads), which the services
announce and the serializers answer, can read it without importing the write path.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from chat.models import Action, Membership, Request, User, Vote

DECIDE_PERM = "chat.decide_action"


@dataclass(frozen=True)
class Voter:
    """What the rule needs to know of a person, for one action's room."""

    id: int
    username: str
    is_active: bool
    role: str | None  # in the action's room; None: not a member
    decider: bool  # holds chat.decide_action (an active superuser does)


def refusal(action: Action, requester_id: int | None, voter: Voter) -> str | None:
    """Why `voter` may not vote on `action` now, or None when they may. The rule."""
    if not voter.is_active:
        return "This account may not vote."
    if not action.requester_may_approve and voter.id == requester_id:
        return (
            "This action's rule needs someone other than the requester to approve it."
        )
    if (
        action.escalated_at is not None
        and voter.username in (action.escalate_to or ())
        and (voter.role is not None or voter.decider)
    ):
        # Escalated: its escalate_to users who are in the room (any role) or hold
        # chat.decide_action vote besides those the rule named; four eyes stands.
        return None
    if action.approvers:
        if voter.username not in action.approvers:
            return (
                "Only the approvers this action's rule names may vote on it: "
                + ", ".join(action.approvers)
                + "."
            )
        if voter.role is None and not voter.decider:
            return "Only the named approvers who are members of this room may vote."
        return None
    if voter.decider or voter.role == Membership.Role.APPROVER:
        return None
    return "Only approvers of this room may decide its actions."


def allows(action: Action, requester_id: int | None, voter: Voter) -> bool:
    return refusal(action, requester_id, voter) is None


def voter_of(action: Action, user: User | AnonymousUser) -> Voter | None:
    """`user` as the rule sees them in `action`'s room; None when anonymous."""
    if not user.is_authenticated:
        return None
    role = (
        Membership.objects.filter(room_id=action.room_id, user_id=user.pk)
        .values_list("role", flat=True)
        .first()
    )
    return Voter(
        id=user.pk,
        username=user.get_username(),
        is_active=user.is_active,
        role=role,
        decider=user.is_active and user.has_perm(DECIDE_PERM),
    )


def vote_refusal(
    *, action: Action, requester_id: int | None, user: User | AnonymousUser
) -> str | None:
    """Why `user` may not vote on `action` now (a sentence), or None if they may."""
    voter = voter_of(action, user)
    if voter is None:
        return "Log in to vote."
    return refusal(action, requester_id, voter)


def may_vote(
    *, action: Action, requester_id: int | None, user: User | AnonymousUser
) -> bool:
    """Whether `user` may vote on `action` now, under the rule copied onto it."""
    return vote_refusal(action=action, requester_id=requester_id, user=user) is None


def retractable(action: Action, now: datetime | None = None) -> bool:
    """An approved action still waiting out its delay: its voters may retract."""
    return (
        action.status == Action.Status.APPROVED
        and action.runs_at is not None
        and action.runs_at > (now or timezone.now())
    )


@dataclass(frozen=True)
class _Vote:
    user_id: int
    username: str
    is_active: bool
    decision: str
    ballot: int
    at: datetime


class Ballots:
    """Eligibility and votes of many actions, read in four queries whatever their
    number: their requesters, their votes, and (on the first question that needs
    them: a decided action's payload does not) their rooms' memberships and the
    holders of chat.decide_action.

    `requesters` (action id -> requester's user id) saves the first query when the
    caller knows them, as do actions read with their request.
    """

    def __init__(
        self,
        actions: Iterable[Action],
        requesters: Mapping[UUID, int | None] | None = None,
    ) -> None:
        self.actions = {action.pk: action for action in actions}
        ids = list(self.actions)
        self.requesters: dict[UUID, int | None] = dict(requesters or {})
        for action in self.actions.values():
            if Action.request.is_cached(action):
                self.requesters.setdefault(action.pk, action.request.user_id)
        unknown = {
            a.request_id for a in self.actions.values() if a.pk not in self.requesters
        }
        if unknown:
            by_request = dict(
                Request.objects.filter(pk__in=unknown).values_list("pk", "user_id")
            )
            for action in self.actions.values():
                self.requesters.setdefault(action.pk, by_request.get(action.request_id))
        self._members: dict[int, dict[int, Voter]] | None = None
        self._deciders: dict[int, Voter] = {}
        self.votes: dict[UUID, list[_Vote]] = {pk: [] for pk in ids}
        if not ids:
            return
        rows = (
            Vote.objects.filter(action_id__in=ids)
            .order_by("at", "pk")
            .values_list(
                "action_id",
                "user_id",
                "user__username",
                "user__is_active",
                "decision",
                "ballot",
                "at",
            )
        )
        for action_id, user_id, username, active, decision, ballot, at in rows:
            self.votes[action_id].append(
                _Vote(user_id, username, active, decision, ballot, at)
            )

    @property
    def members(self) -> dict[int, dict[int, Voter]]:
        """room id -> user id -> the member as a voter (their role)."""
        if self._members is None:
            self._read_voters()
        assert self._members is not None
        return self._members

    @property
    def deciders(self) -> dict[int, Voter]:
        """user id -> the active holders of chat.decide_action."""
        if self._members is None:
            self._read_voters()
        return self._deciders

    def _read_voters(self) -> None:
        self._members = {}
        rooms = {action.room_id for action in self.actions.values()}
        if not rooms:
            return
        for room_id, user_id, role, username, active in Membership.objects.filter(
            room_id__in=rooms
        ).values_list(
            "room_id", "user_id", "role", "user__username", "user__is_active"
        ):
            self._members.setdefault(room_id, {})[user_id] = Voter(
                user_id, username, active, role, False
            )
        # The permission as ModelBackend grants it: directly, through a group, or
        # to an active superuser (what `has_perm` answers for one user).
        for user_id, username in User.objects.with_perm(
            DECIDE_PERM, is_active=True
        ).values_list("pk", "username"):
            self._deciders[user_id] = Voter(user_id, username, True, None, True)

    def record(self, action: Action, vote: Vote) -> None:
        """Count a vote just cast (under the request's lock) without reading the
        votes again."""
        user = vote.user
        self.votes[action.pk].append(
            _Vote(
                user.pk,
                user.username,
                user.is_active,
                vote.decision,
                vote.ballot,
                vote.at,
            )
        )

    def voter(self, action: Action, user_id: int, username: str, active: bool) -> Voter:
        member = self.members.get(action.room_id, {}).get(user_id)
        return Voter(
            id=user_id,
            username=username,
            is_active=active,
            role=member.role if member else None,
            decider=user_id in self.deciders and active,
        )

    def refusal(self, action: Action, user: User) -> str | None:
        """Why `user` may not vote on `action` now, or None: `vote_refusal`, from
        what was read here."""
        voter = self.voter(action, user.pk, user.username, user.is_active)
        return refusal(action, self.requesters.get(action.pk), voter)

    def _candidates(self, action: Action) -> list[Voter]:
        people = {**self.members.get(action.room_id, {})}
        for user_id, decider in self.deciders.items():
            people.setdefault(user_id, decider)
        return [
            self.voter(action, p.id, p.username, p.is_active) for p in people.values()
        ]

    def allows(self, action: Action, voter: Voter) -> bool:
        return allows(action, self.requesters.get(action.pk), voter)

    def may_vote(self, action: Action, user: User) -> bool:
        return self.refusal(action, user) is None

    def voters(self, action: Action) -> list[Voter]:
        """Everyone who may vote on `action` now (voted or not)."""
        return [v for v in self._candidates(action) if self.allows(action, v)]

    def current_votes(self, action: Action) -> list[_Vote]:
        return [v for v in self.votes[action.pk] if v.ballot == action.ballot]

    def counts(self, action: Action, vote: _Vote) -> bool:
        """Whether a vote on the current ballot still counts: its voter may vote."""
        voter = self.voter(action, vote.user_id, vote.username, vote.is_active)
        return self.allows(action, voter)

    def stale_votes(self, action: Action) -> list[_Vote]:
        """Votes on the current ballot of a pending action that no longer count."""
        if action.status != Action.Status.PENDING:
            return []
        return [v for v in self.current_votes(action) if not self.counts(action, v)]

    def approvals(self, action: Action) -> list[dict[str, str]]:
        """`[{username, at}]` of the approvals for the current arguments; while the
        action is pending, only those that count (a decided action's are history)."""
        pending = action.status == Action.Status.PENDING
        return [
            {"username": v.username, "at": v.at.isoformat()}
            for v in self.current_votes(action)
            if v.decision == Vote.Decision.APPROVE
            and (not pending or self.counts(action, v))
        ]

    def eligible(self, action: Action) -> list[str]:
        """Who may act on it now: on a pending action, who may still vote (less
        those who voted on its current arguments); on an approval waiting out its
        delay, who may retract it; nobody otherwise."""
        if retractable(action):
            return sorted(v.username for v in self.voters(action))
        if action.status != Action.Status.PENDING:
            return []
        voted = {v.user_id for v in self.current_votes(action)}
        return sorted(v.username for v in self.voters(action) if v.id not in voted)
