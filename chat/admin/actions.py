"""Pending actions: the list, the bulk decisions and the change page."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from chat import services
from chat.eligibility import Ballots, may_vote
from chat.errors import Conflict, Forbidden, Invalid, NotFound
from chat.models import Action, Membership

from .common import (
    DECIDE_PERM,
    PENDING_FIRST,
    AgentRecordMixin,
    action_summary,
    admin_link,
    admin_user,
    already_decided,
    pretty,
    short,
)


@admin.register(Action)
class ActionAdmin(AgentRecordMixin, admin.ModelAdmin[Action]):
    list_display = (
        "tool",
        "pack",
        "summary",
        "room",
        "requested_by",
        "age",
        "status_display",
    )
    list_display_links = ("tool", "summary")
    list_filter = ("status", "pack", "tool", "room", "requires_approval")
    list_select_related = ("room", "request__user", "decided_by")
    search_fields = ("tool", "arguments", "preview", "room__slug", "room__name")
    # The stubs allow field names only; Django's admin also orders by expressions.
    ordering = (PENDING_FIRST.asc(), "-created")  # type: ignore[assignment]
    actions = ("approve_selected", "deny_selected")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "summary",
                    "status_display",
                    "tool",
                    "pack",
                    "requires_approval",
                    "request_link",
                    "room_link",
                    "requested_by",
                    "created",
                )
            },
        ),
        ("What it does", {"fields": ("arguments_pretty", "preview_pretty")}),
        ("Decision", {"fields": ("rule_display", "votes", "decision_record", "edits")}),
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
    readonly_fields = [
        name
        for _, options in fieldsets
        for name in options["fields"]
        if isinstance(name, str)  # no field here is a row of several
    ]

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
        return admin_link(
            action.request, f"{action.request.pk} ({action.request.status})"
        )

    @admin.display(description="room")
    def room_link(self, action: Action) -> SafeString:
        return admin_link(action.room, f"{action.room.name} ({action.room.slug})")

    @admin.display(description="arguments")
    def arguments_pretty(self, action: Action) -> SafeString | str:
        return pretty(action.arguments)

    @admin.display(description="preview")
    def preview_pretty(self, action: Action) -> SafeString | str:
        return pretty(action.preview)

    @admin.display(description="result")
    def result_pretty(self, action: Action) -> SafeString | str:
        return pretty(action.result)

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

    @admin.display(description="rule")
    def rule_display(self, action: Action) -> str:
        who = (
            ", ".join(action.approvers) if action.approvers else "the room's approvers"
        )
        parts = [
            f"{action.approvals_required} approval(s) from {who}",
            "the requester may approve"
            if action.requester_may_approve
            else "not the requester",
        ]
        if action.delay:
            parts.append(f"{action.delay} s to retract after approval")
        if action.expires_at:
            parts.append(f"expires {action.expires_at.isoformat(timespec='seconds')}")
        source = f"rule {action.rule['rule_id']}" if action.rule else "the default"
        return f"{'; '.join(parts)} ({source})"

    @admin.display(description="votes")
    def votes(self, action: Action) -> SafeString | str:
        rows = [
            (
                vote.user.username,
                vote.decision,
                f"ballot {vote.ballot}"
                + (" (current)" if vote.ballot == action.ballot else ""),
                vote.at.isoformat(timespec="seconds"),
                vote.via,
                vote.reason or "-",
            )
            for vote in action.votes.select_related("user")
        ]
        if not rows:
            return "No votes yet."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html(
            '<table class="chat-votes"><tr><th>who</th><th>vote</th><th>for</th>'
            "<th>at</th><th>through</th><th>reason</th></tr>{}</table>",
            body,
        )

    @admin.display(description="edits")
    def edits(self, action: Action) -> SafeString | str:
        if not action.edited:
            return "Not edited: it runs with the arguments the model proposed."
        before, after = action.proposed_arguments or {}, action.arguments or {}
        keys = sorted(set(before) | set(after))
        changed = [
            (
                key,
                short(before[key]) if key in before else "-",
                short(after[key]) if key in after else "-",
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
            pretty(before),
            pretty(after),
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
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        action = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if action is not None and action.status == Action.Status.PENDING:
            context["decision_pending"] = True
            context["decision_allowed"] = may_vote(
                action=action,
                requester_id=action.request.user_id,
                user=admin_user(request),
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
            decided = services.action_decide(
                action_id=str(action.pk),
                user=admin_user(request),
                decision=decision,
                reason=reason,
                via=Action.Via.ADMIN,
            )
        except NotFound:
            if not self.has_view_permission(request, action):
                return None
            return messages.ERROR, f"{label}: not allowed: you may not see its room."
        except Forbidden as exc:
            if not self.has_view_permission(request, action):
                return None
            return messages.ERROR, f"{label}: not allowed: {exc.detail}"
        except Conflict:
            action.refresh_from_db()
            return messages.WARNING, f"{label}: {already_decided(action)}."
        except Invalid as exc:
            return messages.ERROR, f"{label}: {exc.detail}"
        # The decision service writes the admin log entry, whatever the interface.
        if decided.status == Action.Status.PENDING:
            count = len(Ballots([decided]).approvals(decided))
            return messages.SUCCESS, (
                f"Your approval counted: {label} ({count} of "
                f"{decided.approvals_required} approvals; it waits for more)."
            )
        verb = "Approved" if decision == "approve" else "Denied"
        return messages.SUCCESS, f"{verb}: {label}."

    def _decide_many(
        self,
        request: HttpRequest,
        queryset: QuerySet[Action],
        decision: str,
        reason: str = "",
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
        return Membership.objects.filter(
            user=admin_user(request), role=approver
        ).exists()

    @admin.action(
        description="Approve selected actions (shows what will run first)",
        permissions=["decide"],
    )
    def approve_selected(
        self, request: HttpRequest, queryset: QuerySet[Action]
    ) -> HttpResponse | None:
        if request.POST.get("post") == "yes":
            self._decide_many(request, queryset, "approve")
            return None
        # Every row in full (arguments and preview), so nothing runs unread.
        context = {
            **self.admin_site.each_context(request),
            "title": "Approve actions",
            "opts": self.opts,
            "approve_rows": [
                (a, action_summary(a), pretty(a.arguments), pretty(a.preview))
                for a in queryset.select_related("room")
            ],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/chat/action/approve_selected.html", context
        )

    @admin.action(
        description="Deny selected actions (asks for a reason)", permissions=["decide"]
    )
    def deny_selected(
        self, request: HttpRequest, queryset: QuerySet[Action]
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
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/chat/action/deny_selected.html", context
        )


# Requests, messages, events ------------------------------------------------------
