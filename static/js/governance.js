/*
 * Governance without the DOM (PROTOCOL.md, "Governance"): which pending actions of a
 * request the viewer may decide at once, what a decide-all refused, whether a card
 * offers a grant, countdowns as m:ss, and a rule's grant, expiry and escalation in
 * words. The server decides every vote; these only choose what a page shows.
 * Pure functions, so tests/js run them under node.
 */

import { mayVote } from "./approvals.js";

// "Approve and allow for 1 hour": the grant the room page offers.
export const GRANT_SECONDS = 3600;

/* Seconds as "m:ss", minutes unbounded ("60:00" for an hour), never negative. */
export function clock(seconds) {
  const whole = Math.max(0, Math.ceil(seconds));
  const minutes = Math.floor(whole / 60);
  return `${minutes}:${String(whole % 60).padStart(2, "0")}`;
}

/* The m:ss left from `now` (ms) to `iso`, rounded up so it never shows 0:00
   before its time; null when `iso` is not a time or has passed. */
export function clockUntil(iso, now) {
  const at = Date.parse(iso || "");
  if (Number.isNaN(at) || at <= now) return null;
  return clock((at - now) / 1000);
}

/* The pending actions (of one request) the viewer may still vote on. */
export function votable(actions, viewer) {
  return actions.filter((action) => mayVote(action, viewer));
}

/* Whether a request offers Approve all / Deny all: two or more actions the viewer
   may still vote on (one has its own buttons). */
export function offersDecideAll(actions, viewer) {
  return votable(actions, viewer).length >= 2;
}

/* What a decide-all did ({decision, actions: [ids], refused: [{status}]}) in one
   sentence: "Approved 2 actions. Not yours to decide: 1." */
export function decidedAllText(result) {
  const done = Array.isArray(result.actions) ? result.actions.length : 0;
  const refused = Array.isArray(result.refused) ? result.refused : [];
  const verb = result.decision === "deny" ? "Denied" : "Approved";
  const parts = [`${verb} ${done} ${done === 1 ? "action" : "actions"}.`];
  const notYours = refused.filter((item) => item.status === 403).length;
  const voted = refused.filter((item) => item.status === 409).length;
  const other = refused.length - notYours - voted;
  if (notYours) parts.push(`Not yours to decide: ${notYours}.`);
  if (voted) parts.push(`Already voted: ${voted}.`);
  if (other) parts.push(`Refused: ${other}.`);
  return parts.join(" ");
}

/* Whether a pending action's card offers "Approve and allow for 1 hour": the
   viewer may vote and may change the policy (`canDecide`), the copied rule asks
   one approval, allows the requester's and has no delay, and the tool names its
   target (`target`, from GET /api/tools) in the call's arguments. The server
   checks it all again (403 or 400, nothing recorded). */
export function mayGrant(action, viewer, { target, canDecide }) {
  if (!canDecide || !mayVote(action, viewer)) return false;
  if (typeof target !== "string" || !target) return false;
  const args = action.arguments && typeof action.arguments === "object" ? action.arguments : {};
  if (!Object.hasOwn(args, target)) return false;
  const rule = action.rule && typeof action.rule === "object" ? action.rule : {};
  const required = Number.isInteger(action.approvals_required) ? action.approvals_required : 1;
  return required <= 1 && action.requester_may_approve !== false && !(rule.delay > 0);
}

function names(list) {
  return Array.isArray(list) && list.length ? list.join(", ") : null;
}

/* An action card's escalation line: {text} once escalated ("Escalated to carol"),
   {verb, at, past} while it will ("Escalates to carol" + " in 0:59", counting down
   to `at`; `past` once due, until the sweep's event), else null. */
export function escalationLine(action) {
  const who = names(action.escalate_to);
  if (!who) return null;
  if (action.escalated_at) return { text: `Escalated to ${who}` };
  if (action.status !== "pending" || !action.escalates_at) return null;
  return { verb: `Escalates to ${who}`, at: action.escalates_at, past: `Escalating to ${who}…` };
}

/* A rule's notes besides its words: who granted it, when it expires, whom it
   escalates to. `expires`: {at} while it runs, or {expired: true}. */
export function ruleNotes(rule, now) {
  const notes = {};
  if (rule.source_action) notes.granted = `Granted by ${rule.created_by || "someone"}`;
  if (rule.expires_at) {
    const left = clockUntil(rule.expires_at, now);
    notes.expires = rule.expired || left === null ? { expired: true } : { at: rule.expires_at };
  }
  const who = names(rule.escalate_to);
  if (rule.mode === "ask" && rule.escalate_after && who) {
    notes.escalates = `Escalates to ${who} after ${rule.escalate_after} s`;
  }
  return notes;
}

/* The room's rules after a `policy` event ({change, rule}): the rule replaced
   (or added, in creation order), or removed when deleted. */
export function rulesAfter(rules, change) {
  if (!change || !change.rule || typeof change.rule.id !== "string") return rules;
  const rest = rules.filter((rule) => rule.id !== change.rule.id);
  if (change.change === "deleted") return rest;
  const known = rules.findIndex((rule) => rule.id === change.rule.id);
  if (known >= 0) {
    const next = [...rules];
    next[known] = change.rule;
    return next;
  }
  return [...rest, change.rule];
}
