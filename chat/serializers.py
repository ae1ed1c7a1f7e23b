"""How rooms, requests, messages and actions look on the wire (REST and WebSocket).

Every field is always answered, so each Meta marks its fields read-only: the schema
then lists them as `required`, and generated clients type them as present.
"""

from typing import Any

from rest_framework import serializers

from .eligibility import eligible_voters
from .links import decide_url
from .models import Action, Membership, Message, PolicyRule, Request, Room, Vote


class MessageSerializer(serializers.ModelSerializer[Message]):
    id = serializers.CharField(read_only=True)
    request = serializers.CharField(
        source="request_id", read_only=True, allow_null=True
    )
    author = serializers.CharField(
        source="author.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Message
        fields = ["id", "role", "content", "author", "request", "created"]
        read_only_fields = fields


class ActionSerializer(serializers.ModelSerializer[Action]):
    id = serializers.CharField(read_only=True)
    request = serializers.CharField(source="request_id", read_only=True)
    room = serializers.CharField(source="room.slug", read_only=True)
    decided_by = serializers.CharField(
        source="decided_by.username", read_only=True, allow_null=True, default=None
    )
    arguments = serializers.JSONField(read_only=True)
    proposed_arguments = serializers.JSONField(read_only=True, allow_null=True)
    preview = serializers.JSONField(read_only=True, allow_null=True)
    result = serializers.JSONField(read_only=True, allow_null=True)
    approvers = serializers.ListField(
        child=serializers.CharField(), read_only=True, allow_null=True
    )
    approvals = serializers.SerializerMethodField()
    eligible = serializers.SerializerMethodField()
    rule = serializers.JSONField(read_only=True, allow_null=True)
    retractions = serializers.JSONField(read_only=True)
    # "" until decided: read-only fields lose the model's blank choice in the schema.
    decided_via = serializers.ChoiceField(
        choices=Action.Via.choices, allow_blank=True, read_only=True
    )
    decide_url = serializers.SerializerMethodField()

    class Meta:
        model = Action
        fields = [
            "id",
            "request",
            "room",
            "tool",
            "pack",
            "arguments",
            "proposed_arguments",
            "requires_approval",
            "preview",
            "status",
            "decided_by",
            "decided_at",
            "decided_via",
            "reason",
            "result",
            "error",
            "created",
            "approvals_required",
            "approvals",
            "approvers",
            "requester_may_approve",
            "expires_at",
            "runs_at",
            "eligible",
            "rule",
            "retractions",
            "decide_url",
        ]
        read_only_fields = fields

    def get_decide_url(self, action: Action) -> str:
        """The absolute link to the action's decision page (signed)."""
        return decide_url(action)

    def get_approvals(self, action: Action) -> list[dict[str, str]]:
        """The approvals for the current arguments: `[{username, at}]`."""
        votes = Vote.objects.filter(
            action=action, ballot=action.ballot, decision=Vote.Decision.APPROVE
        ).values_list("user__username", "at")
        return [{"username": name, "at": at.isoformat()} for name, at in votes]

    def get_eligible(self, action: Action) -> list[str]:
        """Who may still vote on it (pending only): the names a card shows."""
        requester = (
            Request.objects.filter(pk=action.request_id)
            .values_list("user_id", flat=True)
            .first()
        )
        return eligible_voters(action, requester)


class RequestSerializer(serializers.ModelSerializer[Request]):
    id = serializers.CharField(read_only=True)
    room = serializers.CharField(source="room.slug", read_only=True)
    user = serializers.CharField(
        source="user.username", read_only=True, allow_null=True, default=None
    )
    usage = serializers.JSONField(read_only=True)

    class Meta:
        model = Request
        fields = ["id", "room", "user", "status", "error", "created", "usage"]
        read_only_fields = fields


class RequestDetailSerializer(RequestSerializer):
    messages = MessageSerializer(many=True, read_only=True)
    actions = ActionSerializer(many=True, read_only=True)

    class Meta(RequestSerializer.Meta):
        fields = [*RequestSerializer.Meta.fields, "messages", "actions"]


class MemberSerializer(serializers.ModelSerializer[Membership]):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role"]
        read_only_fields = fields


class RoomSerializer(serializers.ModelSerializer[Room]):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Room
        fields = ["slug", "name", "role"]
        read_only_fields = fields

    def get_role(self, room: Room) -> str | None:
        # Views annotate the caller's role; fall back to a lookup for single rooms.
        role = getattr(room, "user_role", None)
        if role is None and (user := self.context.get("user")) is not None:
            role = (
                room.memberships.filter(user=user)
                .values_list("role", flat=True)
                .first()
            )
        return role


class RoomDetailSerializer(RoomSerializer):
    members = MemberSerializer(source="memberships", many=True, read_only=True)
    packs = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="The tool packs the room's agent may use; empty: every pack.",
    )

    class Meta(RoomSerializer.Meta):
        fields = [*RoomSerializer.Meta.fields, "members", "linear_teams", "packs"]


def request_event(request: Request) -> dict[str, Any]:
    """The small form of a request that `request` events carry."""
    return {"id": str(request.id), "status": request.status, "error": request.error}


class PolicyRuleSerializer(serializers.ModelSerializer[PolicyRule]):
    id = serializers.CharField(read_only=True)
    arguments = serializers.JSONField(read_only=True)
    approvers = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = PolicyRule
        fields = ["id", *PolicyRule.FIELDS, "created"]
        read_only_fields = fields
