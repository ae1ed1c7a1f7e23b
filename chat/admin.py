"""The Django admin: where staff decide pending actions and look at everything else.

Nothing here writes around the services: a decision goes through
`services.action_decide(..., via=Action.Via.ADMIN)`, like the room's buttons and the
API, so the rules (who may decide, the first decision wins) and the room's events are
the same whichever interface was used. Actions, requests, messages and events come
from the agent: the admin shows them read-only and never adds them.

Everything that came from the model or from Linear (arguments, issue titles,
messages) is untrusted: it reaches HTML only through autoescaping or `format_html`.
"""

import json
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.timesince import timesince

from . import services
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import Action, Membership, Message, Request, Room, RoomEvent

DECIDE_PERM = "chat.decide_action"
SUMMARY_CHARS = 120
# Statuses an action reaches only after someone approved it.
APPROVED_LIKE = (
    Action.Status.APPROVED,
    Action.Status.EXECUTING,
    Action.Status.SUCCEEDED,
    Action.Status.FAILED,
)
PENDING_FIRST = Case(
    When(status=Action.Status.PENDING, then=Value(0)),
    default=Value(1),
    output_field=IntegerField(),
)


# Text shown for an action ------------------------------------------------------------


def _short(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def action_summary(action: Action) -> str:
    """One line saying what the action does, e.g. "delete ENG-3 'Login fails'".

    Plain text: callers escape it (autoescaping, `format_html`), since the arguments
    and the preview's title come from the model and from Linear.
    """
    arguments = dict(action.arguments) if isinstance(action.arguments, dict) else {}
    preview = action.preview if isinstance(action.preview, dict) else {}
    parts = [action.tool.removesuffix("_issue").replace("_", " ")]
    target = arguments.pop("id", None) or preview.get("identifier")
    if target:
        parts.append(str(target))
    title = preview.get("title") or preview.get("creates")
    if title:
        parts.append(_short(title))
        if arguments.get("title") == title:
            del arguments["title"]
    if preview.get("missing"):
        parts.append("(no such issue)")
    parts.extend(f"{key}={_short(value)}" for key, value in sorted(arguments.items()))
    line = " ".join(" ".join(parts).split())  # one line: no newlines from arguments
    return Truncator(line).chars(SUMMARY_CHARS)


def _pretty(value: Any) -> SafeString | str:
    if value is None:
        return "-"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre class="chat-json">{}</pre>', text)


def _already(action: Action) -> str:
    """Why a decision came too late: "already approved by alice (now succeeded)"."""
    if action.decided_by is None:
        return f"already {action.status}"
    verb = "approved" if action.status in APPROVED_LIKE else action.status
    text = f"already {verb} by {action.decided_by}"
    return text if verb == action.status else f"{text} (now {action.status})"


def _admin_link(obj: Any, label: str) -> SafeString:
    opts = obj._meta
    url = reverse(
        f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)]
    )
    return format_html('<a href="{}">{}</a>', url, label)


# Permissions -------------------------------------------------------------------------


class DeciderMayViewMixin:
    """Holders of chat.decide_action decide in every room, so they may see every room's
    actions and what led to them without also holding the view permissions."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm(
            DECIDE_PERM
        )


class AgentRecordMixin(DeciderMayViewMixin):
    """Records the agent writes: never added or edited here, deleted by superusers."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


# Actions -----------------------------------------------------------------------------


@admin.register(Action)
class ActionAdmin(AgentRecordMixin, admin.ModelAdmin):
    list_display = ("tool", "summary", "room", "requested_by", "age", "status_display")
    list_display_links = ("tool", "summary")
    list_filter = ("status", "tool", "room", "requires_approval")
    list_select_related = ("room", "request__user", "decided_by")
    search_fields = ("tool", "arguments", "preview", "room__slug", "room__name")
    ordering = (PENDING_FIRST.asc(), "-created")
    actions = ("approve_selected", "deny_selected")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "summary",
                    "status_display",
                    "tool",
                    "requires_approval",
                    "request_link",
                    "room_link",
                    "requested_by",
                    "created",
                )
            },
        ),
        ("What it does", {"fields": ("arguments_pretty", "preview_pretty")}),
        ("Decision", {"fields": ("decision_record", "edits")}),
        ("Outcome", {"fields": ("result_pretty", "error")}),
        (
            "Bookkeeping",
            {
                "classes": ("collapse",),
                "fields": (
                    "id",
                    "step",
                    "tool_call_id",
                    "attempts",
                    "lease_until",
                    "updated",
                ),
            },
        ),
    )
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    # Columns and fields

    @admin.display(description="summary")
    def summary(self, action: Action) -> str:
        return action_summary(action)

    @admin.display(description="requested by", ordering="request__user__username")
    def requested_by(self, action: Action) -> str:
        return str(action.request.user or "-")

    @admin.display(description="age", ordering="created")
    def age(self, action: Action) -> str:
        return timesince(action.created)

    @admin.display(description="status", ordering="status")
    def status_display(self, action: Action) -> str:
        if action.decided_by is None:
            return action.status
        return f"{action.status} ({action.decided_by}, {action.decided_via})"

    @admin.display(description="request")
    def request_link(self, action: Action) -> SafeString:
        return _admin_link(
            action.request, f"{action.request.pk} ({action.request.status})"
        )

    @admin.display(description="room")
    def room_link(self, action: Action) -> SafeString:
        return _admin_link(action.room, f"{action.room.name} ({action.room.slug})")

    @admin.display(description="arguments")
    def arguments_pretty(self, action: Action) -> SafeString | str:
        return _pretty(action.arguments)

    @admin.display(description="preview")
    def preview_pretty(self, action: Action) -> SafeString | str:
        return _pretty(action.preview)

    @admin.display(description="result")
    def result_pretty(self, action: Action) -> SafeString | str:
        return _pretty(action.result)

    @admin.display(description="decided")
    def decision_record(self, action: Action) -> SafeString | str:
        if action.decided_at is None:
            return (
                "Not decided yet." if action.requires_approval else "Needs no approval."
            )
        rows = [
            ("by", str(action.decided_by or "-")),
            ("at", action.decided_at.isoformat(timespec="seconds")),
            ("through", action.decided_via or "-"),
            ("reason", action.reason or "(none given)"),
        ]
        body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        return format_html('<table class="chat-decision">{}</table>', body)

    @admin.display(description="edits")
    def edits(self, action: Action) -> SafeString | str:
        if not action.edited:
            return "Not edited: it runs with the arguments the model proposed."
        before, after = action.proposed_arguments or {}, action.arguments or {}
        keys = sorted(set(before) | set(after))
        changed = [
            (
                key,
                _short(before[key]) if key in before else "-",
                _short(after[key]) if key in after else "-",
            )
            for key in keys
            if before.get(key) != after.get(key)
        ]
        body = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", changed
        )
        return format_html(
            '<table class="chat-edits"><tr><th></th><th>proposed_arguments</th>'
            "<th>arguments</th></tr>{}<tr><th>all</th><td>{}</td><td>{}</td></tr>"
            "</table>",
            body,
            _pretty(before),
            _pretty(after),
        )

    # Deciding

    def get_urls(self) -> list[URLPattern]:
        decide = [
            path(
                f"<path:object_id>/{decision}/",
                self.admin_site.admin_view(self._decide_view),
                {"decision": decision},
                name=f"chat_action_{decision}",
            )
            for decision in ("approve", "deny")
        ]
        # Before the defaults: their `<path:object_id>/` would swallow these.
        return decide + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        action = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if action is not None and action.status == Action.Status.PENDING:
            context["decision_pending"] = True
            context["decision_allowed"] = services.can_decide(
                room=action.room, user=request.user
            )
            context["decision_summary"] = action_summary(action)
            context["approve_url"] = reverse(
                "admin:chat_action_approve", args=[quote(action.pk)]
            )
            context["deny_url"] = reverse(
                "admin:chat_action_deny", args=[quote(action.pk)]
            )
        return super().change_view(request, object_id, form_url, context)

    def _decide_view(
        self, request: HttpRequest, object_id: str, decision: str
    ) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        action = self.get_object(request, unquote(object_id))
        if action is None:
            if not self.has_view_permission(request):
                raise PermissionDenied
            raise Http404("No such action.")
        outcome = self._decide(
            request, action, decision, request.POST.get("reason", "")
        )
        if outcome is None:
            # Neither a decider nor a viewer: nothing on the change page is theirs.
            raise PermissionDenied
        level, text = outcome
        messages.add_message(request, level, text)
        if not self.has_view_permission(request, action):
            # An approver of the room without the admin's view permission.
            return redirect("admin:index")
        return redirect("admin:chat_action_change", quote(action.pk))

    def _decide(
        self, request: HttpRequest, action: Action, decision: str, reason: str
    ) -> tuple[int, str] | None:
        """Decide one action through the service; the message for the person, or None
        when they may neither decide nor see it."""
        label = action_summary(action)
        try:
            services.action_decide(
                action_id=str(action.pk),
                user=request.user,
                decision=decision,
                reason=reason,
                via=Action.Via.ADMIN,
            )
        except (Forbidden, NotFound):
            if not self.has_view_permission(request, action):
                return None
            return messages.ERROR, (
                f"{label}: not allowed: you are not an approver of the room "
                f"{action.room.slug!r}."
            )
        except Conflict:
            action.refresh_from_db()
            return messages.WARNING, f"{label}: {_already(action)}."
        except Invalid as exc:
            return messages.ERROR, f"{label}: {exc.detail}"
        # The decision service writes the admin log entry, whatever the interface.
        verb = "Approved" if decision == "approve" else "Denied"
        return messages.SUCCESS, f"{verb}: {label}."

    def _decide_many(
        self, request: HttpRequest, queryset: QuerySet, decision: str, reason: str = ""
    ) -> None:
        for action in queryset.select_related("room", "request", "decided_by"):
            outcome = self._decide(request, action, decision, reason)
            if outcome is None:
                outcome = messages.ERROR, f"{action_summary(action)}: not allowed."
            messages.add_message(request, *outcome)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        """Whether to offer the decision actions at all; each row is still decided
        (or refused) by the service."""
        if request.user.has_perm(DECIDE_PERM):
            return True
        approver = Membership.Role.APPROVER
        return Membership.objects.filter(user=request.user, role=approver).exists()

    @admin.action(description="Approve selected actions", permissions=["decide"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide_many(request, queryset, "approve")

    @admin.action(
        description="Deny selected actions (asks for a reason)", permissions=["decide"]
    )
    def deny_selected(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        if request.POST.get("post") == "yes":
            self._decide_many(request, queryset, "deny", request.POST.get("reason", ""))
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Deny actions",
            "opts": self.opts,
            "deny_rows": [
                (a, action_summary(a)) for a in queryset.select_related("room")
            ],
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/chat/action/deny_selected.html", context
        )


# Requests, messages, events ------------------------------------------------------


class ReadOnlyInline(AgentRecordMixin):
    extra = 0
    can_delete = False
    show_change_link = True


class MessageInline(ReadOnlyInline, admin.TabularInline):
    model = Message
    fields = ("created", "role", "author", "content")
    readonly_fields = fields


class ActionInline(ReadOnlyInline, admin.TabularInline):
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
class RequestAdmin(AgentRecordMixin, admin.ModelAdmin):
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
        return _pretty(request.usage)

    @admin.display(description="events")
    def events(self, request: Request) -> SafeString | str:
        pk = str(request.pk)
        mine = Q(payload__request=pk) | Q(type="request", payload__id=pk)
        return _events_table(RoomEvent.objects.filter(mine, room_id=request.room_id))


@admin.register(Message)
class MessageAdmin(AgentRecordMixin, admin.ModelAdmin):
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
        return _pretty(message.tool_calls or None)


@admin.register(RoomEvent)
class RoomEventAdmin(AgentRecordMixin, admin.ModelAdmin):
    list_display = ("room", "seq", "type", "created")
    list_filter = ("type", "room")
    list_select_related = ("room",)
    fields = ("room", "seq", "type", "payload_pretty", "created")
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, event: RoomEvent) -> SafeString | str:
        return _pretty(event.payload)


# Rooms -------------------------------------------------------------------------------


class MembershipInline(DeciderMayViewMixin, admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created")
    readonly_fields = ("created",)
    raw_id_fields = ("user",)


@admin.register(Room)
class RoomAdmin(DeciderMayViewMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "created_by", "created", "last_seq")
    search_fields = ("name", "slug")
    readonly_fields = ("created_by", "created", "last_seq")
    inlines = (MembershipInline,)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a room deletes its whole history.
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("room", "user", "role", "created")
    list_filter = ("role", "room")
    list_select_related = ("room", "user")
    search_fields = ("room__slug", "user__username")
    raw_id_fields = ("user",)
