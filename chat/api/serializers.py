"""How rooms, requests, messages and actions look over REST.

Every field is always answered, so each Meta marks its fields read-only: the schema
then lists them as `required`, and generated clients type them as present. Messages
and actions answer the domain's payloads (chat.payloads), the very dicts the room's
events carry; their fields here only describe them for the schema.
"""

from typing import Any

from django.db.models import Manager
from rest_framework import serializers

from chat.eligibility import Ballots
from chat.links import decide_url
from chat.models import Action, Membership, Message, PolicyRule, Request, Room
from chat.payloads import action_payload, message_payload, rule_payload


class MessageSerializer(serializers.ModelSerializer[Message]):
    id = serializers.CharField(read_only=True)
    request = serializers.CharField(
        source="request_id", read_only=True, allow_null=True
    )
    author = serializers.CharField(
        source="author.username", read_only=True, allow_null=True, default=None
    )
    action = serializers.CharField(
        source="action_id",
        read_only=True,
        allow_null=True,
        help_text="A tool message's action (the call it answers); null otherwise.",
    )

    class Meta:
        model = Message
        fields = ["id", "role", "content", "author", "request", "action", "created"]
        read_only_fields = fields

    def to_representation(self, instance: Message) -> dict[str, Any]:
        return dict(message_payload(instance))


class ActionListSerializer(serializers.ListSerializer[Action]):
    """Many actions: their votes and who may vote on them are read once for all
    (`Ballots`), so a list costs the same few queries for 1 action or 500."""

    ballots: Ballots | None = None

    def to_representation(self, data: Any) -> list[Any]:
        if isinstance(data, Manager):  # a nested list: request.actions
            data = data.all().select_related("room", "decided_by")
        actions = list(data)
        self.ballots = Ballots(actions)
        return super().to_representation(actions)


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
    escalate_to = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        allow_null=True,
        help_text="Who may also vote once it escalates (its rule's escalate_to).",
    )
    escalates_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="created + escalate_after, or null."
    )
    escalated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When it escalated; null until."
    )
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
            "escalate_to",
            "escalates_at",
            "escalated_at",
            "eligible",
            "rule",
            "retractions",
            "decide_url",
        ]
        read_only_fields = fields
        list_serializer_class = ActionListSerializer

    def _ballots(self, action: Action) -> Ballots:
        given = self.context.get("ballots")
        if isinstance(given, Ballots) and action.pk in given.actions:
            return given  # read by the caller, as in the deciding transaction
        parent = self.parent
        if isinstance(parent, ActionListSerializer) and parent.ballots is not None:
            if action.pk in parent.ballots.actions:
                return parent.ballots
        # One action: read its ballots once for both fields.
        cached: Ballots | None = getattr(self, "_single", None)
        if cached is None or cached.actions.get(action.pk) is not action:
            cached = self._single = Ballots([action])
        return cached

    def to_representation(self, instance: Action) -> dict[str, Any]:
        return dict(action_payload(instance, self._ballots(instance)))

    # The schema reads these methods' types and docstrings; the answer itself is
    # `action_payload`'s, which has the same values.
    def get_decide_url(self, action: Action) -> str:
        """The absolute link to the action's decision page (signed)."""
        return decide_url(action)

    def get_approvals(self, action: Action) -> list[dict[str, str]]:
        """The approvals that count, for the current arguments: `[{username, at}]`."""
        return self._ballots(action).approvals(action)

    def get_eligible(self, action: Action) -> list[str]:
        """Who may act on it now: on a pending action who may still vote, on an
        approval waiting out its delay who may retract it (the page's buttons)."""
        return self._ballots(action).eligible(action)


class RequestSerializer(serializers.ModelSerializer[Request]):
    id = serializers.CharField(read_only=True)
    room = serializers.CharField(source="room.slug", read_only=True)
    user = serializers.CharField(
        source="user.username", read_only=True, allow_null=True, default=None
    )
    usage = serializers.JSONField(read_only=True)
    trigger = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text='null for a person\'s request; {"kind": "webhook", "id", "source", '
        '"event", "delivery"} or {"kind": "schedule", "id", "slot"} for one a '
        "trigger or a schedule posted as the room's bot.",
    )

    class Meta:
        model = Request
        fields = [
            "id",
            "room",
            "user",
            "status",
            "error",
            "created",
            "usage",
            "trigger",
        ]
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


class PolicyRuleSerializer(serializers.ModelSerializer[PolicyRule]):
    """A rule as `rule_payload` builds it (the `policy` events carry the same)."""

    id = serializers.CharField(read_only=True)
    arguments = serializers.JSONField(read_only=True)
    approvers = serializers.ListField(child=serializers.CharField(), read_only=True)
    escalate_to = serializers.ListField(child=serializers.CharField(), read_only=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    expired = serializers.BooleanField(
        read_only=True, help_text="True from expires_at on: the rule matches nothing."
    )
    created_by = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Who made the rule (the voter, for a grant); null for older rules.",
    )
    source_action = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The action whose approval made this rule (a grant), else null.",
    )

    class Meta:
        model = PolicyRule
        fields = [
            "id",
            *PolicyRule.FIELDS,
            "expired",
            "created_by",
            "created",
            "source_action",
        ]
        read_only_fields = fields

    def to_representation(self, instance: PolicyRule) -> dict[str, Any]:
        return dict(rule_payload(instance))
