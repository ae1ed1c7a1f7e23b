/*
 * The room's approval policy panel: its rules in words for every member and, for
 * approvers, the form that adds a rule and a Delete button per rule (REST,
 * /api/rooms/<slug>/policies, with the session's CSRF token). The list is read
 * when the panel opens, then follows the room's `policy` events (a rule created,
 * changed, deleted, granted or expired), with a slow re-read as a safety net.
 * Grants say who granted them and count down to their expiry every second.
 */

import { describeRule, ruleFromForm } from "./approvals.js";
import { createApi } from "./api.js";
import { button, el } from "./dom.js";
import { clockUntil, ruleNotes, rulesAfter } from "./governance.js";

const REFRESH_MS = 20000;
const TICK_MS = 1000;

export function createPolicyPanel({ root, config, csrfToken, fetch }) {
  const list = root.querySelector("#policy-rules");
  const status = root.querySelector("#policy-status");
  const form = root.querySelector("#policy-form"); // approvers only
  const base = `/api/rooms/${encodeURIComponent(config.slug)}/policies`;
  let refresher = null;
  let ticker = null;
  let toolsLoaded = false;
  let rules = null; // as last drawn; null until read
  const call = createApi({ fetch, csrfToken });

  async function refresh() {
    const answer = await call(base);
    if (!answer.ok || !Array.isArray(answer.data)) {
      status.textContent = answer.detail;
      status.hidden = false;
      return;
    }
    drawRules(answer.data);
  }

  function drawRules(next) {
    rules = next;
    list.replaceChildren(...rules.map(ruleItem));
    status.hidden = rules.length > 0;
    status.textContent = "No rules: the tools that change things ask one approver, "
      + "the others run at once.";
    startTicking();
  }

  /* A `policy` event: the change is drawn at once when the list was read. */
  function apply(change) {
    if (rules !== null) drawRules(rulesAfter(rules, change));
  }

  function ruleItem(rule) {
    const notes = ruleNotes(rule, Date.now());
    const expired = Boolean(notes.expires && notes.expires.expired);
    const kind = rule.mode === "never" ? "never" : "ok";
    const item = el("li", `policy__rule policy__rule--${kind}${expired ? " policy__rule--expired" : ""}`);
    item.dataset.ruleId = rule.id;
    const body = el("span", "policy__body");
    body.append(el("span", "policy__text", describeRule(rule)));
    item.append(body);
    const extra = [];
    if (notes.granted) extra.push(el("span", "policy__granted", notes.granted));
    if (notes.expires) extra.push(expiryNote(notes.expires));
    if (notes.escalates) extra.push(el("span", "policy__escalates", notes.escalates));
    if (extra.length) {
      const line = el("span", "policy__notes");
      line.append(...extra);
      body.append(line);
    }
    if (config.canDecide) {
      const remove = button("Delete", "btn--quiet btn--small", () => deleteRule(rule, remove));
      remove.title = `Delete the rule for ${rule.tool === "*" ? "any tool" : rule.tool}`;
      item.append(remove);
    }
    return item;
  }

  function expiryNote(expires) {
    if (expires.expired) return el("span", "policy__expired", "Expired");
    const node = el("span", "policy__expires");
    node.dataset.expires = expires.at;
    node.title = new Date(expires.at).toLocaleString();
    showExpiry(node, Date.now());
    return node;
  }

  /* "Expires in 59:59", then "Expired" at its time (the sweep's `policy` event
     follows within seconds, and redraws it the same). */
  function showExpiry(node, now) {
    const left = clockUntil(node.dataset.expires, now);
    if (left) {
      node.textContent = `Expires in ${left}`;
      return;
    }
    node.textContent = "Expired";
    node.className = "policy__expired";
    delete node.dataset.expires;
    node.closest(".policy__rule")?.classList.add("policy__rule--expired");
  }

  function startTicking() {
    if (ticker !== null || !list.querySelector("[data-expires]")) return;
    ticker = window.setInterval(() => {
      const counting = list.querySelectorAll("[data-expires]");
      const now = Date.now();
      counting.forEach((node) => showExpiry(node, now));
      if (!counting.length) {
        window.clearInterval(ticker);
        ticker = null;
      }
    }, TICK_MS);
  }

  async function deleteRule(rule, control) {
    control.disabled = true;
    const answer = await call(`${base}/${encodeURIComponent(rule.id)}`, { method: "DELETE" });
    if (!answer.ok && answer.status !== 404) {
      control.disabled = false;
      showError(answer.detail);
      return;
    }
    showError(null);
    await refresh();
  }

  function showError(text) {
    if (!form) {
      if (text) status.textContent = text;
      return;
    }
    const problem = form.querySelector("#policy-error");
    problem.textContent = text || "";
    problem.hidden = !text;
  }

  async function loadTools() {
    if (toolsLoaded || !form) return;
    toolsLoaded = true;
    // The tools this room offers: a rule may name no other (400).
    const answer = await call(`/api/tools?room=${encodeURIComponent(config.slug)}`);
    if (!answer.ok || !Array.isArray(answer.data)) return;
    const select = form.querySelector("#policy-tool");
    for (const tool of answer.data) {
      const option = el("option", null, tool.requires_approval ? tool.name : `${tool.name} (runs at once)`);
      option.value = tool.name;
      if (tool.description) option.title = tool.description;
      select.append(option);
    }
  }

  function fieldsOf(formNode) {
    const value = (name) => formNode.elements[name].value;
    return {
      tool: value("tool"),
      mode: value("mode"),
      approvalsRequired: value("approvals_required"),
      requesterMayApprove: formNode.elements.requester_may_approve.checked,
      approvers: value("approvers"),
      delay: value("delay"),
      timeout: value("timeout"),
      arguments: value("arguments"),
    };
  }

  async function addRule(event) {
    event.preventDefault();
    const rule = ruleFromForm(fieldsOf(form));
    if (rule.error) {
      showError(rule.error);
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    const answer = await call(base, { method: "POST", body: JSON.stringify(rule.body) });
    submit.disabled = false;
    if (!answer.ok) {
      showError(answer.detail);
      return;
    }
    showError(null);
    form.reset();
    showAskFields();
    await refresh();
  }

  function showAskFields() {
    const ask = form.querySelector("#policy-ask");
    const asking = form.elements.mode.value === "ask";
    ask.hidden = !asking;
    ask.disabled = !asking;
  }

  function onToggle() {
    window.clearInterval(refresher);
    refresher = null;
    if (!root.open) return;
    refresh();
    loadTools();
    refresher = window.setInterval(() => {
      if (document.visibilityState === "visible") refresh();
    }, REFRESH_MS);
  }

  if (form) {
    form.addEventListener("submit", addRule);
    form.elements.mode.addEventListener("change", showAskFields);
    showAskFields();
  }
  root.addEventListener("toggle", onToggle);
  if (root.open) onToggle();
  /* Re-read when open (after a reconnect, events may have been missed). */
  function resync() {
    if (root.open) refresh();
  }

  return { refresh, apply, resync };
}
