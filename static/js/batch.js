/*
 * Approve all / Deny all: under the action cards of a request with two or more
 * pending actions the viewer may still vote on, one bar sends the `decide_all`
 * frame (REST: POST /api/requests/<id>/decide while the socket is down). Each vote
 * comes back as the usual `action` event, which redraws its card; the sender alone
 * hears what was refused (`decided_all`), which the bar then says ("Not yours to
 * decide: 1") until the page is left.
 */

import { button, el, keepingScroll, timeOf } from "./dom.js";
import { decidedAllText, offersDecideAll, votable } from "./governance.js";

/* `send(frame, {url, body})` resolves to {ok, data?, detail?} (protocol.send's
   answer); `announce(text)` speaks in the room's polite live region. */
export function createBatches({ timeline, config, send, announce }) {
  const requests = new Map(); // request id -> {id, actions: Map, el, ui}
  const viewer = { username: config.username };

  function entryOf(requestId) {
    let entry = requests.get(requestId);
    if (!entry) {
      entry = { id: requestId, actions: new Map(), el: null, ui: idleUi() };
      requests.set(requestId, entry);
    }
    return entry;
  }

  function idleUi() {
    return { mode: "idle", busy: false, reason: "", result: "", error: "" };
  }

  /* An action as drawn (snapshot or event): its request's bar follows. */
  function update(action) {
    if (!action || typeof action.request !== "string") return;
    const entry = entryOf(action.request);
    entry.actions.set(action.id, action);
    draw(entry);
  }

  function draw(entry, focusSelector) {
    const actions = [...entry.actions.values()];
    const offered = offersDecideAll(actions, viewer);
    if (!offered && !entry.ui.busy) entry.ui.mode = "idle";
    if (!offered && !entry.ui.busy && !entry.ui.result && !entry.ui.error) {
      if (entry.el) entry.el.remove();
      entry.el = null;
      return;
    }
    const bar = render(entry, actions, offered);
    const hadFocus = Boolean(entry.el && entry.el.contains(document.activeElement));
    // After the request's last card: the newest of its actions' times.
    const last = Math.max(...actions.map((action) => timeOf(action.created) ?? 0));
    keepingScroll(() => {
      if (entry.el) entry.el.replaceWith(bar);
      entry.el = bar;
      timeline.place(bar, last);
    });
    const target = focusSelector ? bar.querySelector(focusSelector) : null;
    if (target) target.focus();
    else if (hadFocus) (bar.querySelector("button:not(:disabled), input") || bar).focus();
  }

  function render(entry, actions, offered) {
    const item = el("li", "batch");
    item.dataset.request = entry.id;
    item.tabIndex = -1;
    const count = votable(actions, viewer).length;
    const box = el("section", "batch__box");
    box.setAttribute("aria-label", "Decide this request's actions at once");
    if (offered) {
      box.append(el("p", "batch__title", `${count} actions wait for your vote`));
      box.append(entry.ui.mode === "deny" ? denyForm(entry) : buttons(entry));
    }
    if (entry.ui.busy) {
      box.querySelectorAll("button, input").forEach((node) => { node.disabled = true; });
      box.append(el("p", "muted batch__busy", "Sending decisions…"));
    }
    if (entry.ui.error && !entry.ui.busy) {
      const line = el("p", "field-error batch__error", entry.ui.error);
      line.setAttribute("role", "alert");
      box.append(line);
    }
    if (entry.ui.result) box.append(el("p", "batch__result", entry.ui.result));
    item.append(box);
    return item;
  }

  function buttons(entry) {
    const row = el("div", "btn-row");
    row.append(
      button("Approve all", "btn--approve", () => decideAll(entry, "approve")),
      button("Deny all", "btn--deny", () => {
        entry.ui.mode = "deny";
        entry.ui.error = "";
        draw(entry, "input");
      }),
    );
    return row;
  }

  function denyForm(entry) {
    const form = el("form", "inline-panel");
    const id = `batch-reason-${entry.id}`;
    const label = el("label", "label", "Why deny them all? The agent is told this reason.");
    label.htmlFor = id;
    const input = el("input");
    input.id = id;
    input.name = "reason";
    input.maxLength = 2000;
    input.placeholder = "Reason (optional)";
    input.value = entry.ui.reason;
    input.addEventListener("input", () => { entry.ui.reason = input.value; });
    const confirm = el("button", "btn btn--deny", "Confirm deny all");
    confirm.type = "submit";
    const row = el("div", "btn-row");
    row.append(confirm, button("Back", "btn--quiet", () => {
      entry.ui.mode = "idle";
      draw(entry, "button");
    }));
    form.append(label, input, row);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const reason = input.value.trim();
      decideAll(entry, "deny", reason ? { reason } : {});
    });
    return form;
  }

  async function decideAll(entry, decision, extra) {
    entry.ui.busy = true;
    entry.ui.error = "";
    entry.ui.result = "";
    draw(entry);
    const body = { decision, ...(extra || {}) };
    const frame = { type: "decide_all", request: entry.id, ...body };
    const url = `/api/requests/${encodeURIComponent(entry.id)}/decide`;
    const answer = await send(frame, { url, body });
    if (!answer.ok) {
      refused(answer.detail || `The server answered ${answer.status}.`);
    } else if (answer.data && Array.isArray(answer.data.actions)) {
      // Over REST: the answer is the result the socket would have sent.
      done({
        request: entry.id,
        decision,
        actions: answer.data.actions.map((action) => action.id),
        refused: Array.isArray(answer.data.refused) ? answer.data.refused : [],
      });
    }
  }

  /* The sender's `decided_all`: what was voted on and what refused. */
  function done(result) {
    const entry = requests.get(result.request);
    if (!entry) return;
    entry.ui = { ...idleUi(), result: decidedAllText(result) };
    draw(entry);
    announce(entry.ui.result);
  }

  /* The server refused the whole decide-all (an `error` frame, or a REST 4xx):
     its reason on the bar that was waiting. False when none was. */
  function refused(detail) {
    let shown = false;
    for (const entry of requests.values()) {
      if (!entry.ui.busy) continue;
      entry.ui.busy = false;
      entry.ui.error = detail;
      draw(entry);
      shown = true;
    }
    return shown;
  }

  return { update, done, refused };
}
