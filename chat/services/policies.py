"""A room's approval policy: rules as data, and which rule a tool call falls under.

The REST API, the admin's inline and the room page's panel all write rules through
`policy_create` / `policy_update`, which validate with `rule_clean`; the turn copies
the resolved rule onto each action it creates (`rule_resolve`), so changing the
policy later does not change actions already proposed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import transaction

from chat.errors import Forbidden, Invalid, NotFound
from chat.models import Action, PolicyRule, Room, User
from chat.tools import Scope, ToolSpec, catalogue, name_of, target_names
from chat.tools.spec import unstorable

from .access import can_decide, id_or_none
from .audit import audit_write

FIELDS = set(PolicyRule.FIELDS)
MAX_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Resolution:
    """The approval rule an action is created under, as copied onto it."""

    mode: str
    approvals_required: int = 1
    approvers: list[str] | None = None
    requester_may_approve: bool = True
    timeout: int = 0
    delay: int = 0
    rule_id: str | None = None
    # The rule in words, for refusals that must name it; not copied onto the action.
    summary: str = field(default="", compare=False)

    def describe(self) -> dict[str, Any]:
        described = asdict(self)
        del described["summary"]
        return described

    @property
    def named(self) -> str:
        """How a refusal names it: "rule 7, delete_issue with {...}: never"."""
        return f"rule {self.rule_id}, {self.summary}" if self.rule_id else self.summary

    def as_vote(self) -> Resolution:
        """The rule as an approver's edit meets it: one that runs at once still
        needs the editor's approval, and only that."""
        if self.mode != PolicyRule.Mode.AUTO:
            return self
        return replace(self, mode=PolicyRule.Mode.ASK, approvals_required=1)


def rule_resolve(
    *,
    room_id: int,
    spec: ToolSpec,
    arguments: dict[str, Any],
    names: Iterable[str] = (),
) -> Resolution:
    """The rule a call falls under: a named tool beats "*", then more matching
    argument keys beat fewer, then the newest wins; with none, the tool's default.

    `names`: what the call's pack knows its target by (a Linear issue's identifier
    and id), besides the argument's own value; a rule's value for the target
    matches any of them.
    """
    known = target_names(spec, arguments, names)
    best: tuple[tuple[int, int, float], PolicyRule] | None = None
    for rule in PolicyRule.objects.filter(room_id=room_id, tool__in=[spec.name, "*"]):
        if not _matches(rule, spec, arguments, known):
            continue
        rank = (rule.tool != "*", len(rule.arguments or {}), rule.created.timestamp())
        if best is None or rank > best[0]:
            best = (rank, rule)
    timeout = settings.AGENT_APPROVAL_TIMEOUT
    if best is None:
        mode = PolicyRule.Mode.ASK if spec.needs_approval else PolicyRule.Mode.AUTO
        return Resolution(
            mode=mode, timeout=timeout, summary=f"the default for {spec.name}: {mode}"
        )
    rule = best[1]
    if spec.pinned_changed and rule.mode == PolicyRule.Mode.AUTO:
        # A tool whose listing changed since it was pinned asks until the change is
        # accepted: no `auto` rule lowers it (a `never` or an `ask` rule stands).
        return Resolution(
            mode=PolicyRule.Mode.ASK,
            timeout=timeout,
            summary=(f"{spec.name} changed since it was pinned: ask"),
        )
    return Resolution(
        mode=rule.mode,
        approvals_required=rule.approvals_required,
        approvers=list(rule.approvers) or None,
        requester_may_approve=rule.requester_may_approve,
        timeout=rule.timeout or timeout,
        delay=rule.delay,
        rule_id=str(rule.pk),
        summary=rule_summary(rule),
    )


def _matches(
    rule: PolicyRule, spec: ToolSpec, arguments: dict[str, Any], names: tuple[str, ...]
) -> bool:
    """Each of the rule's keys matches the call's value (trimmed, strings caseless;
    the target by any of its names); an `auto` rule also covers every argument
    but the target, so that allowing a state change does not allow a rewrite."""
    wanted = rule.arguments or {}
    if not isinstance(wanted, dict):
        return False
    for key, value in wanted.items():
        if key not in arguments:
            return False
        if key == spec.target:
            if name_of(value) not in names:
                return False
        elif _canonical(value) != _canonical(arguments[key]):
            return False
    if wanted and rule.mode == PolicyRule.Mode.AUTO:
        return set(arguments) - {spec.target} <= set(wanted)
    return True


def _canonical(value: object) -> object:
    """A JSON value as rules compare it: strings trimmed and caseless, at any depth;
    true stays apart from 1."""
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), repr(_canonical(v))) for k, v in value.items()))
    return value


def rule_copy(*, action: Action, rule: Resolution) -> None:
    """Copy the rule's fields onto the action (in memory, unsaved): who may vote,
    how many must approve, the delay; the turn does it for a new call and an
    approver's edit for the edited one."""
    action.rule = rule.describe() if rule.rule_id else None
    action.requires_approval = rule.mode == PolicyRule.Mode.ASK
    action.approvals_required = rule.approvals_required
    action.approvers = rule.approvers
    action.requester_may_approve = rule.requester_may_approve
    action.delay = rule.delay


def policy_names_target(*, room_id: int, spec: ToolSpec) -> bool:
    """Whether a rule of the room that may apply to `spec` names its target, so the
    call's target must be read (its other names) before its rule is resolved."""
    if spec.target is None:
        return False
    return PolicyRule.objects.filter(
        room_id=room_id,
        tool__in=[spec.name, "*"],
        arguments__has_key=spec.target,
    ).exists()


def rule_clean(data: object, *, partial: bool = False) -> dict[str, Any]:
    """Check a rule's fields as a client sent them; the clean values, or Invalid."""
    if not isinstance(data, dict):
        raise Invalid("A rule is a JSON object.")
    unknown = set(data) - FIELDS
    if unknown:
        raise Invalid(f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}.")
    if not partial and "tool" not in data:
        raise Invalid('tool: a tool name (GET /api/tools) or "*" is required.')
    clean: dict[str, Any] = {}
    if "tool" in data:
        tool = data["tool"]
        if not isinstance(tool, str) or (tool != "*" and tool not in catalogue()):
            raise Invalid(f'tool: unknown tool {tool!r}; see GET /api/tools, or "*".')
        clean["tool"] = tool
    if "arguments" in data:
        arguments = data["arguments"]
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict) or len(str(arguments)) > 2000:
            raise Invalid("arguments: an object of argument values to match.")
        if unstorable(arguments):
            # PostgreSQL's jsonb cannot hold NUL or broken Unicode; no tool takes it.
            raise Invalid("arguments: NUL characters or invalid Unicode.")
        clean["arguments"] = arguments
    if "mode" in data:
        if data["mode"] not in PolicyRule.Mode.values:
            raise Invalid("mode: one of ask, auto, never.")
        clean["mode"] = data["mode"]
    if "approvals_required" in data:
        clean["approvals_required"] = _integer(data, "approvals_required", 1, 50)
    if "approvers" in data:
        clean["approvers"] = _usernames(data["approvers"])
    if "requester_may_approve" in data:
        if not isinstance(data["requester_may_approve"], bool):
            raise Invalid("requester_may_approve: true or false.")
        clean["requester_may_approve"] = data["requester_may_approve"]
    if "timeout" in data:
        clean["timeout"] = (
            None
            if data["timeout"] is None
            else _integer(data, "timeout", 1, MAX_SECONDS)
        )
    if "delay" in data:
        clean["delay"] = _integer(data, "delay", 0, 24 * 3600)
    return clean


def rule_check_scope(*, room: Room, tool: str) -> None:
    """Refuse a rule naming a tool the room's packs do not offer (Invalid): it
    could never apply, and would read as if the room used that tool."""
    if tool == "*" or tool in catalogue(Scope.of(room)):
        return
    raise Invalid(
        f"tool: {tool!r} is not offered in this room (its packs: "
        f"{', '.join(room.packs)}); see GET /api/tools?room={room.slug}."
    )


def _integer(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data[name]
    # bool is an int in Python, not in JSON.
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise Invalid(f"{name}: an integer from {low} to {high}.")
    return value


def _usernames(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid("approvers: a list of usernames.")
    names = sorted(set(value))
    known = set(
        User.objects.filter(username__in=names).values_list("username", flat=True)
    )
    missing = [n for n in names if n not in known]
    if missing:
        raise Invalid(f"approvers: no user {', '.join(map(repr, missing))}.")
    return names


def policy_list(*, room: Room) -> list[PolicyRule]:
    return list(room.policy_rules.order_by("created"))


def policy_create(
    *, room: Room, actor: User, data: object, via: str = Action.Via.API
) -> PolicyRule:
    """Add a rule to the room's policy; approvers (and deciders) only."""
    _check_may_edit(room, actor)
    clean = rule_clean(data)
    rule_check_scope(room=room, tool=clean["tool"])
    rule = PolicyRule(room=room, **clean)
    _check_consistent(rule)
    with transaction.atomic():
        rule.save()
        policy_audit(rule, change="created", actor=actor, via=via)
    return rule


def policy_audit(rule: PolicyRule, *, change: str, actor: User, via: str) -> None:
    """The audit record of a change of the room's policy (inside its transaction),
    by any route: the API, the admin. `rule`: as it is after the change, or as it
    was for a deletion."""
    audit_write(
        room=rule.room_id, kind=f"policy.{change}", actor=actor, via=via, rule=rule
    )


def policy_update(
    *,
    room: Room,
    actor: User,
    rule_id: str,
    data: object,
    via: str = Action.Via.API,
) -> PolicyRule:
    _check_may_edit(room, actor)
    clean = rule_clean(data, partial=True)
    if "tool" in clean:
        rule_check_scope(room=room, tool=clean["tool"])
    with transaction.atomic():
        rule = _rule_get(room, rule_id, lock=True)
        for field, value in clean.items():
            setattr(rule, field, value)
        _check_consistent(rule)
        rule.save()
        policy_audit(rule, change="updated", actor=actor, via=via)
    return rule


def policy_delete(
    *, room: Room, actor: User, rule_id: str, via: str = Action.Via.API
) -> None:
    _check_may_edit(room, actor)
    with transaction.atomic():
        rule = _rule_get(room, rule_id, lock=True)
        # As it was: the record keeps the rule's id.
        policy_audit(rule, change="deleted", actor=actor, via=via)
        rule.delete()


def _rule_get(room: Room, rule_id: str, lock: bool = False) -> PolicyRule:
    rules = room.policy_rules.all()
    if lock:
        rules = rules.select_for_update(no_key=True)
    rule = rules.filter(pk=id_or_none(rule_id)).first()  # type: ignore[misc]
    if rule is None:
        raise NotFound("No such rule.")
    return rule


def _check_may_edit(room: Room, actor: User) -> None:
    if not can_decide(room=room, user=actor):
        raise Forbidden("Only approvers of this room may change its policy.")


def _check_consistent(rule: PolicyRule) -> None:
    if rule.approvers and rule.approvals_required > len(rule.approvers):
        raise Invalid(
            f"approvals_required is {rule.approvals_required} but only "
            f"{len(rule.approvers)} approvers are named: no action could be approved."
        )


def rule_summary(rule: PolicyRule) -> str:
    """A rule in words, for the model and the admin."""
    target = "any tool" if rule.tool == "*" else rule.tool
    if rule.arguments:
        target += f" with {rule.arguments}"
    return f"{target}: {rule.mode}"


__all__ = [
    "Resolution",
    "policy_names_target",
    "rule_copy",
    "policy_audit",
    "policy_create",
    "policy_delete",
    "policy_list",
    "policy_update",
    "rule_check_scope",
    "rule_clean",
    "rule_resolve",
    "rule_summary",
]
