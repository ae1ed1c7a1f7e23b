"""What the agent left: requests, messages, events; rooms and their members."""

import json
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from chat import services
from chat.errors import Conflict, Invalid
from chat.models import (
    Action,
    ApiToken,
    Membership,
    Message,
    PolicyRule,
    Request,
    Room,
    RoomEvent,
    User,
)
from chat.services.policies import FIELDS as RULE_FIELDS
from chat.services.policies import (
    policy_changed,
    policy_deleted,
    rule_check_consistent,
    rule_check_scope,
    rule_clean,
    rule_saved,
)
from chat.services.rooms import member_audit, room_name_clean

from .common import (
    SUMMARY_CHARS,
    AgentRecordMixin,
    DeciderMayViewMixin,
    action_summary,
    admin_user,
    pretty,
)


class ReadOnlyInline(AgentRecordMixin):
    extra = 0
    can_delete = False
    show_change_link = True


class MessageInline(ReadOnlyInline, admin.TabularInline[Message, Request]):
    model = Message
    fields = ("created", "role", "author", "content")
    readonly_fields = fields


class ActionInline(ReadOnlyInline, admin.TabularInline[Action, Request]):
    model = Action
    fields = ("created", "tool", "summary", "status", "decided_by", "decided_via")
    readonly_fields = fields

    @admin.display(description="summary")
    def summary(self, action: Action) -> str:
        return action_summary(action)


def _events_table(events: Iterable[RoomEvent]) -> SafeString | str:
    rows = [
        (
            event.seq,
            event.type,
            event.created.isoformat(timespec="seconds"),
            json.dumps(event.payload, ensure_ascii=False, sort_keys=True),
        )
        for event in events
    ]
    if not rows:
        return "-"
    body = format_html_join(
        "", "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", rows
    )
    return format_html(
        '<table class="chat-events"><tr><th>seq</th><th>type</th><th>created</th>'
        "<th>payload</th></tr>{}</table>",
        body,
    )


@admin.register(Request)
class RequestAdmin(AgentRecordMixin, admin.ModelAdmin[Request]):
    list_display = ("id", "room", "user", "status", "step", "created")
    list_filter = ("status", "room")
    list_select_related = ("room", "user")
    search_fields = ("id", "room__slug", "user__username", "error")
    fields = (
        "id",
        "room",
        "user",
        "status",
        "error",
        "step",
        "usage_pretty",
        "attempts",
        "lease_until",
        "created",
        "updated",
        "events",
    )
    readonly_fields = fields
    inlines = (MessageInline, ActionInline)

    @admin.display(description="usage")
    def usage_pretty(self, request: Request) -> SafeString | str:
        return pretty(request.usage)

    @admin.display(description="events")
    def events(self, request: Request) -> SafeString | str:
        pk = str(request.pk)
        mine = Q(payload__request=pk) | Q(type="request", payload__id=pk)
        return _events_table(RoomEvent.objects.filter(mine, room_id=request.room_id))


@admin.register(Message)
class MessageAdmin(AgentRecordMixin, admin.ModelAdmin[Message]):
    list_display = ("created", "room", "role", "author", "short_content")
    list_filter = ("role", "room")
    list_select_related = ("room", "author")
    search_fields = ("content", "room__slug", "author__username")
    fields = (
        "id",
        "room",
        "request",
        "role",
        "author",
        "content",
        "tool_calls_pretty",
        "tool_call_id",
        "created",
    )
    readonly_fields = fields

    @admin.display(description="content")
    def short_content(self, message: Message) -> str:
        return Truncator(" ".join(message.content.split())).chars(SUMMARY_CHARS)

    @admin.display(description="tool calls")
    def tool_calls_pretty(self, message: Message) -> SafeString | str:
        return pretty(message.tool_calls or None)


@admin.register(RoomEvent)
class RoomEventAdmin(AgentRecordMixin, admin.ModelAdmin[RoomEvent]):
    list_display = ("room", "seq", "type", "created")
    list_filter = ("type", "room")
    list_select_related = ("room",)
    fields = ("room", "seq", "type", "payload_pretty", "created")
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, event: RoomEvent) -> SafeString | str:
        return pretty(event.payload)


# Rooms -------------------------------------------------------------------------------


APPROVER = Membership.Role.APPROVER
ADMIN = Action.Via.ADMIN


class MembershipFormSet(forms.BaseInlineFormSet):  # type: ignore[type-arg]
    """A room's members as the admin edits them: the room keeps an approver."""

    def clean(self) -> None:
        super().clean()
        if self.instance.pk is None:
            return  # a new room: its members are all in the forms
        leaving, joining = set(), set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data:
                continue
            before, user = form.initial.get("role"), data.get("user")
            after = None if data.get("DELETE") else data.get("role")
            if before == APPROVER and after != APPROVER and form.instance.pk:
                leaving.add(form.instance.user_id)
            elif after == APPROVER and before != APPROVER and user is not None:
                joining.add(user.pk)
        _keep_an_approver(self.instance, leaving, joining)


class MembershipForm(forms.ModelForm):  # type: ignore[type-arg]
    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        membership = self.instance
        demoted = data.get("role") != APPROVER or data.get("room") != membership.room
        if membership.pk and membership.role == APPROVER and demoted:
            _keep_an_approver(membership.room, {membership.user_id}, set())
        return data


def _keep_an_approver(room: Room, leaving: set[int], joining: set[int]) -> None:
    """The service's rule, as a form error."""
    try:
        services.room_keeps_an_approver(room=room, leaving=leaving, joining=joining)
    except Conflict as exc:
        raise forms.ValidationError(exc.detail) from None


class MembershipInline(DeciderMayViewMixin, admin.TabularInline[Membership, Room]):
    model = Membership
    formset = MembershipFormSet
    extra = 0
    fields = ("user", "role", "created")
    readonly_fields = ("created",)
    raw_id_fields = ("user",)


class PolicyRuleForm(forms.ModelForm[PolicyRule]):
    """The rule validated as the API validates it (`rule_clean`), field by field."""

    class Meta:
        model = PolicyRule
        fields = list(PolicyRule.FIELDS)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        fields = {k: v for k, v in data.items() if k in RULE_FIELDS}
        if "expires_at" not in self.changed_data:
            # Must be in the future only when set: a rule that expired since
            # stays as it is when the room is saved.
            fields.pop("expires_at", None)
        try:
            clean = rule_clean(fields)
            rule_check_consistent(PolicyRule(**clean))
        except Invalid as exc:
            raise forms.ValidationError(exc.detail) from None
        data.update(clean)
        return data


class PolicyRuleFormSet(forms.BaseInlineFormSet):  # type: ignore[type-arg]
    """The room's rules: each names a tool of the room's packs, as the room is
    being saved (its packs may change in the same form)."""

    def clean(self) -> None:
        super().clean()
        for form in self.forms:
            tool = getattr(form, "cleaned_data", {}).get("tool")
            if not tool or form.cleaned_data.get("DELETE"):
                continue
            try:
                rule_check_scope(room=self.instance, tool=tool)
            except Invalid as exc:
                form.add_error("tool", exc.detail)


class PolicyRuleInline(admin.TabularInline[PolicyRule, Room]):
    """The room's approval policy, edited beside its members."""

    model = PolicyRule
    form = PolicyRuleForm
    formset = PolicyRuleFormSet
    extra = 0
    verbose_name = "approval rule"
    verbose_name_plural = "approval policy (rules; PROTOCOL.md, Approval policies)"


class RoomForm(forms.ModelForm[Room]):
    """The room's name and packs checked as the API checks them."""

    class Meta:
        model = Room
        fields = ["name", "slug", "linear_teams", "packs"]

    def clean_name(self) -> str:
        try:
            return room_name_clean(self.cleaned_data.get("name") or "")
        except Invalid as exc:
            raise forms.ValidationError(exc.detail) from None

    def clean_packs(self) -> list[str]:
        try:
            return services.packs_clean(self.cleaned_data.get("packs") or [])
        except Invalid as exc:
            raise forms.ValidationError(exc.detail) from None


@admin.register(Room)
class RoomAdmin(DeciderMayViewMixin, admin.ModelAdmin[Room]):
    form = RoomForm
    list_display = (
        "name",
        "slug",
        "linear_teams",
        "packs",
        "created_by",
        "created",
        "last_seq",
    )
    search_fields = ("name", "slug")
    readonly_fields = ("created_by", "created", "last_seq")
    inlines = (MembershipInline, PolicyRuleInline)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a room deletes its whole history.
        return request.user.is_superuser

    def save_formset(
        self, request: HttpRequest, form: Any, formset: Any, change: bool
    ) -> None:
        if formset.model is PolicyRule:
            self._save_rules(request, formset)
            return
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        changed = [
            f.instance
            for f in formset.initial_forms
            if f.instance.pk and ("role" in f.changed_data or "user" in f.changed_data)
        ]
        # As stored: a form's instance already carries the new user.
        before = {
            old.pk: old
            for old in Membership.objects.filter(
                pk__in=[m.pk for m in changed]
            ).select_related("user")
        }
        super().save_formset(request, form, formset, change)
        # Removed or changed members lose their open sockets and their stale votes,
        # as through the API; each change is audited in the admin's transaction.
        actor = admin_user(request)
        for membership in formset.new_objects:
            member_audit(membership, kind="member.added", actor=actor, via=ADMIN)
        for membership in formset.deleted_objects:
            member_audit(membership, kind="member.removed", actor=actor, via=ADMIN)
        for membership in changed:
            _audit_member_change(before[membership.pk], membership, actor)
        for membership in [*formset.deleted_objects, *changed]:
            old = before.get(membership.pk, membership)
            services.member_left(room_id=old.room_id, user_id=old.user_id)

    def _save_rules(self, request: HttpRequest, formset: Any) -> None:
        """The policy inline saved as the API saves rules: each change is a `policy`
        event and a `policy.changed` webhook (chat.services.policies)."""
        actor = request.user
        assert isinstance(actor, User)
        with transaction.atomic():
            formset.save(commit=False)
            for rule in formset.deleted_objects:
                policy_deleted(rule=rule, actor=actor, via=ADMIN)
            room = formset.instance
            for rule in formset.new_objects:
                rule.created_by = actor
                rule.save()
                policy_changed(
                    room=room, change="created", rule=rule, actor=actor, via=ADMIN
                )
            for rule, _ in formset.changed_objects:
                rule_saved(rule)
                policy_changed(
                    room=room, change="updated", rule=rule, actor=actor, via=ADMIN
                )
            formset.save_m2m()


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    form = MembershipForm
    list_display = ("room", "user", "role", "created")
    list_filter = ("role", "room")
    list_select_related = ("room", "user")
    search_fields = ("room__slug", "user__username")
    raw_id_fields = ("user",)

    def delete_view(
        self,
        request: HttpRequest,
        object_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        membership = self.get_object(request, object_id)
        if membership is not None and _is_last_approver(membership):
            self.message_user(request, services.LAST_APPROVER, messages.ERROR)
            return redirect("admin:chat_membership_change", membership.pk)
        return super().delete_view(request, object_id, extra_context)

    def save_model(
        self, request: HttpRequest, obj: Membership, form: Any, change: bool
    ) -> None:
        actor = admin_user(request)
        if change and form.changed_data:
            old = Membership.objects.select_related("user").get(pk=obj.pk)
            services.member_left(room_id=old.room_id, user_id=old.user_id)
            super().save_model(request, obj, form, change)
            _audit_member_change(old, obj, actor)
            return
        super().save_model(request, obj, form, change)
        if not change:
            member_audit(obj, kind="member.added", actor=actor, via=ADMIN)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        super().delete_model(request, obj)
        member_audit(obj, kind="member.removed", actor=admin_user(request), via=ADMIN)
        services.member_left(room_id=obj.room_id, user_id=obj.user_id)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[Membership]
    ) -> None:
        # "Delete selected": the rule holds for the whole selection at once.
        for room in Room.objects.filter(memberships__in=queryset).distinct():
            leaving = set(
                queryset.filter(room=room, role=APPROVER).values_list(
                    "user_id", flat=True
                )
            )
            try:
                services.room_keeps_an_approver(room=room, leaving=leaving)
            except Conflict as exc:
                self.message_user(request, f"{room.slug}: {exc.detail}", messages.ERROR)
                queryset = queryset.exclude(room=room)
        removed = list(queryset.select_related("user"))
        pairs = [(m.room_id, m.user_id) for m in removed]
        with transaction.atomic():
            super().delete_queryset(request, queryset)
            for membership in removed:
                member_audit(
                    membership,
                    kind="member.removed",
                    actor=admin_user(request),
                    via=ADMIN,
                )
        for room_id, user_id in pairs:
            services.member_left(room_id=room_id, user_id=user_id)


def _audit_member_change(old: Membership, new: Membership, actor: User) -> None:
    """A membership changed in the admin: another user in the row is one removed
    and one added; the same user with another role, a role change."""
    if old.user_id != new.user_id or old.room_id != new.room_id:
        member_audit(old, kind="member.removed", actor=actor, via=ADMIN)
        member_audit(new, kind="member.added", actor=actor, via=ADMIN)
    elif old.role != new.role:
        member_audit(new, kind="member.role", actor=actor, via=ADMIN)


def _is_last_approver(membership: Membership) -> bool:
    if membership.role != APPROVER:
        return False
    try:
        services.room_keeps_an_approver(
            room=membership.room, leaving={membership.user_id}
        )
    except Conflict:
        return True
    return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    """Tokens by owner and age; deleting one revokes it. Keys are never stored, so
    none is shown and none can be added here (POST /api/auth/token issues them)."""

    list_display = ("prefix", "user", "created", "expires_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "prefix")
    readonly_fields = ("user", "prefix", "created", "expires_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeactivatingUserAdmin(UserAdmin[User]):
    """Django's user admin. Deactivating a user here closes their sockets and drops
    their votes, as any save does (`chat.apps.on_user_saved` calls
    `services.user_saved`)."""


admin.site.register(User, DeactivatingUserAdmin)
