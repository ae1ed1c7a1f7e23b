// Approval policies on the room page (static/js/approvals.js): who gets the vote
// and retract buttons, votes and times in words, rules in words and the rule form's
// body. Run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  describeRule,
  duration,
  isWaiting,
  mayRetract,
  mayVote,
  ruleFromForm,
  untilText,
  voteSummary,
  waitingFor,
} from "../../static/js/approvals.js";

const NOW = Date.parse("2030-01-01T12:00:00Z");
// The viewer carries no role: what a role or a permission allows is the server's to
// say, in each action's `eligible` list (chat/eligibility.py).
const alice = { username: "alice" };
const bob = { username: "bob" };
const sam = { username: "sam" }; // chat.decide_action, no room role

function pending(fields) {
  return {
    status: "pending", approvals_required: 1, approvals: [], approvers: null,
    requester_may_approve: true, eligible: ["alice", "carol"], ...fields,
  };
}

function approved(fields) {
  return {
    status: "approved", approvals_required: 1, approvals: [{ username: "alice", at: "" }],
    approvers: null, requester_may_approve: true, eligible: ["alice", "carol"],
    runs_at: new Date(NOW + 12_000).toISOString(), ...fields,
  };
}

test("vote buttons go to whoever the server lists as eligible, and no one else", () => {
  assert.equal(mayVote(pending(), alice), true);
  assert.equal(mayVote(pending(), bob), false);
  // Whatever the rule's shape: the list decides, not the viewer's role.
  assert.equal(mayVote(pending({ eligible: ["bob"] }), bob), true);
  assert.equal(mayVote(pending({ approvers: ["carol"], eligible: ["bob"] }), bob), true);
  assert.equal(mayVote(pending({ eligible: ["sam"] }), sam), true);
  assert.equal(mayVote(pending({ eligible: ["carol"] }), sam), false);
});

test("a room role or permission the page knows of does not add buttons", () => {
  // The page once fell back to the viewer's approver role or chat.decide_action.
  const decider = { username: "sam", canDecide: true };
  assert.equal(mayVote(pending({ eligible: ["carol"] }), decider), false);
  assert.equal(mayVote(pending({ eligible: [] }), decider), false);
  assert.equal(mayRetract(approved({ eligible: ["carol"] }), decider, NOW), false);
});

test("a listed approver who was removed or demoted loses the buttons with the next event", () => {
  const before = pending({ approvals_required: 2, eligible: ["alice", "carol"] });
  assert.equal(mayVote(before, alice), true);
  const after = { ...before, eligible: ["carol"] }; // the action event after removal
  assert.equal(mayVote(after, alice), false);
});

test("an approver who voted already gets no buttons, even if still listed", () => {
  const voted = pending({ eligible: ["alice", "carol"], approvals: [{ username: "alice", at: "" }] });
  assert.equal(mayVote(voted, alice), false);
  assert.equal(mayVote(voted, { username: "carol" }), true);
});

test("no list, or no viewer: no buttons", () => {
  assert.equal(mayVote(pending({ eligible: undefined }), alice), false);
  assert.equal(mayVote(pending(), { username: "" }), false);
  assert.equal(mayVote(pending(), null), false);
});

test("nobody votes on an action that is not pending", () => {
  assert.equal(mayVote(approved(), alice), false);
  assert.equal(mayVote(pending({ status: "denied" }), alice), false);
});

test("retract: whoever the server lists, while the delay runs", () => {
  assert.equal(mayRetract(approved(), alice, NOW), true);
  assert.equal(mayRetract(approved(), bob, NOW), false);
  assert.equal(mayRetract(approved({ eligible: ["bob"] }), bob, NOW), true);
  assert.equal(mayRetract(approved({ eligible: [] }), alice, NOW), false);
  assert.equal(mayRetract(approved(), alice, NOW + 12_000), false);
  assert.equal(mayRetract(approved({ runs_at: null }), alice, NOW), false);
  assert.equal(isWaiting(approved(), NOW + 11_999), true);
});

test("the tally names who approved", () => {
  assert.equal(voteSummary(pending({ approvals_required: 2 })), "0 of 2 approvals");
  assert.equal(
    voteSummary(pending({ approvals_required: 2, approvals: [{ username: "bob", at: "" }] })),
    "1 of 2 approvals: bob",
  );
  assert.equal(waitingFor(pending()), "Waiting for: alice, carol");
  assert.equal(waitingFor(pending({ eligible: [] })), null);
  assert.equal(waitingFor(approved()), null);
});

test("times to come, rounded up, and none once past", () => {
  assert.equal(untilText(new Date(NOW + 11_200).toISOString(), NOW), "in 12 s");
  assert.equal(untilText(new Date(NOW + 23 * 3600_000).toISOString(), NOW), "in 23 h");
  assert.equal(untilText(new Date(NOW).toISOString(), NOW), null);
  assert.equal(untilText("not a time", NOW), null);
  assert.equal(duration(90), "2 min");
  assert.equal(duration(3 * 86400), "3 days");
});

test("rules in words", () => {
  assert.equal(
    describeRule({
      tool: "delete_issue", arguments: {}, mode: "ask", approvals_required: 2,
      approvers: [], requester_may_approve: false, timeout: null, delay: 30,
    }),
    "delete_issue asks for approval; 2 approvals from the room's approvers; "
      + "not by the requester; starts 30 s after approval (may be retracted).",
  );
  assert.equal(
    describeRule({ tool: "*", arguments: { team: "ENG" }, mode: "never" }),
    'Any tool with team = "ENG" never runs.',
  );
  assert.equal(
    describeRule({ tool: "get_issue", mode: "ask", approvals_required: 1, approvers: ["carol"], timeout: 3600 }),
    "get_issue asks for approval; 1 approval from carol; expires after 1 h.",
  );
});

const FORM = {
  tool: "delete_issue", mode: "ask", approvalsRequired: "2", requesterMayApprove: false,
  approvers: " carol, dave ,carol,", delay: "30", timeout: "", arguments: "",
};

test("the rule form becomes the POST body", () => {
  assert.deepEqual(ruleFromForm(FORM), {
    body: {
      tool: "delete_issue", mode: "ask", approvals_required: 2,
      requester_may_approve: false, delay: 30, approvers: ["carol", "dave"],
    },
  });
  assert.deepEqual(ruleFromForm({ ...FORM, mode: "auto", arguments: '{"id": "ENG-3"}' }), {
    body: { tool: "delete_issue", mode: "auto", arguments: { id: "ENG-3" } },
  });
  assert.equal(ruleFromForm({ ...FORM, timeout: "600" }).body.timeout, 600);
});

test("the rule form says what is wrong", () => {
  assert.match(ruleFromForm({ ...FORM, approvalsRequired: "0" }).error, /Approvals required/);
  assert.match(ruleFromForm({ ...FORM, delay: "-1" }).error, /Delay/);
  assert.match(ruleFromForm({ ...FORM, timeout: "1.5" }).error, /Timeout/);
  assert.match(ruleFromForm({ ...FORM, arguments: "{" }).error, /not valid JSON/);
  assert.match(ruleFromForm({ ...FORM, arguments: "[1]" }).error, /JSON object/);
  assert.match(ruleFromForm({ ...FORM, tool: "" }).error, /Choose a tool/);
});
