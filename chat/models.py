"""Rooms, the people in them, the agent's requests and everything a room has seen."""

import secrets
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from chat.webhooks import new_secret


class IllegalTransition(Exception):
    """A status change the lifecycle does not allow: a bug, never a user's error."""


def _check_transition(
    row: models.Model, table: Mapping[Any, Collection[str]], status: str
) -> None:
    current = row.status  # type: ignore[attr-defined]
    if status != current and status not in table.get(current, ()):
        raise IllegalTransition(f"{type(row).__name__} {row.pk}: {current} -> {status}")


class User(AbstractUser):
    """A person (`AUTH_USER_MODEL`): Django's user as it is, ours to extend without
    swapping the model under a deployment that has data.

    Or a room's bot (`bot_room` set): the author of what the room's triggers and
    schedules post (`chat.services.bots`). A bot has no usable password, no token and
    no membership, so it cannot log in, is listed nowhere and never votes.
    """

    bot_room = models.OneToOneField(
        "chat.Room",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="bot",
        editable=False,
    )

    @property
    def is_bot(self) -> bool:
        return self.bot_room_id is not None


class Room(models.Model):
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    # The seq of the room's newest durable event; bumped under the row lock so that
    # seqs are gap-free and strictly increasing (see chat/realtime.py).
    last_seq = models.PositiveBigIntegerField(default=0)
    # The seq of the room's newest audit record, bumped under the same row lock:
    # records commit in seq order, so paging by seq never skips one.
    audit_seq = models.PositiveBigIntegerField(default=0)
    # Linear team keys the room's agent may read and write; empty: every team the
    # API key sees. Checked when a call is previewed and again when it runs.
    linear_teams = models.JSONField(
        default=list,
        blank=True,
        help_text='Linear team keys (e.g. ["ENG"]) this room\'s agent may touch; '
        "empty allows every team the API key sees.",
    )
    # The tool packs the room's agent may use ("linear", "github", "mcp:<server>");
    # empty: every pack configured. Held when tools are offered, rules written and
    # calls run.
    packs = models.JSONField(
        default=list,
        blank=True,
        help_text='Tool packs this room\'s agent may use (e.g. ["linear", '
        '"mcp:notes"]); empty allows every pack configured.',
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member"
        APPROVER = "approver"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "user"], name="one_membership_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"


class Leased(models.Model):
    """Work a worker holds while it runs: a model step, a tool call, a delivery.

    The rules (claim, renew, release, give up, the token check) are in
    `chat/services/leases.py`; the sweep requeues work whose lease ran out.
    """

    # A fresh token per claim: a stale holder's writes name an old one.
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True


class Request(Leased):
    """One chat turn: a member's message and all the agent does for it.

    The worker running a model call holds the request's lease and renews it; the
    sweep requeues a step whose lease ran out (its worker died).
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        AWAITING_APPROVAL = "awaiting_approval"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ENDED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
    # Every status change a request may make; `move_to` checks it.
    TRANSITIONS = {
        Status.QUEUED: {Status.RUNNING, Status.FAILED, Status.CANCELLED},
        Status.RUNNING: {
            Status.AWAITING_APPROVAL,
            Status.COMPLETED,
            Status.FAILED,
            Status.CANCELLED,
        },
        Status.AWAITING_APPROVAL: {Status.RUNNING, Status.FAILED, Status.CANCELLED},
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="requests")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    error = models.TextField(blank=True)
    usage = models.JSONField(default=dict, blank=True)
    # The model that answered, and how long its first call took to its first chunk
    # (what the person waited before text appeared): for the Operations page.
    model = models.CharField(max_length=100, blank=True)
    first_token_seconds = models.FloatField(null=True, blank=True)
    # Model calls finished so far; a step task names the step it runs, so a
    # redelivered task for a finished step finds nothing to do.
    step = models.PositiveIntegerField(default=0)
    # The W3C trace context (`traceparent`, `tracestate`) of the span that created
    # it: every task of its turn runs in that trace (agentsite.telemetry); {} when
    # tracing was off.
    trace_context = models.JSONField(default=dict, blank=True)
    # What posted it when no person did (contract: "Who posts them"): null, or
    # {"kind": "webhook", "id", "source", "event", "delivery"} or
    # {"kind": "schedule", "id", "slot"}. The worker tells the model such a
    # message came from an outside event.
    trigger = models.JSONField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["status", "lease_until"]),
            # The per-user limit counts a user's active requests on every post.
            models.Index(fields=["user", "status"]),
        ]

    def __str__(self) -> str:
        return f"Request {self.id} ({self.status})"

    @property
    def ended(self) -> bool:
        return self.status in self.ENDED

    def move_to(self, status: str) -> None:
        """Set the status, refusing a change the lifecycle does not allow."""
        _check_transition(self, self.TRANSITIONS, status)
        self.status = status

    @property
    def draft_message_id(self) -> uuid.UUID:
        """The id the assistant message of the running step will have once finished.

        Derived, so a retried model call streams under the same id and watchers
        replace its text instead of seeing it twice.
        """
        return uuid.uuid5(self.id, f"step-{self.step}")


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    request = models.ForeignKey(
        Request,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="messages",
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # For the model's context: the calls an assistant message made, and for a tool
    # message the call it answers.
    tool_calls = models.JSONField(default=list, blank=True)
    tool_call_id = models.CharField(max_length=100, blank=True)
    # A tool message's action (the call it answers); null for other messages and for
    # an invalid call of the model, which never became an action.
    action = models.ForeignKey(
        "Action", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["room", "created"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class Action(Leased):
    """A tool call the agent proposed, and what people and the tool made of it.

    A running tool call is held with a lease; see chat/services/execution.py.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        EXECUTING = "executing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DENIED = "denied"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    class Via(models.TextChoices):
        ROOM = "room"
        API = "api"
        ADMIN = "admin"
        LINK = "link"
        POLICY = "policy"
        SYSTEM = "system"

    # Not settled yet: the turn waits for these before the next model call.
    ACTIVE = (Status.PENDING, Status.APPROVED, Status.EXECUTING)
    TERMINAL = (
        Status.SUCCEEDED,
        Status.FAILED,
        Status.DENIED,
        Status.EXPIRED,
        Status.CANCELLED,
    )
    # Every status change an action may make; `move_to` checks it. An action is
    # created `pending` (it asks) or `executing` (it runs at once).
    TRANSITIONS = {
        Status.PENDING: {
            Status.APPROVED,
            Status.DENIED,
            Status.EXPIRED,
            Status.CANCELLED,
        },
        # Back to pending: a retract during the approval's delay.
        Status.APPROVED: {
            Status.EXECUTING,
            Status.PENDING,
            Status.FAILED,
            Status.CANCELLED,
        },
        Status.EXECUTING: {Status.SUCCEEDED, Status.FAILED},
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    request = models.ForeignKey(
        Request, on_delete=models.CASCADE, related_name="actions"
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="actions")
    step = models.PositiveIntegerField()
    # As offered to the model: OpenAI allows 64 characters (`<server>__<tool>`).
    tool = models.CharField(max_length=64)
    # The pack the tool came from (`linear`, `github`, `mcp`), as it was then.
    pack = models.CharField(max_length=20, default="linear")
    tool_call_id = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict)
    # What the model asked for, kept when an approver edits the arguments.
    proposed_arguments = models.JSONField(null=True, blank=True)
    requires_approval = models.BooleanField()
    preview = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_via = models.CharField(max_length=10, choices=Via.choices, blank=True)
    reason = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    # The approval rule, resolved from the room's policy when the action was created
    # and copied here: a later change of the policy does not change it.
    rule = models.JSONField(null=True, blank=True)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    # Usernames who may vote; null: the room's approvers (and chat.decide_action).
    approvers = models.JSONField(null=True, blank=True)
    requester_may_approve = models.BooleanField(default=True)
    delay = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Escalation, copied from the rule: who may also vote once `escalates_at` passes
    # with the action still pending (`escalated_at` says it did; chat.eligibility).
    escalate_to = models.JSONField(null=True, blank=True)
    escalates_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    # When an approved action with a delay starts; until then it may be retracted.
    runs_at = models.DateTimeField(null=True, blank=True)
    # Votes count for one ballot: an edit of the arguments or a retract opens the next.
    ballot = models.PositiveIntegerField(default=0)
    # When the current ballot opened: an edit or a retract; null: at `created`.
    ballot_started = models.DateTimeField(null=True, blank=True)
    # [{username, at, reason}] of every retraction, for the model and the audit.
    retractions = models.JSONField(default=list, blank=True)
    # When the voters who had not voted were reminded (at half the timeout).
    reminded_at = models.DateTimeField(null=True, blank=True)
    # When an attempt last sent a write that carries no idempotency key (a GitHub
    # create, any update): until that write can no longer land, a retry neither
    # reads back nor sends (`tasks.steps`). Null: nothing was sent yet.
    sent_at = models.DateTimeField(null=True, blank=True)
    # The trace context of the model step that proposed it, then of its approval
    # span once decided: the tool call is sent under it (agentsite.telemetry).
    trace_context = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created"]
        permissions = [("decide_action", "Can approve or deny actions in every room")]
        indexes = [
            models.Index(fields=["status", "created"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["status", "escalates_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "tool_call_id"], name="one_action_per_tool_call"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool} ({self.status})"

    def move_to(self, status: str) -> None:
        """Set the status, refusing a change the lifecycle does not allow."""
        _check_transition(self, self.TRANSITIONS, status)
        self.status = status

    @property
    def edited(self) -> bool:
        return self.proposed_arguments is not None


class Vote(models.Model):
    """One person's approve or deny of an action, for one ballot of its arguments."""

    class Decision(models.TextChoices):
        APPROVE = "approve"
        DENY = "deny"

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    ballot = models.PositiveIntegerField()
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reason = models.TextField(blank=True)
    via = models.CharField(max_length=10, choices=Action.Via.choices)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at"]
        constraints = [
            models.UniqueConstraint(
                fields=["action", "user", "ballot"], name="one_vote_per_ballot"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.decision}s {self.action_id} (ballot {self.ballot})"


class PolicyRule(models.Model):
    """One rule of a room's approval policy (PROTOCOL.md, "Approval policies")."""

    class Mode(models.TextChoices):
        ASK = "ask"
        AUTO = "auto"
        NEVER = "never"

    # What a client sets on a rule, in the order the API and the admin show it.
    FIELDS = (
        "tool",
        "arguments",
        "mode",
        "approvals_required",
        "approvers",
        "requester_may_approve",
        "timeout",
        "delay",
        "escalate_after",
        "escalate_to",
        "expires_at",
    )
    # What the API shows of a rule but no client sets (sending one: 400).
    READ_ONLY = ("id", "expired", "created_by", "created", "source_action")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    room = models.ForeignKey(
        Room, on_delete=models.CASCADE, related_name="policy_rules"
    )
    # A tool name as offered to the model, or "*".
    tool = models.CharField(max_length=120)
    # The rule applies when each key matches the call's argument (trimmed, strings
    # caseless, a target by any of its names); `auto` also needs no other argument
    # but the target (`chat.services.policies._matches`).
    arguments = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=5, choices=Mode.choices, default=Mode.ASK)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    approvers = models.JSONField(default=list, blank=True)
    requester_may_approve = models.BooleanField(default=True)
    # Seconds; null: AGENT_APPROVAL_TIMEOUT.
    timeout = models.PositiveIntegerField(null=True, blank=True)
    delay = models.PositiveIntegerField(default=0)
    # Seconds an action under this rule may stay pending before `escalate_to`
    # (usernames) may vote on it too; both or neither, `ask` rules only.
    escalate_after = models.PositiveIntegerField(null=True, blank=True)
    escalate_to = models.JSONField(default=list, blank=True)
    # From this time on the rule matches no call (a grant's end); null: never.
    expires_at = models.DateTimeField(null=True, blank=True)
    # When the sweep reported the expiry (the `policy` event "expired"), once.
    expiry_reported_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    # The action whose approval made this rule (a grant).
    source_action = models.ForeignKey(
        Action,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["expiry_reported_at", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.tool}: {self.mode}"

    def expired_at(self, now: datetime) -> bool:
        """True from `expires_at` on: the rule then matches nothing."""
        return self.expires_at is not None and self.expires_at <= now


class AguiRun(models.Model):
    """A run of the AG-UI endpoint: its client-chosen `runId`, which a caller may use
    once per room (contract: "AG-UI endpoint"), and the request it followed."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    run_id = models.CharField(max_length=200)
    request = models.ForeignKey(
        Request, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "AG-UI run"
        constraints = [
            models.UniqueConstraint(
                fields=["room", "user", "run_id"], name="one_agui_run_id_per_caller"
            )
        ]

    def __str__(self) -> str:
        return f"AG-UI run {self.run_id}"


class RoomEvent(models.Model):
    """A durable event of a room, in the order every watcher sees it."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=20)
    payload = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="one_event_per_seq")
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} {self.type}"


class AuditRecord(models.Model):
    """One governance change of a room (a vote, a decision, a policy or membership
    change), append-only, written in the transaction of the change it reports
    (`chat.services.audit.audit_write`; PROTOCOL.md, "Audit export")."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()
    at = models.DateTimeField()
    kind = models.CharField(max_length=20)
    # A username, "policy" or "system": kept as text, so a record outlives renames
    # and deleted accounts and says what it said.
    actor = models.CharField(max_length=150)
    via = models.CharField(max_length=10, choices=Action.Via.choices)
    request_ref = models.UUIDField(null=True, blank=True)
    # The action as it was at that moment (its row changes later).
    action_ref = models.UUIDField(null=True, blank=True)
    tool = models.CharField(max_length=64, blank=True)
    arguments = models.JSONField(null=True, blank=True)
    preview = models.JSONField(null=True, blank=True)
    decision = models.CharField(max_length=10, blank=True)
    reason = models.TextField(blank=True)
    rule = models.JSONField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # A vote's: when the ballot it was cast in opened (the action's creation, an
    # edit or a retract), for the stats' time to vote. Not exported.
    ballot_start = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["room", "seq"]
        verbose_name = "audit record"
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="one_audit_per_seq")
        ]
        indexes = [models.Index(fields=["room", "kind", "at"])]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} {self.kind} by {self.actor}"

    @property
    def public_id(self) -> str:
        """The record's `id`: opaque to clients, the paging cursor."""
        return f"{self.room_id}-{self.seq}"


def _webhook_secret() -> str:
    return new_secret()


def _all_events() -> list[str]:
    return list(Webhook.EVENTS)


class Webhook(models.Model):
    """A URL of a room's that hears of its actions and requests (signed POSTs)."""

    EVENTS = (
        "action.pending",
        "action.decided",
        "request.ended",
        "action.escalated",
        "policy.changed",
    )

    class Format(models.TextChoices):
        JSON = "json"
        SLACK = "slack"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=200, default=_webhook_secret)
    # While a secret rotates, the one it replaced signs alongside it until then.
    previous_secret = models.CharField(max_length=200, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    events = models.JSONField(default=_all_events)
    format = models.CharField(
        max_length=10, choices=Format.choices, default=Format.JSON
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return f"{self.url} ({self.format})"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the
        previous one while its rotation window lasts."""
        until = self.previous_secret_until
        if self.previous_secret and until is not None and until > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


class Delivery(Leased):
    """One message to send outside the app (a webhook POST or an email): the outbox.

    Written in the transaction of the change it reports, sent by a task after the
    commit; `key` makes a change reported twice one row. A sender holds it with a
    lease while it tries, so that a task run twice sends once.
    """

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    event = models.CharField(max_length=30)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    webhook = models.ForeignKey(
        Webhook, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # An email's recipient, and its subject; a webhook's body is `body` as sent.
    to = models.CharField(max_length=254, blank=True)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    last_error = models.TextField(blank=True)
    # When the next attempt is due; the sweep sends one again whose task was lost.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} via {self.channel} ({self.status})"


class ApiToken(models.Model):
    """A key for `Authorization: Token <key>`, stored only as its SHA-256 digest.

    A leaked database dump holds no usable key; each expires, and deleting the row
    (DELETE /api/auth/token, the admin) revokes it at once.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The key's first characters, to tell a user's tokens apart; not enough to use.
    prefix = models.CharField(max_length=8, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.user}"


class McpListing(models.Model):
    """The tools an MCP server listed, as a worker last read them.

    Workers list each server of `AGENT_MCP_SERVERS` when they start and again when
    the server says its tools changed; web processes read the listing from here to
    check rules, edits and `GET /api/tools` against the same catalogue.
    """

    server = models.CharField(max_length=31, unique=True)
    # [{name, description, inputSchema, annotations}] as the server sent them.
    tools = models.JSONField(default=list)
    listed_at = models.DateTimeField()

    class Meta:
        ordering = ["server"]
        verbose_name = "MCP listing"

    def __str__(self) -> str:
        return f"{self.server}: {len(self.tools)} tools"


class McpPin(models.Model):
    """One MCP tool's listing as first seen (or last accepted), and as listed now.

    A server can change what a tool says it does after people set rules for it; a
    tool whose listing no longer matches its pin asks for approval whatever rules
    and annotations say, until a holder of `chat.decide_action` accepts the new
    listing (`mcp_pin_accept`).
    """

    server = models.CharField(max_length=31)
    tool = models.CharField(max_length=128)
    # {description, inputSchema, annotations} and the SHA-256 of their canonical JSON.
    pinned = models.JSONField()
    pinned_digest = models.CharField(max_length=64)
    listed = models.JSONField()
    listed_digest = models.CharField(max_length=64)
    first_listed = models.DateTimeField()
    changed_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["server", "tool"]
        verbose_name = "MCP tool pin"
        constraints = [
            models.UniqueConstraint(fields=["server", "tool"], name="mcp_pin_unique")
        ]

    def __str__(self) -> str:
        return f"{self.server}__{self.tool}"

    @property
    def changed(self) -> bool:
        return self.pinned_digest != self.listed_digest


def _trigger_id() -> str:
    # 192 random bits, URL-safe: the id is the hook's address, public by nature.
    return secrets.token_urlsafe(24)


class Trigger(models.Model):
    """A signed webhook from Linear, GitHub or a Standard Webhooks sender that
    posts a request in the room (contract: "Triggers"). Rules in
    `chat/services/triggers.py`."""

    class Source(models.TextChoices):
        LINEAR = "linear"
        GITHUB = "github"
        GENERIC = "generic"

    id = models.CharField(
        primary_key=True, max_length=64, default=_trigger_id, editable=False
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="triggers")
    source = models.CharField(max_length=10, choices=Source.choices)
    name = models.CharField(max_length=100, blank=True)
    events = models.JSONField(default=list, blank=True)
    filter = models.JSONField(default=dict, blank=True)
    prompt = models.TextField()
    enabled = models.BooleanField(default=True)
    # Shown once (the answer that sets it); never in the admin or a list.
    secret = models.CharField(max_length=200, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    last_delivery = models.DateTimeField(null=True, blank=True, editable=False)
    last_fired = models.DateTimeField(null=True, blank=True, editable=False)
    fired = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return f"{self.get_source_display()} trigger {self.name or self.id}"


class TriggerDelivery(models.Model):
    """A delivery id a trigger has seen, kept TRIGGER_DELIVERY_DAYS: the same id
    twice, even at once, posts one request (the unique constraint decides)."""

    trigger = models.ForeignKey(
        Trigger, on_delete=models.CASCADE, related_name="deliveries"
    )
    delivery = models.CharField(max_length=200)
    request = models.ForeignKey(
        Request, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "delivery"], name="one_delivery_per_trigger"
            )
        ]
        # The rate limit counts a trigger's recent posts.
        indexes = [models.Index(fields=["trigger", "created"])]

    def __str__(self) -> str:
        return f"{self.delivery} for {self.trigger_id}"


def _schedule_id() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits, as a trigger's


class Schedule(models.Model):
    """A room's cron: a request posted by the room's bot at every slot (contract:
    "Schedules"). `next_run` is the claim: the sweep moves it forward with a
    conditional UPDATE in the transaction that posts the slot's request."""

    id = models.CharField(
        primary_key=True, max_length=64, default=_schedule_id, editable=False
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=100, blank=True)
    cron = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    prompt = models.TextField()
    enabled = models.BooleanField(default=True)
    # The room's bot, who posts its requests.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)
    # The next slot (UTC); null while disabled.
    next_run = models.DateTimeField(null=True, blank=True)
    last_run = models.DateTimeField(null=True, blank=True)
    last_request = models.ForeignKey(
        Request, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    skipped = models.PositiveIntegerField(default=0)
    last_skipped = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["next_run"])]

    def __str__(self) -> str:
        return f"{self.name or self.cron} ({self.timezone})"
