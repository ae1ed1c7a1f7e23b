/*
 * The room's approval policy panel: its rules in words for every member and, for
 * approvers, the form that adds a rule and a Delete button per rule (REST,
 * /api/rooms/<slug>/policies, with the session's CSRF token). Rules change
 * rarely and no event announces them: the list is read when the panel opens and
 * every little while it stays open.
 */

import { describeRule, ruleFromForm } from "./approvals.js";
import { createApi } from "./api.js";
import { button, el } from "./dom.js";

const REFRESH_MS = 20000;

export function createPolicyPanel({ root, config, csrfToken, fetch }) {
  const list = root.querySelector("#policy-rules");
  const status = root.querySelector("#policy-status");
  const form = root.querySelector("#policy-form"); // approvers only
  const base = `/api/rooms/${encodeURIComponent(config.slug)}/policies`;
  let refresher = null;
  let toolsLoaded = false;
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

  function drawRules(rules) {
    list.replaceChildren(...rules.map(ruleItem));
    status.hidden = rules.length > 0;
    status.textContent = "No rules: the tools that change things ask one approver, "
      + "the others run at once.";
  }

  function ruleItem(rule) {
    const item = el("li", `policy__rule policy__rule--${rule.mode === "never" ? "never" : "ok"}`);
    item.dataset.ruleId = rule.id;
    item.append(el("span", "policy__text", describeRule(rule)));
    if (config.canDecide) {
      const remove = button("Delete", "btn--quiet btn--small", () => deleteRule(rule, remove));
      remove.title = `Delete the rule for ${rule.tool === "*" ? "any tool" : rule.tool}`;
      item.append(remove);
    }
    return item;
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
  return { refresh };
}
