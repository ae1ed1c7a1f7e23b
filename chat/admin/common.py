"""Shared by the admin pages: how an action reads in a line, and who may look."""

import json
from typing import TYPE_CHECKING, Any, cast

from django.contrib.admin.options import BaseModelAdmin
from django.contrib.admin.utils import quote
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from chat.models import Action, User

DECIDE_PERM = "chat.decide_action"
SUMMARY_CHARS = 120
# Each value in a summary line is cut on its own, so a long one never hides the
# fields after it (the whole line used to be cut at SUMMARY_CHARS).
VALUE_CHARS = 60
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


def short(value: Any) -> str:
    if value == [] or value == {}:
        return "none"  # as the room reads an empty list, not "[]"
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, sort_keys=True)
    )
    text = Truncator(" ".join(text.split())).chars(VALUE_CHARS)
    return f"'{text}'" if isinstance(value, str) else text


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
        parts.append(short(title))
        if arguments.get("title") == title:
            del arguments["title"]
    if preview.get("missing"):
        parts.append("(no such issue)")
    parts.extend(f"{key}={short(value)}" for key, value in sorted(arguments.items()))
    if preview.get("refused"):
        parts.append("(outside the room's teams)")
    return " ".join(" ".join(parts).split())  # one line: no newlines from arguments


def pretty(value: Any) -> SafeString | str:
    if value is None:
        return "-"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre class="chat-json">{}</pre>', text)


def already_decided(action: Action) -> str:
    """Why a decision came too late: "already approved by alice (now succeeded)"."""
    if action.decided_by is None:
        return f"already {action.status}"
    verb = "approved" if action.status in APPROVED_LIKE else action.status
    text = f"already {verb} by {action.decided_by}"
    return text if verb == action.status else f"{text} (now {action.status})"


def admin_link(obj: Any, label: str) -> SafeString:
    opts = obj._meta
    url = reverse(
        f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)]
    )
    return format_html('<a href="{}">{}</a>', url, label)


# Permissions -------------------------------------------------------------------------

if TYPE_CHECKING:
    # The mixins below sit before a ModelAdmin or an inline in each admin's bases.
    _AdminBase = BaseModelAdmin[Any]
else:
    _AdminBase = object


def admin_user(request: HttpRequest) -> User:
    """The person on an admin page: the admin site lets only active staff in."""
    return cast(User, request.user)


class DeciderMayViewMixin(_AdminBase):
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
