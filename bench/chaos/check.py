"""The invariants a chaos run must keep, checked at its end from what it gathered.

The input is plain data (`Gathered`, JSON-able, saved with every run so a failure can
be looked at again): the database's actions, votes, requests, room events and
deliveries; the stand-ins' own records of effects (Linear, GitHub); what each watcher
(a WebSocket client) received; the webhook deliveries the run's receiver got.

Every tool call the workload asks for carries a tag of its own (`cx<seed>-<n>`, in a
title or a body), so an effect in a stand-in's log names the action it came from.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TAG = re.compile(r"\bcx\d+-\d+e?\b")
# The statuses an action that ran (or may have run) can be in.
RAN = {"executing", "succeeded", "failed"}
ENDED_REQUEST = {"completed", "failed", "cancelled"}

INVARIANTS = (
    "effect_at_most_once",
    "effect_only_when_allowed",
    "request_not_stranded",
    "room_events_gap_free",
    "watcher_saw_events_in_order",
    "message_equals_deltas",
    "delivery_sent_once_with_one_id",
    "audit_matches_action",
    "audit_seq_gap_free",
    "trigger_delivery_posts_at_most_once",
    "schedule_slot_posts_at_most_once",
    "grant_matches_only_until_expiry",
)
GRANT_SLACK = 5.0
# An action that was approved (and may have run since) under an `ask` rule.
APPROVED = {"approved", "executing", "succeeded", "failed"}


@dataclass
class Gathered:
    actions: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Room slug -> every stored event seq, and the room's counter.
    events: dict[str, list[int]] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    # Effects as the stand-ins logged them: {"pack", "op", "text", "target"}.
    effects: list[dict[str, Any]] = field(default_factory=list)
    watchers: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    # The audit: room slug -> its records ({seq, kind, action, actor, decision}),
    # and the room's audit counter.
    audit: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    audit_seq: dict[str, int] = field(default_factory=dict)
    # Grants' rules: {id, source_action, expires_at}.
    grants: list[dict[str, Any]] = field(default_factory=list)
    # What the run's sender got for each trigger delivery it sent: {trigger,
    # delivery, status (int, or the error's name), body (the answer's JSON)}.
    hooks: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, default=str)

    @classmethod
    def from_json(cls, text: str) -> Gathered:
        return cls(**json.loads(text))


@dataclass
class Report:
    checked: Counter[str] = field(default_factory=Counter)
    violations: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, invariant: str, detail: str) -> None:
        self.violations.append((invariant, detail))

    @property
    def first(self) -> tuple[str, str] | None:
        return self.violations[0] if self.violations else None


def check(data: Gathered) -> Report:
    report = Report()
    _effects(data, report)
    _requests(data, report)
    _events(data, report)
    _watchers(data, report)
    _deliveries(data, report)
    _audit(data, report)
    _triggered(data, report)
    _grants(data, report)
    return report


def tags_of(value: Any) -> set[str]:
    return set(TAG.findall(json.dumps(value, default=str)))


def _effects(data: Gathered, report: Report) -> None:
    """Every effect names one action, ran at most once, and only for an action that
    reached its quorum under its rule and was not retracted, denied, expired or
    cancelled."""
    # A tag names one asked-for call; two actions share it only when the same ask
    # was posted twice (a client's retry), and then each may run once.
    by_tag: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for action in data.actions:
        for tag in tags_of(action["arguments"]):
            by_tag[tag].append(action)
    votes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for vote in data.votes:
        votes[vote["action"]].append(vote)
    seen: Counter[str] = Counter()
    for effect in data.effects:
        tags = tags_of(effect["text"])
        report.checked["effect_at_most_once"] += 1
        report.checked["effect_only_when_allowed"] += 1
        if not tags:
            continue  # not the workload's (none expected)
        for tag in tags:
            seen[tag] += 1
            actions = by_tag.get(tag, [])
            if not actions:
                report.fail(
                    "effect_only_when_allowed",
                    f"{effect['pack']} {effect['op']} {tag}: no action asked for it",
                )
                continue
            allowed = [a for a in actions if not _not_allowed(a, votes[a["id"]])]
            if seen[tag] == len(allowed) + 1 and allowed:
                report.fail(
                    "effect_at_most_once",
                    f"{effect['pack']} {effect['op']} ran {seen[tag]} times for "
                    f"action {allowed[0]['id']} ({allowed[0]['tool']}, {tag})",
                )
            if not allowed:
                action = actions[0]
                why = _not_allowed(action, votes[action["id"]])
                report.fail(
                    "effect_only_when_allowed",
                    f"{effect['pack']} {effect['op']} for action {action['id']} "
                    f"({action['tool']}, {tag}): {why}",
                )


def _not_allowed(action: dict[str, Any], votes: list[dict[str, Any]]) -> str:
    """Why the action should not have taken effect, or ""."""
    if action["status"] not in RAN:
        return f"the action is {action['status']}"
    if not action["requires_approval"]:
        return ""
    ballot = [v for v in votes if v["ballot"] == action["ballot"]]
    if any(v["decision"] == "deny" for v in ballot):
        return "a vote on its ballot denied it"
    approvers = {v["user"] for v in ballot if v["decision"] == "approve"}
    if not action["requester_may_approve"]:
        approvers.discard(action["requester"])
    if action.get("approvers"):
        approvers &= set(action["approvers"])
    if len(approvers) < action["approvals_required"]:
        return (
            f"{len(approvers)} eligible approval(s) on ballot {action['ballot']}, "
            f"{action['approvals_required']} required"
            + ("" if action["requester_may_approve"] else " (four eyes)")
        )
    return ""


def _requests(data: Gathered, report: Report) -> None:
    """Every request ended, or waits on a pending action."""
    pending: Counter[str] = Counter(
        a["request"] for a in data.actions if a["status"] == "pending"
    )
    for request in data.requests:
        report.checked["request_not_stranded"] += 1
        if request["status"] in ENDED_REQUEST:
            continue
        if request["status"] == "awaiting_approval" and pending[request["id"]]:
            continue
        report.fail(
            "request_not_stranded",
            f"request {request['id']} is {request['status']} with "
            f"{pending[request['id']]} action(s) pending",
        )


def _events(data: Gathered, report: Report) -> None:
    for room, seqs in data.events.items():
        report.checked["room_events_gap_free"] += 1
        expected = list(range(1, data.last_seq.get(room, len(seqs)) + 1))
        if sorted(seqs) != expected:
            missing = sorted(set(expected) - set(seqs))[:5]
            extra = [s for s, n in Counter(seqs).items() if n > 1 or s not in expected]
            report.fail(
                "room_events_gap_free",
                f"room {room}: {len(seqs)} events, last_seq "
                f"{data.last_seq.get(room)}; missing {missing}, extra {extra[:5]}",
            )


def _watchers(data: Gathered, report: Report) -> None:
    """Each watcher got durable events in order without repeats; one that stayed to
    the end (its socket never cut) got every one after its snapshot; every
    assistant message it saw streamed equals its deltas."""
    for watcher in data.watchers:
        name = f"watcher {watcher['name']} in {watcher['room']}"
        report.checked["watcher_saw_events_in_order"] += 1
        seqs = watcher["seqs"]
        if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
            at = next(
                i
                for i, (a, b) in enumerate(zip(seqs, seqs[1:], strict=False))
                if b <= a
            )
            report.fail(
                "watcher_saw_events_in_order",
                f"{name}: seq {seqs[at + 1]} after {seqs[at]}",
            )
        elif watcher["stayed"]:
            last = data.last_seq.get(watcher["room"], 0)
            want = list(range(watcher["snapshot_seq"] + 1, last + 1))
            if seqs != want:
                missing = sorted(set(want) - set(seqs))[:5]
                report.fail(
                    "watcher_saw_events_in_order",
                    f"{name} stayed to the end but missed seqs {missing} "
                    f"(got {len(seqs)} of {len(want)})",
                )
        for message, streamed in watcher["streamed"].items():
            final = watcher["final"].get(message)
            if final is None or not streamed["from_start"]:
                continue
            report.checked["message_equals_deltas"] += 1
            if streamed["text"] != final:
                report.fail(
                    "message_equals_deltas",
                    f"{name}: message {message} is {final[:60]!r}, its deltas make "
                    f"{streamed['text'][:60]!r}",
                )


def _deliveries(data: Gathered, report: Report) -> None:
    """Every webhook delivery was sent, reached the receiver at least once, and
    always under its one id (a resend carries the same id and body)."""
    got: dict[str, set[str]] = defaultdict(set)
    for hit in data.received:
        got[hit["id"]].add(hit["body"])
    bodies: dict[str, set[str]] = defaultdict(set)
    for hit in data.received:
        bodies[hit["body"]].add(hit["id"])
    for delivery in data.deliveries:
        report.checked["delivery_sent_once_with_one_id"] += 1
        did = delivery["id"]
        if delivery["status"] != "sent" or did not in got:
            report.fail(
                "delivery_sent_once_with_one_id",
                f"delivery {did} ({delivery['event']}) is {delivery['status']}, "
                f"received {len(got.get(did, ()))} time(s)",
            )
            continue
        if got[did] != {delivery["body"]} or len(bodies[delivery["body"]]) > 1:
            report.fail(
                "delivery_sent_once_with_one_id",
                f"delivery {did} arrived with another body or under another id",
            )


def _audit(data: Gathered, report: Report) -> None:
    """Each room's audit seqs are 1..its counter, once each; every action's records
    agree with its state: an expired one has one `expired` record, an approved (or
    run) one under `ask` its `approved`, a denied one its `denied` (or `never`), an
    auto one its `auto`; every stored vote has its `vote` record."""
    for room, records in data.audit.items():
        report.checked["audit_seq_gap_free"] += 1
        seqs = sorted(r["seq"] for r in records)
        expected = list(range(1, data.audit_seq.get(room, len(seqs)) + 1))
        if seqs != expected:
            missing = sorted(set(expected) - set(seqs))[:5]
            extra = [s for s, n in Counter(seqs).items() if n > 1 or s not in expected]
            report.fail(
                "audit_seq_gap_free",
                f"room {room}: {len(seqs)} audit records, audit_seq "
                f"{data.audit_seq.get(room)}; missing {missing}, extra {extra[:5]}",
            )
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    ballots: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for records in data.audit.values():
        for r in records:
            if r["action"] is None:
                continue
            kinds[r["action"]][r["kind"]] += 1
            if r["kind"] == "vote":
                ballots[r["action"]][(r["actor"], r["decision"])] += 1
    votes: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for vote in data.votes:
        votes[vote["action"]][(vote["user"], vote["decision"])] += 1
    for action in data.actions:
        report.checked["audit_matches_action"] += 1
        got = kinds[action["id"]]
        why = _audit_disagrees(action, got)
        missing = votes[action["id"]] - ballots[action["id"]]
        if not why and missing:
            (user, decision), _ = missing.most_common(1)[0]
            why = f"{user}'s {decision} vote has no vote record"
        if why:
            report.fail(
                "audit_matches_action",
                f"action {action['id']} ({action['tool']}, {action['status']}): "
                f"{why}; records {dict(got)}",
            )


def _audit_disagrees(action: dict[str, Any], got: Counter[str]) -> str:
    status = action["status"]
    if status == "expired" and got["expired"] != 1:
        return f"{got['expired']} expired record(s), 1 expected"
    if status != "expired" and got["expired"]:
        return "an expired record for an action that did not expire"
    if status == "denied" and got["denied"] + got["never"] != 1:
        return f"{got['denied'] + got['never']} denied/never record(s), 1 expected"
    if status in APPROVED:
        if action["requires_approval"] and not got["approved"]:
            return "no approved record"
        if not action["requires_approval"] and not (got["auto"] or got["approved"]):
            return "no auto record"
    return ""


def _triggered(data: Gathered, report: Report) -> None:
    """Each trigger delivery id posted at most one request, and a delivery answered
    202 with a request posted exactly that one; each schedule slot posted at most
    one request."""
    posted: dict[tuple[str, str], list[str]] = defaultdict(list)
    slots: dict[tuple[str, str], list[str]] = defaultdict(list)
    for request in data.requests:
        trigger = request.get("trigger") or {}
        if trigger.get("kind") == "webhook":
            posted[(trigger["id"], trigger["delivery"])].append(request["id"])
        elif trigger.get("kind") == "schedule":
            slots[(trigger["id"], trigger["slot"])].append(request["id"])
    for (trigger_id, delivery), ids in posted.items():
        report.checked["trigger_delivery_posts_at_most_once"] += 1
        if len(ids) > 1:
            report.fail(
                "trigger_delivery_posts_at_most_once",
                f"trigger {trigger_id} delivery {delivery} posted {len(ids)} "
                f"requests: {sorted(ids)}",
            )
    for hook in data.hooks:
        body = hook.get("body") or {}
        if hook["status"] not in (200, 202) or not body.get("request"):
            continue
        report.checked["trigger_delivery_posts_at_most_once"] += 1
        ids = posted.get((hook["trigger"], hook["delivery"]), [])
        if ids != [body["request"]]:
            report.fail(
                "trigger_delivery_posts_at_most_once",
                f"trigger {hook['trigger']} delivery {hook['delivery']} was answered "
                f"{hook['status']} with request {body['request']}, but posted "
                f"{sorted(ids)}",
            )
    for (schedule_id, slot), ids in slots.items():
        report.checked["schedule_slot_posts_at_most_once"] += 1
        if len(ids) > 1:
            report.fail(
                "schedule_slot_posts_at_most_once",
                f"schedule {schedule_id} slot {slot} posted {len(ids)} requests: "
                f"{sorted(ids)}",
            )


def _grants(data: Gathered, report: Report) -> None:
    """An action matched by a grant (its copied rule is the grant's) was proposed
    before the grant expired: an expired grant lets nothing run. The rule is
    resolved just before the action is stored: GRANT_SLACK seconds between."""
    grants = {g["id"]: g for g in data.grants}
    for action in data.actions:
        grant = grants.get(action.get("rule_id") or "")
        if grant is None:
            continue
        report.checked["grant_matches_only_until_expiry"] += 1
        late = datetime.fromisoformat(action["created"]) - datetime.fromisoformat(
            grant["expires_at"]
        )
        if late.total_seconds() > GRANT_SLACK:
            report.fail(
                "grant_matches_only_until_expiry",
                f"action {action['id']} ({action['tool']}, {action['status']}) was "
                f"created at {action['created']} under grant {grant['id']}, which "
                f"expired at {grant['expires_at']}",
            )
