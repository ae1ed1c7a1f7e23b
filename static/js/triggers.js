/*
 * The room's "Triggers" and "Schedules" panels, for approvers only (the template
 * leaves them out of anyone else's page): each lists what the REST API returns
 * (/api/rooms/<slug>/triggers and /schedules) with its buttons, and adds one from
 * its form. Nothing announces a change to them over the socket, so a panel reads
 * its list when it opens and every little while it stays open (fired counts, next
 * runs).
 *
 * A new trigger's secret is in the answer to its POST only: it is kept in this
 * page's memory (never in storage, the URL or a log) and shown on its item until
 * hidden or the page is left; a reload shows it no more.
 */

import { createApi } from "./api.js";
import { untilText } from "./approvals.js";
import {
  eventsText, filterText, firedText, scheduleFromForm, secretHelp, sourceName,
  triggerFromForm,
} from "./automation.js";
import { button, cssToken, el, timeElement } from "./dom.js";

const REFRESH_MS = 20000;

/* Calls `refresh` when `root` (a <details>) opens and every REFRESH_MS while it
   stays open and the tab is visible. */
function whileOpen(root, refresh) {
  let refresher = null;
  function onToggle() {
    window.clearInterval(refresher);
    refresher = null;
    if (!root.open) return;
    refresh();
    refresher = window.setInterval(() => {
      if (document.visibilityState === "visible") refresh();
    }, REFRESH_MS);
  }
  root.addEventListener("toggle", onToggle);
  if (root.open) onToggle();
}

/* The parts both panels share: the list, its status line and the form's error. */
function panelParts(root, prefix) {
  const list = root.querySelector(`#${prefix}-list`);
  const status = root.querySelector(`#${prefix}-status`);
  const form = root.querySelector(`#${prefix}-form`);
  const problem = root.querySelector(`#${prefix}-error`);
  return {
    list,
    status,
    form,
    say(text) {
      status.textContent = text;
      status.hidden = !text;
      status.dataset.kind = "";
    },
    /* After a list arrived: says it is empty, or clears "Loading…" and that
       word, leaving what a button said. */
    listed(count, emptyText) {
      if (!count) this.say(emptyText);
      else if (status.dataset.kind === "list") this.say("");
      status.dataset.kind = count ? "" : "list";
    },
    showError(text) {
      problem.textContent = text || "";
      problem.hidden = !text;
    },
  };
}

/* Sends the form's body to `url`; resolves to the created item, or null after
   showing the server's reason beside the form. */
async function submit(parts, call, url, parsed) {
  if (parsed.error) {
    parts.showError(parsed.error);
    return null;
  }
  const control = parts.form.querySelector("button[type=submit]");
  control.disabled = true;
  const answer = await call(url, { method: "POST", body: JSON.stringify(parsed.body) });
  control.disabled = false;
  if (!answer.ok) {
    parts.showError(answer.detail);
    return null;
  }
  parts.showError(null);
  parts.form.reset();
  return answer.data;
}

/* Enable / Disable / Delete on one item: PATCH {enabled} or DELETE, then the list
   again. A 404 means someone else deleted it: the list shows that. */
function itemButtons({ item, kind, label, url, call, refresh, parts }) {
  const row = el("div", "btn-row auto__buttons");
  const toggle = button(item.enabled ? "Disable" : "Enable", "btn--small", async () => {
    toggle.disabled = true;
    const answer = await call(url, {
      method: "PATCH", body: JSON.stringify({ enabled: !item.enabled }),
    });
    if (!answer.ok && answer.status !== 404) parts.showError(answer.detail);
    await refresh({ force: true });
    toggle.disabled = false;
  });
  toggle.title = `${item.enabled ? "Disable" : "Enable"} the ${kind} ${label}`;
  const remove = button("Delete", "btn--quiet btn--small", async () => {
    remove.disabled = true;
    const answer = await call(url, { method: "DELETE" });
    if (!answer.ok && answer.status !== 404) {
      remove.disabled = false;
      parts.showError(answer.detail);
      return;
    }
    parts.say(`Deleted the ${kind} ${label}.`);
    await refresh({ force: true });
  });
  remove.title = `Delete the ${kind} ${label}`;
  row.append(toggle, remove);
  return row;
}

function stateChip(enabled) {
  const chip = el("span", `auto__state auto__state--${enabled ? "on" : "off"}`,
                  enabled ? "Enabled" : "Disabled");
  return chip;
}

function timeLine(label, iso) {
  const line = el("p", "auto__line", `${label}: `);
  if (iso) line.append(timeElement(iso));
  else line.append("never");
  return line;
}

// Triggers --------------------------------------------------------------------------

export function createTriggersPanel({ root, config, csrfToken, fetch, clipboard }) {
  const parts = panelParts(root, "trigger");
  const call = createApi({ fetch, csrfToken });
  const base = `/api/rooms/${encodeURIComponent(config.slug)}/triggers`;
  // id -> secret, from the POST that created it; this page's memory only.
  const secrets = new Map();

  async function refresh({ force } = {}) {
    // Not while someone types a secret: the redraw would take the field away.
    if (!force && parts.list.querySelector(".auto__secret-form")) return;
    const answer = await call(base);
    if (!answer.ok || !Array.isArray(answer.data)) {
      parts.say(answer.detail);
      parts.status.dataset.kind = "list"; // the next list replaces it
      return;
    }
    parts.list.replaceChildren(...answer.data.map(triggerItem));
    parts.listed(answer.data.length, "No triggers: add one to start the agent from a webhook.");
  }

  function label(trigger) {
    return trigger.name ? `“${trigger.name}”` : `from ${sourceName(trigger.source)}`;
  }

  function triggerItem(trigger) {
    const item = el("li", `auto__item auto__item--${trigger.enabled ? "on" : "off"}`);
    item.dataset.triggerId = trigger.id;
    const head = el("div", "auto__head");
    head.append(el("span", `badge badge--source badge--${cssToken(trigger.source)}`,
                   sourceName(trigger.source)));
    if (trigger.name) head.append(el("span", "auto__name", trigger.name));
    head.append(stateChip(trigger.enabled));
    const url = el("code", "auto__url", trigger.url);
    item.append(head, url, el("p", "auto__line", eventsText(trigger.events)));
    const filter = filterText(trigger.filter);
    if (filter) item.append(el("p", "auto__line", filter));
    const fired = el("p", "auto__line", firedText(trigger));
    if (trigger.last_fired) fired.append(", last ", timeElement(trigger.last_fired));
    item.append(fired);
    if (secrets.has(trigger.id)) item.append(secretBox(trigger));
    const buttons = itemButtons({
      item: trigger, kind: "trigger", label: label(trigger),
      url: `${base}/${encodeURIComponent(trigger.id)}`, call, refresh, parts,
    });
    const copy = button("Copy URL", "btn--small", () => copyText(trigger.url, url, "URL"));
    copy.title = `Copy the URL of the trigger ${label(trigger)}`;
    buttons.prepend(copy);
    const replace = button("Set secret", "btn--quiet btn--small", () => {
      const open = item.querySelector(".auto__secret-form");
      if (open) open.remove();
      else buttons.after(secretForm(trigger));
      replace.setAttribute("aria-expanded", String(!open));
    });
    replace.setAttribute("aria-expanded", "false");
    replace.title = `Set the signing secret of the trigger ${label(trigger)}`;
    buttons.append(replace);
    item.append(buttons);
    return item;
  }

  /* The secret a sender chose (Linear shows its own for a webhook made in its
     settings): PATCH {secret}. Typed into a password field, never shown back. */
  function secretForm(trigger) {
    const form = el("form", "stack-form auto__secret-form");
    form.noValidate = true;
    const id = `trigger-secret-${cssToken(trigger.id)}`;
    const fieldLabel = el("label", null, `Signing secret from ${sourceName(trigger.source)}`);
    fieldLabel.htmlFor = id;
    const input = el("input");
    Object.assign(input, { id, name: "secret", type: "password", autocomplete: "off" });
    input.spellcheck = false;
    const problem = el("p", "field-error");
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    const save = el("button", "btn btn--secondary btn--small", "Save secret");
    save.type = "submit";
    form.append(fieldLabel, input, problem, save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const secret = input.value.trim();
      if (!secret) {
        problem.textContent = "Paste the sender's signing secret.";
        problem.hidden = false;
        return;
      }
      save.disabled = true;
      const answer = await call(`${base}/${encodeURIComponent(trigger.id)}`, {
        method: "PATCH", body: JSON.stringify({ secret }),
      });
      save.disabled = false;
      if (!answer.ok) {
        problem.textContent = answer.detail;
        problem.hidden = false;
        return;
      }
      input.value = "";
      secrets.delete(trigger.id);
      parts.say(`Saved the signing secret of the trigger ${label(trigger)}.`);
      await refresh({ force: true });
    });
    window.setTimeout(() => input.focus(), 0);
    return form;
  }

  function secretBox(trigger) {
    const box = el("div", "auto__secret");
    box.append(el("p", "auto__secret-title", "Signing secret, shown once: copy it now."));
    const value = el("code", "auto__secret-value", secrets.get(trigger.id));
    box.append(value, el("p", "auto__line muted", secretHelp(trigger.source)));
    const row = el("div", "btn-row");
    row.append(
      button("Copy secret", "btn--small", () => copyText(secrets.get(trigger.id), value, "secret")),
      button("Hide secret", "btn--quiet btn--small", () => {
        secrets.delete(trigger.id);
        box.remove();
      }),
    );
    box.append(row);
    return box;
  }

  /* The clipboard where the page may write to it; otherwise the text is selected
     for Ctrl+C. Says which in the panel's status line (read aloud). */
  async function copyText(text, node, what) {
    try {
      await clipboard.writeText(text);
      parts.say(`Copied the ${what}.`);
    } catch (error) {
      const range = document.createRange();
      range.selectNodeContents(node);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      parts.say(`Selected the ${what}: press Ctrl+C (⌘C) to copy it.`);
    }
  }

  async function add(event) {
    event.preventDefault();
    const form = parts.form;
    const value = (name) => form.elements[name].value;
    const parsed = triggerFromForm({
      source: value("source"), name: value("name"), events: value("events"),
      filter: value("filter"), prompt: value("prompt"),
    }, config.maxChars);
    const created = await submit(parts, call, base, parsed);
    if (!created) return;
    if (created.secret) secrets.set(created.id, created.secret);
    parts.say("Trigger added: give its sender the URL and the secret.");
    await refresh({ force: true });
  }

  parts.form.addEventListener("submit", add);
  whileOpen(root, refresh);
  return { refresh };
}

// Schedules -------------------------------------------------------------------------

export function createSchedulesPanel({ root, config, csrfToken, fetch }) {
  const parts = panelParts(root, "schedule");
  const call = createApi({ fetch, csrfToken });
  const base = `/api/rooms/${encodeURIComponent(config.slug)}/schedules`;

  async function refresh() {
    const answer = await call(base);
    if (!answer.ok || !Array.isArray(answer.data)) {
      parts.say(answer.detail);
      parts.status.dataset.kind = "list"; // the next list replaces it
      return;
    }
    parts.list.replaceChildren(...answer.data.map(scheduleItem));
    parts.listed(answer.data.length, "No schedules: add one to post a request on a cron.");
  }

  function scheduleItem(schedule) {
    const item = el("li", `auto__item auto__item--${schedule.enabled ? "on" : "off"}`);
    item.dataset.scheduleId = schedule.id;
    const head = el("div", "auto__head");
    head.append(el("code", "auto__cron", schedule.cron));
    head.append(el("span", "auto__zone", schedule.timezone));
    head.append(stateChip(schedule.enabled));
    item.append(head);
    if (schedule.name) item.append(el("p", "auto__name", schedule.name));
    const next = el("p", "auto__line auto__next", "Next run: ");
    if (schedule.next_run) {
      next.append(timeElement(schedule.next_run));
      const until = untilText(schedule.next_run, Date.now());
      if (until) next.append(` (${until})`);
    } else {
      next.append(schedule.enabled ? "none" : "none while disabled");
    }
    item.append(next, timeLine("Last run", schedule.last_run));
    if (schedule.skipped) {
      const skipped = el("p", "auto__line", `Skipped ${schedule.skipped} missed `
        + `${schedule.skipped === 1 ? "slot" : "slots"}`);
      if (schedule.last_skipped) skipped.append(", last ", timeElement(schedule.last_skipped));
      item.append(skipped);
    }
    const label = schedule.name ? `“${schedule.name}”` : schedule.cron;
    item.append(itemButtons({
      item: schedule, kind: "schedule", label,
      url: `${base}/${encodeURIComponent(schedule.id)}`, call, refresh, parts,
    }));
    return item;
  }

  async function add(event) {
    event.preventDefault();
    const form = parts.form;
    const value = (name) => form.elements[name].value;
    const parsed = scheduleFromForm({
      cron: value("cron"), timezone: value("timezone"), name: value("name"),
      prompt: value("prompt"),
    }, config.maxChars);
    const created = await submit(parts, call, base, parsed);
    if (!created) return;
    setZone();
    parts.say("Schedule added.");
    await refresh();
  }

  /* The zone defaults to the browser's (the server's default is UTC). */
  function setZone() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) parts.form.elements.timezone.value = zone;
  }

  function offerZones() {
    const options = root.querySelector("#schedule-zones");
    if (!options || typeof Intl.supportedValuesOf !== "function") return;
    for (const zone of Intl.supportedValuesOf("timeZone")) {
      const option = document.createElement("option");
      option.value = zone;
      options.append(option);
    }
  }

  parts.form.addEventListener("submit", add);
  offerZones();
  setZone();
  whileOpen(root, refresh);
  return { refresh };
}
