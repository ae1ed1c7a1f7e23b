/*
 * Approval policies without the DOM: who may vote on an action card, its votes and
 * times in words, a policy rule in words, and the rule form's fields as the body
 * of POST /api/rooms/<slug>/policies (PROTOCOL.md, "Approval policies").
 * The server decides every vote; these only choose which buttons a page shows.
 * Pure functions, so tests/js run them under node.
 */

/* The server says who may act on an action now: `eligible` lists, on a pending
   action, who may still vote (less those who voted on its current arguments), and
   on an approval waiting out its delay, who may retract it (chat/eligibility.py).
   The page draws buttons from that list alone, never from roles of its own. */
function listed(action, viewer) {
  if (!viewer || !viewer.username || !Array.isArray(action.eligible)) return false;
  return action.eligible.includes(viewer.username);
}

function votedAlready(action, viewer) {
  return (action.approvals || []).some((vote) => vote.username === viewer.username);
}

/* Whether the viewer ({username}) may vote on a pending action now. */
export function mayVote(action, viewer) {
  if (!action || action.status !== "pending") return false;
  return listed(action, viewer) && !votedAlready(action, viewer);
}

/* Whether an approved action still waits out its delay at `now` (ms). */
export function isWaiting(action, now) {
  if (!action || action.status !== "approved") return false;
  const runsAt = Date.parse(action.runs_at || "");
  return !Number.isNaN(runsAt) && runsAt > now;
}

/* Whether the viewer may retract the approval: anyone the server lists, while the
   delay runs. */
export function mayRetract(action, viewer, now) {
  return isWaiting(action, now) && listed(action, viewer);
}

/* "1 of 2 approvals: bob" */
export function voteSummary(action) {
  const required = Number.isInteger(action.approvals_required) ? action.approvals_required : 1;
  const names = (action.approvals || []).map((vote) => vote.username);
  const count = `${names.length} of ${required} approvals`;
  return names.length ? `${count}: ${names.join(", ")}` : count;
}

/* "Waiting for: alice, carol", or null once no one is left to vote. */
export function waitingFor(action) {
  if (action.status !== "pending" || !Array.isArray(action.eligible)) return null;
  if (!action.eligible.length) return null;
  return `Waiting for: ${action.eligible.join(", ")}`;
}

/* A span of seconds in the largest unit that fits: "12 s", "5 min", "23 h", "3 days". */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

/* How far `iso` is from `now` (ms), rounded up so a countdown never shows 0 s
   before its time: "in 12 s"; null when `iso` is not a time or has passed. */
export function untilText(iso, now) {
  const at = Date.parse(iso || "");
  if (Number.isNaN(at) || at <= now) return null;
  return `in ${duration(Math.ceil((at - now) / 1000))}`;
}

const MODE_WORDS = {
  ask: "asks for approval",
  auto: "runs without approval",
  never: "never runs",
};

/* A rule ({tool, arguments, mode, ...}) in words, for every member of the room. */
export function describeRule(rule) {
  let target = rule.tool === "*" ? "Any tool" : rule.tool;
  const args = rule.arguments && typeof rule.arguments === "object" ? rule.arguments : {};
  const matches = Object.entries(args).map(([key, value]) => `${key} = ${JSON.stringify(value)}`);
  if (matches.length) target += ` with ${matches.join(", ")}`;
  const parts = [`${target} ${MODE_WORDS[rule.mode] || rule.mode}`];
  if (rule.mode === "ask") {
    const count = rule.approvals_required || 1;
    const names = Array.isArray(rule.approvers) && rule.approvers.length
      ? rule.approvers.join(", ") : "the room's approvers";
    parts.push(`${count} ${count === 1 ? "approval" : "approvals"} from ${names}`);
    if (rule.requester_may_approve === false) parts.push("not by the requester");
    if (rule.delay) parts.push(`starts ${duration(rule.delay)} after approval (may be retracted)`);
    if (rule.timeout) parts.push(`expires after ${duration(rule.timeout)}`);
  }
  return `${parts.join("; ")}.`;
}

function wholeNumber(text, name, { min, optional }) {
  const trimmed = String(text ?? "").trim();
  if (trimmed === "") return optional ? { value: null } : { error: `${name}: a number is needed.` };
  if (!/^\d+$/.test(trimmed) || Number(trimmed) < min) {
    return { error: `${name}: a whole number of at least ${min}.` };
  }
  return { value: Number(trimmed) };
}

/* The rule form's raw fields ({tool, mode, approvalsRequired, requesterMayApprove,
   delay, timeout, approvers, arguments}) as a POST body, or {error} saying what
   is wrong. The server checks it again (400 with its detail). */
export function ruleFromForm(fields) {
  const tool = String(fields.tool || "").trim();
  if (!tool) return { error: "Choose a tool, or any tool." };
  const mode = fields.mode || "ask";
  if (!Object.hasOwn(MODE_WORDS, mode)) return { error: "Mode: ask, auto or never." };
  const body = { tool, mode };
  const args = String(fields.arguments || "").trim();
  if (args) {
    let parsed;
    try {
      parsed = JSON.parse(args);
    } catch (error) {
      return { error: `Arguments: that is not valid JSON (${error.message}).` };
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      return { error: "Arguments: a JSON object, like {\"id\": \"ENG-3\"}." };
    }
    body.arguments = parsed;
  }
  if (mode !== "ask") return { body };
  const required = wholeNumber(fields.approvalsRequired, "Approvals required", { min: 1 });
  const delay = wholeNumber(fields.delay, "Delay", { min: 0, optional: true });
  const timeout = wholeNumber(fields.timeout, "Timeout", { min: 1, optional: true });
  for (const result of [required, delay, timeout]) if (result.error) return result;
  const approvers = String(fields.approvers || "").split(",")
    .map((name) => name.trim()).filter(Boolean);
  body.approvals_required = required.value;
  body.requester_may_approve = Boolean(fields.requesterMayApprove);
  body.delay = delay.value ?? 0;
  if (timeout.value !== null) body.timeout = timeout.value;
  if (approvers.length) body.approvers = [...new Set(approvers)];
  return { body };
}
