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
)


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
