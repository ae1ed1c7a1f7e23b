/*
 * Action cards: what the agent wants to do, its preview and arguments, the votes
 * and who may still vote, the decision and the outcome; for those who may vote,
 * Approve, Deny (with a reason) and Edit (approve with edited arguments) while it
 * is pending, "Approve and allow for 1 hour" (a grant) where its rule allows one,
 * and Retract while an approval waits out its rule's delay; its escalation, live.
 */

import {
  isWaiting, mayRetract, mayVote, untilText, voteSummary, waitingFor,
} from "./approvals.js";
import { button, cssToken, el, keepingScroll, pretty, timeElement, timeOf } from "./dom.js";
import { GRANT_SECONDS, clockUntil, escalationLine, mayGrant } from "./governance.js";

export const ACTION_LABELS = {
  pending: "Pending approval",
  approved: "Approved",
  executing: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  denied: "Denied",
  expired: "Expired",
  cancelled: "Cancelled",
};
const PREVIEW_LABELS = {
  identifier: "Issue",
  title: "Title",
  state: "State",
  creates: "Creates",
  team: "Team",
  missing: "Not found",
  unavailable: "Preview unavailable",
  repository: "Repository",
  labels: "Labels",
};

/* What a card calls the preview: it was read when the agent proposed the call, so
   once the call ran (or could have) it shows how things were before. */
export function previewLabel(status) {
  if (["executing", "succeeded", "failed"].includes(status)) return "Before";
  if (["denied", "expired", "cancelled"].includes(status)) return "When proposed";
  return "Preview";
}

/* A preview field's value as text: lists as "a, b" and an empty one as "none". */
export function previewValue(key, value) {
  if (key === "missing") return "This issue does not exist (any more).";
  if (Array.isArray(value)) {
    return value.length ? value.map((item) => previewValue("", item)).join(", ") : "none";
  }
  if (value && typeof value === "object") return value.name || JSON.stringify(value);
  if (value === "") return "none";
  return String(value);
}

/* A field name nobody labelled, as words: "updated_at" -> "Updated at". */
export function fieldLabel(key) {
  if (PREVIEW_LABELS[key]) return PREVIEW_LABELS[key];
  const words = String(key).replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// Countdowns and "expires in" lines are redrawn this often.
const TICK_MS = 1000;

/* `send(frame, {url, body})` resolves to false when the decision was refused. */
export function createActions({ timeline, config, send }) {
  const actions = new Map(); // id -> {data, el, json, ui}
  const viewer = { username: config.username };
  let ticker = null;
  let targets = new Map(); // tool name -> the argument naming its target (GET /api/tools)

  function upsertAction(data) {
    const json = JSON.stringify(data);
    const known = actions.get(data.id);
    if (known && known.json === json) return; // nothing new: keep any open form
    const entry = known || { ui: idleUi() };
    entry.data = data;
    entry.json = json;
    if (data.status !== "pending") entry.ui = idleUi();
    else entry.ui.busy = false;
    const card = renderAction(entry);
    const hadFocus = Boolean(entry.el && entry.el.contains(document.activeElement));
    keepingScroll(() => {
      if (entry.el) entry.el.replaceWith(card);
      entry.el = card;
      timeline.place(card, timeOf(data.created));
    });
    if (hadFocus) keepFocus(card);
    actions.set(data.id, entry);
    startTicking();
  }

  /* `refusal`: why the server refused this viewer's last decision on the card. */
  function idleUi() {
    return { mode: "idle", busy: false, reason: "", args: null, refusal: "" };
  }

  /* One timer for every card: it runs while some card shows a time to come. */
  function startTicking() {
    if (ticker !== null || !document.querySelector("[data-until]")) return;
    ticker = window.setInterval(tick, TICK_MS);
  }

  function tick() {
    const now = Date.now();
    for (const entry of actions.values()) {
      // An approval whose delay ran out takes no more retracts: redraw without them.
      if (entry.el.querySelector("[data-until='runs']") && !isWaiting(entry.data, now)) {
        rerenderAction(entry);
      }
    }
    const pending = document.querySelectorAll("[data-until]");
    pending.forEach((node) => showUntil(node, now));
    if (!pending.length) {
      window.clearInterval(ticker);
      ticker = null;
    }
  }

  /* "runs in 12 s" / "expires in 23 h"; past its time the line says so and stops. */
  function showUntil(node, now) {
    const clock = node.dataset.format === "clock";
    const left = clock ? clockUntil(node.dataset.at, now) : untilText(node.dataset.at, now);
    if (left) {
      node.textContent = `${node.dataset.verb} ${clock ? "in " : ""}${left}`;
      return;
    }
    node.textContent = node.dataset.past;
    delete node.dataset.until;
  }

  function untilLine(className, kind, iso, verb, past) {
    const node = el("span", className);
    node.dataset.until = kind;
    node.dataset.at = iso;
    node.dataset.verb = verb;
    node.dataset.past = past;
    node.title = new Date(iso).toLocaleString();
    showUntil(node, Date.now());
    return node;
  }

  function rerenderAction(entry, focusSelector) {
    const card = renderAction(entry);
    const hadFocus = entry.el.contains(document.activeElement);
    card.dataset.sort = entry.el.dataset.sort;
    entry.el.replaceWith(card);
    entry.el = card;
    const target = focusSelector ? card.querySelector(focusSelector) : null;
    if (target) target.focus();
    else if (hadFocus) keepFocus(card);
  }

  /* A card redrawn while focus was in it (a keyboard user just pressed one of
     its buttons): focus goes to its first enabled control, such as Retract after
     an approval, or else to the card, so the reader is not thrown to the top. */
  function keepFocus(card) {
    const control = card.querySelector(
      ".action__controls button:not(:disabled), .action__controls input");
    (control || card.querySelector(".action__card")).focus();
  }

  function renderAction(entry) {
    const data = entry.data;
    const status = cssToken(data.status);
    const item = el("li", `action action--${status}`);
    item.dataset.actionId = data.id;
    item.dataset.status = data.status;
    const card = el("article", "action__card");
    card.tabIndex = -1;
    card.setAttribute("aria-label", `Action ${data.tool}: ${ACTION_LABELS[data.status] || data.status}`);
    card.append(actionHeader(data));
    const preview = actionPreview(data);
    if (preview) card.append(preview);
    card.append(actionArguments(data));
    const votes = actionVotes(data);
    if (votes) card.append(votes);
    const escalation = actionEscalation(data);
    if (escalation) card.append(escalation);
    const decision = actionDecision(data);
    if (decision) card.append(decision);
    const outcome = actionOutcome(data);
    if (outcome) card.append(outcome);
    if (mayVote(data, viewer)) card.append(actionControls(entry));
    else if (mayRetract(data, viewer, Date.now())) card.append(retractControls(entry));
    item.append(card);
    return item;
  }

  /* The votes so far, who may still vote, when it expires or starts, and any
     approval that was retracted. */
  function actionVotes(data) {
    const pending = data.status === "pending";
    const waiting = isWaiting(data, Date.now());
    const retractions = Array.isArray(data.retractions) ? data.retractions : [];
    const multi = Number.isInteger(data.approvals_required) && data.approvals_required > 1;
    if (!pending && !waiting && !retractions.length && !(multi && data.approvals?.length)) {
      return null;
    }
    const box = el("div", "action__votes");
    if (pending || waiting || multi) box.append(el("p", "action__tally", voteSummary(data)));
    const waitingLine = waitingFor(data);
    if (waitingLine) box.append(el("p", "action__waiting", waitingLine));
    else if (pending && Array.isArray(data.eligible)) {
      box.append(el("p", "action__waiting muted", "No one left who may vote on it."));
    }
    if (pending && data.expires_at && timeOf(data.expires_at) !== null) {
      box.append(untilLine("action__expires muted", "expires", data.expires_at,
                           "Expires", "Expiring…"));
    }
    if (waiting) {
      box.append(untilLine("action__countdown", "runs", data.runs_at, "Runs", "Starting…"));
    }
    for (const retraction of retractions) {
      const line = el("p", "action__retraction muted");
      line.append(document.createTextNode(`Approval retracted by ${retraction.username || "someone"}`));
      if (retraction.at) line.append(document.createTextNode(" · "), timeElement(retraction.at));
      if (retraction.reason) line.append(document.createTextNode(`: ${retraction.reason}`));
      box.append(line);
    }
    return box;
  }

  /* "Escalated to carol", or "Escalates to carol in 0:59" counting down. */
  function actionEscalation(data) {
    const line = escalationLine(data);
    if (!line) return null;
    if (line.text) return el("p", "action__escalation action__escalation--done", line.text);
    const node = el("span", "action__escalation muted");
    node.dataset.until = "escalates";
    node.dataset.format = "clock";
    node.dataset.at = line.at;
    node.dataset.verb = line.verb;
    node.dataset.past = line.past;
    node.title = new Date(line.at).toLocaleString();
    showUntil(node, Date.now());
    const box = el("p", "action__escalation-box");
    box.append(node);
    return box;
  }

  function actionHeader(data) {
    const header = el("header", "action__head");
    const title = el("div", "action__title");
    title.append(el("span", "action__kicker", data.requires_approval ? "Action" : "Tool call"));
    title.append(el("code", "action__tool", data.tool));
    if (data.pack) title.append(el("span", "action__pack", data.pack));
    const badge = el("span", `badge badge--${cssToken(data.status)}`,
                     ACTION_LABELS[data.status] || data.status);
    badge.dataset.status = data.status;
    header.append(title, badge);
    return header;
  }

  function actionPreview(data) {
    const preview = data.preview;
    if (!preview || typeof preview !== "object") return null;
    const list = el("dl", "kv action__preview");
    // Known fields first, in reading order (jsonb does not keep key order).
    const known = Object.keys(PREVIEW_LABELS).filter((key) => key in preview);
    const others = Object.keys(preview).filter((key) => !(key in PREVIEW_LABELS));
    for (const key of [...known, ...others]) {
      const value = preview[key];
      if (value === null || value === undefined || value === false) continue;
      list.append(el("dt", null, fieldLabel(key)));
      list.append(el("dd", null, previewValue(key, value)));
    }
    if (!list.children.length) return null;
    const box = el("div", "action__preview-box");
    // The preview was read for the model's call, not for the edited one.
    const label = data.proposed_arguments ? "Proposed target" : previewLabel(data.status);
    box.append(el("p", "label", label), list);
    return box;
  }

  function actionArguments(data) {
    const box = el("div", "action__args");
    if (data.proposed_arguments) {
      // An approver edited the call: show what the model asked and what ran.
      box.classList.add("action__args--edited");
      const who = data.decided_by ? ` by ${data.decided_by}` : "";
      box.append(el("p", "label", `Arguments edited${who}`));
      const diff = el("div", "diff");
      const before = el("div", "diff__side diff__side--before");
      before.append(el("span", "diff__label", "Proposed"), el("pre", "json", pretty(data.proposed_arguments)));
      const after = el("div", "diff__side diff__side--after");
      after.append(el("span", "diff__label", "Approved"), el("pre", "json", pretty(data.arguments)));
      diff.append(before, after);
      box.append(diff);
    } else {
      box.append(el("p", "label", "Arguments"), el("pre", "json", pretty(data.arguments)));
    }
    return box;
  }

  function actionDecision(data) {
    if (!data.decided_by && !data.decided_at) return null;
    const line = el("p", "action__decision");
    const byPolicy = data.decided_via === "policy";
    const verb = byPolicy ? "Denied by the room's policy"
      : data.status === "expired" ? "Expired"
      : data.status === "denied" ? "Denied" : "Approved";
    line.append(el("span", "action__verb", data.decided_by ? `${verb} by ` : verb));
    if (data.decided_by) line.append(el("strong", "action__who", data.decided_by));
    if (data.decided_at) {
      line.append(document.createTextNode(" · "));
      line.append(timeElement(data.decided_at));
    }
    if (data.decided_via && !["room", "system", "policy"].includes(data.decided_via)) {
      line.append(el("span", "muted", ` via ${data.decided_via}`));
    }
    const box = el("div", "action__decision-box");
    box.append(line);
    if (data.reason) {
      const reason = el("p", "action__reason");
      reason.append(el("span", "label", "Reason"), el("span", "action__reason-text", data.reason));
      box.append(reason);
    }
    return box;
  }

  function actionOutcome(data) {
    if (data.status === "failed" && data.error) {
      return el("p", "action__error", data.error);
    }
    if (data.status !== "succeeded" || data.result === null || data.result === undefined) {
      return null;
    }
    const box = el("div", "action__outcome");
    const summary = resultSummary(data.result);
    if (summary) box.append(el("p", "label", "Result"), summary);
    const details = el("details", "action__result");
    details.append(el("summary", null, summary ? "Raw result" : "Result"),
                   el("pre", "json", pretty(data.result)));
    box.append(details);
    return box;
  }

  /* The issue (or issues) a result is about, as text rows; null for anything else. */
  function resultSummary(result) {
    if (!result || typeof result !== "object") return null;
    if (Array.isArray(result.issues)) return issueList(result.issues);
    const issue = result.issue && typeof result.issue === "object" ? result.issue : result;
    if (!issue.identifier && !issue.title) return null;
    const list = el("dl", "kv action__issue");
    for (const key of ["identifier", "title", "state", "description"]) {
      if (issue[key] === null || issue[key] === undefined || issue[key] === "") continue;
      const value = previewValue(key, issue[key]);
      list.append(el("dt", null, PREVIEW_LABELS[key] || "Description"));
      list.append(el("dd", key === "description" ? "clamp" : null, value));
    }
    return list;
  }

  function issueList(issues) {
    const list = el("ul", "issue-list");
    for (const issue of issues.slice(0, 20)) {
      const row = el("li");
      row.append(el("strong", null, issue.identifier || "?"), document.createTextNode(" "));
      row.append(document.createTextNode(issue.title || ""));
      if (issue.state) row.append(el("span", "muted", ` · ${previewValue("state", issue.state)}`));
      list.append(row);
    }
    if (!issues.length) list.append(el("li", "muted", "No issues found."));
    return list;
  }

  function actionControls(entry) {
    const ui = entry.ui;
    const box = el("div", "action__controls");
    if (ui.mode === "deny") box.append(denyForm(entry));
    else if (ui.mode === "edit") box.append(editForm(entry));
    else box.append(decisionButtons(entry));
    if (ui.refusal && !ui.busy) box.append(refusalLine(ui.refusal));
    if (ui.busy) {
      box.querySelectorAll("button, input, textarea").forEach((node) => { node.disabled = true; });
      box.append(el("p", "muted action__busy", "Sending decision…"));
    }
    return box;
  }

  /* Why the server refused this viewer's last decision: on the card it was
     about, beside the form still holding an edit. */
  function refusalLine(text) {
    const line = el("p", "field-error action__refusal", text);
    line.setAttribute("role", "alert");
    return line;
  }

  function retractControls(entry) {
    const box = el("div", "action__controls");
    const retract = button("Retract", "btn--deny", () => retractApproval(entry));
    retract.title = "Put it back to pending before it starts; its votes are cleared.";
    const row = el("div", "btn-row");
    row.append(retract);
    box.append(row);
    if (entry.ui.refusal && !entry.ui.busy) box.append(refusalLine(entry.ui.refusal));
    if (entry.ui.busy) {
      retract.disabled = true;
      box.append(el("p", "muted action__busy", "Retracting…"));
    }
    return box;
  }

  function retractApproval(entry) {
    entry.ui.busy = true;
    entry.ui.refusal = "";
    rerenderAction(entry);
    const frame = { type: "retract", action: entry.data.id };
    const url = `/api/actions/${encodeURIComponent(entry.data.id)}/retract`;
    send(frame, { url, body: {} }).then((ok) => {
      if (!ok) releaseBusy();
    });
  }

  function decisionButtons(entry) {
    const row = el("div", "btn-row");
    row.append(button("Approve", "btn--approve", () => decide(entry, "approve")));
    const target = targets.get(entry.data.tool);
    if (mayGrant(entry.data, viewer, { target, canDecide: config.canDecide })) {
      const grant = button("Approve and allow for 1 hour", "btn--grant", () => (
        decide(entry, "approve", { grant: { seconds: GRANT_SECONDS } })));
      grant.title = `Approve, and let ${entry.data.tool} run without approval on `
        + `${target} ${JSON.stringify(entry.data.arguments[target])} for an hour.`;
      row.append(grant);
    }
    row.append(
      button("Deny", "btn--deny", () => switchMode(entry, "deny", "input")),
      button("Edit", "btn--secondary", () => switchMode(entry, "edit", "textarea")),
    );
    return row;
  }

  function switchMode(entry, mode, focusSelector) {
    entry.ui.mode = mode;
    entry.ui.refusal = "";
    if (mode === "edit" && entry.ui.args === null) entry.ui.args = pretty(entry.data.arguments);
    rerenderAction(entry, focusSelector);
  }

  function denyForm(entry) {
    const form = el("form", "inline-panel");
    const id = `reason-${entry.data.id}`;
    const label = el("label", "label", "Why deny? The agent is told this reason.");
    label.htmlFor = id;
    const input = el("input");
    input.id = id;
    input.name = "reason";
    input.maxLength = 2000;
    input.placeholder = "Reason (optional)";
    input.value = entry.ui.reason;
    input.addEventListener("input", () => { entry.ui.reason = input.value; });
    const confirm = el("button", "btn btn--deny", "Confirm deny");
    confirm.type = "submit";
    const row = el("div", "btn-row");
    row.append(confirm, button("Back", "btn--quiet", () => switchMode(entry, "idle")));
    form.append(label, input, row);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      decide(entry, "deny", { reason: input.value.trim() });
    });
    return form;
  }

  function editForm(entry) {
    const form = el("form", "inline-panel");
    const id = `args-${entry.data.id}`;
    const label = el("label", "label", "Arguments (JSON)");
    label.htmlFor = id;
    const area = el("textarea", "code-input");
    area.id = id;
    area.name = "arguments";
    area.spellcheck = false;
    area.rows = Math.min(12, Math.max(3, entry.ui.args.split("\n").length + 1));
    area.value = entry.ui.args;
    area.addEventListener("input", () => { entry.ui.args = area.value; });
    const problem = el("p", "field-error");
    problem.hidden = true;
    const save = el("button", "btn btn--approve", "Approve with edits");
    save.type = "submit";
    const row = el("div", "btn-row");
    row.append(save, button("Back", "btn--quiet", () => switchMode(entry, "idle")));
    form.append(label, area, problem, row);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const parsed = parseArguments(area.value);
      if (typeof parsed === "string") {
        problem.textContent = parsed;
        problem.hidden = false;
        area.focus();
        return;
      }
      decide(entry, "approve", { arguments: parsed });
    });
    return form;
  }

  /* The edited arguments as an object, or a message saying what is wrong. */
  function parseArguments(text) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return `That is not valid JSON: ${error.message}`;
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      return "The arguments must be a JSON object, like {\"id\": \"ENG-3\"}.";
    }
    return value;
  }

  function decide(entry, decision, extra) {
    entry.ui.busy = true;
    entry.ui.refusal = "";
    rerenderAction(entry);
    const frame = { type: "decide", action: entry.data.id, decision, ...(extra || {}) };
    const url = `/api/actions/${encodeURIComponent(entry.data.id)}/${decision}`;
    send(frame, { url, body: extra || {} }).then((ok) => {
      if (!ok) releaseBusy();
    });
  }

  /* The server refused the decision or retract a card was waiting on (an edit
     onto a target the policy forbids, someone else was first, bad arguments):
     its reason is shown on that card, whose buttons and form come back. False
     when no card was waiting. */
  function refused(detail) {
    let shown = false;
    for (const entry of actions.values()) {
      if (!entry.ui.busy) continue;
      entry.ui.busy = false;
      entry.ui.refusal = detail;
      rerenderAction(entry);
      shown = true;
    }
    return shown;
  }

  /* A refused decision or retract frees the buttons. */
  function releaseBusy() {
    for (const entry of actions.values()) {
      if (entry.ui.busy) {
        entry.ui.busy = false;
        rerenderAction(entry);
      }
    }
  }

  /* The tools' targets ({name, target} from GET /api/tools) arrived: pending
     cards may now offer a grant. */
  function setTargets(tools) {
    targets = new Map(tools.filter((tool) => tool && typeof tool.target === "string")
      .map((tool) => [tool.name, tool.target]));
    for (const entry of actions.values()) {
      if (entry.data.status === "pending" && entry.ui.mode === "idle" && !entry.ui.busy) {
        rerenderAction(entry);
      }
    }
  }

  return { upsertAction, releaseBusy, refused, setTargets };
}
