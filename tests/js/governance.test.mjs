// Governance on the room page (static/js/governance.js): who sees Approve all / Deny
// all, what a decide-all refused in words, who is offered a grant, countdowns as
// m:ss, a rule's grant, expiry and escalation notes, and rules after `policy`
// events. Run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  clock,
  clockUntil,
  decidedAllText,
  escalationLine,
  mayGrant,
  offersDecideAll,
  ruleNotes,
  rulesAfter,
  votable,
} from "../../static/js/governance.js";

const NOW = Date.parse("2030-01-01T12:00:00Z");
const alice = { username: "alice" };
const later = (seconds) => new Date(NOW + seconds * 1000).toISOString();

function pending(fields) {
  return {
    id: "a1", status: "pending", tool: "add_comment", arguments: { id: "ENG-5", body: "x" },
    approvals_required: 1, approvals: [], requester_may_approve: true, rule: null,
    eligible: ["alice"], ...fields,
  };
}

test("clock is m:ss with minutes unbounded, rounded up and never negative", () => {
  assert.equal(clock(59.2), "1:00");
  assert.equal(clock(61), "1:01");
  assert.equal(clock(3600), "60:00");
  assert.equal(clock(-3), "0:00");
  assert.equal(clockUntil(later(42), NOW), "0:42");
  assert.equal(clockUntil(later(0), NOW), null);
  assert.equal(clockUntil("not a time", NOW), null);
});

test("decide-all is offered for two or more actions the viewer may still vote on", () => {
  const mine = pending({ id: "a1" });
  const also = pending({ id: "a2" });
  const voted = pending({ id: "a3", approvals: [{ username: "alice", at: "" }] });
  const carols = pending({ id: "a4", eligible: ["carol"] });
  const done = pending({ id: "a5", status: "approved" });
  assert.deepEqual(votable([mine, voted, carols, done], alice), [mine]);
  assert.equal(offersDecideAll([mine, voted, carols, done], alice), false);
  assert.equal(offersDecideAll([mine, also, carols], alice), true);
});

test("a decide-all's result says what was refused, and why", () => {
  assert.equal(
    decidedAllText({
      decision: "approve", actions: ["a1", "a2"],
      refused: [{ action: "a3", status: 403, detail: "" }],
    }),
    "Approved 2 actions. Not yours to decide: 1.",
  );
  assert.equal(
    decidedAllText({
      decision: "deny", actions: ["a1"],
      refused: [{ status: 409 }, { status: 403 }, { status: 403 }],
    }),
    "Denied 1 action. Not yours to decide: 2. Already voted: 1.",
  );
  assert.equal(decidedAllText({ decision: "approve", actions: [], refused: [] }),
               "Approved 0 actions.");
});

test("a grant is offered only where it lowers no bar", () => {
  const options = { target: "id", canDecide: true };
  assert.equal(mayGrant(pending(), alice, options), true);
  assert.equal(mayGrant(pending(), alice, { ...options, canDecide: false }), false);
  assert.equal(mayGrant(pending(), alice, { ...options, target: undefined }), false);
  assert.equal(mayGrant(pending({ arguments: { title: "x" } }), alice, options), false);
  assert.equal(mayGrant(pending({ approvals_required: 2 }), alice, options), false);
  assert.equal(mayGrant(pending({ requester_may_approve: false }), alice, options), false);
  assert.equal(mayGrant(pending({ rule: { delay: 15 } }), alice, options), false);
  assert.equal(mayGrant(pending({ rule: { delay: 0 } }), alice, options), true);
  assert.equal(mayGrant(pending({ eligible: ["carol"] }), alice, options), false);
  assert.equal(mayGrant(pending({ status: "approved" }), alice, options), false);
});

test("an action's escalation: done, to come, or none", () => {
  assert.deepEqual(
    escalationLine(pending({ escalate_to: ["carol"], escalated_at: later(-5) })),
    { text: "Escalated to carol" },
  );
  assert.deepEqual(
    escalationLine(pending({ escalate_to: ["carol", "dave"], escalates_at: later(60) })),
    { verb: "Escalates to carol, dave", at: later(60), past: "Escalating to carol, dave…" },
  );
  assert.equal(escalationLine(pending({ escalate_to: null })), null);
  assert.equal(
    escalationLine(pending({ status: "approved", escalate_to: ["carol"], escalates_at: later(60) })),
    null,
  );
});

test("a rule's notes: granted by, expires or expired, escalates", () => {
  const grant = {
    id: "r1", tool: "add_comment", mode: "auto", arguments: { id: "ENG-5" },
    source_action: "a1", created_by: "alice", expires_at: later(3600), expired: false,
  };
  assert.deepEqual(ruleNotes(grant, NOW), {
    granted: "Granted by alice", expires: { at: later(3600) },
  });
  assert.deepEqual(ruleNotes({ ...grant, expired: true }, NOW).expires, { expired: true });
  assert.deepEqual(ruleNotes({ ...grant, expires_at: later(-1) }, NOW).expires, { expired: true });
  const escalating = {
    id: "r2", tool: "add_comment", mode: "ask", escalate_after: 60, escalate_to: ["carol"],
    source_action: null, expires_at: null,
  };
  assert.deepEqual(ruleNotes(escalating, NOW), { escalates: "Escalates to carol after 60 s" });
});

test("policy events replace, add and remove rules", () => {
  const one = { id: "r1", tool: "a" };
  const two = { id: "r2", tool: "b" };
  assert.deepEqual(rulesAfter([one], { change: "created", rule: two }), [one, two]);
  const changed = { id: "r1", tool: "c" };
  assert.deepEqual(rulesAfter([one, two], { change: "updated", rule: changed }), [changed, two]);
  assert.deepEqual(rulesAfter([one, two], { change: "deleted", rule: one }), [two]);
  assert.deepEqual(rulesAfter([one], { change: "expired", rule: { ...one, expired: true } }),
                   [{ ...one, expired: true }]);
  assert.deepEqual(rulesAfter([one], { change: "created" }), [one]);
});
