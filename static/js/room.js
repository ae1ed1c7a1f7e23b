/*
 * The room page: one WebSocket to /ws/rooms/<slug>/ (see PROTOCOL.md).
 *
 * The page is rendered with the same snapshot the socket sends first; both are
 * drawn alike. Durable events (message, action, request) carry a per-room seq;
 * we apply them strictly in seq order and ask the server to resync from the
 * last one we applied whenever we see a gap. Everything is upserted by id,
 * so an item that arrives twice (snapshot and event, resync and live) is
 * drawn once. Untrusted text only ever reaches the page through textContent,
 * text nodes or SafeMarkdown, never through innerHTML.
 */
(function () {
  "use strict";

  const root = document.getElementById("room");
  if (!root) return;

  const config = {
    slug: root.dataset.slug,
    username: root.dataset.username,
    canDecide: root.dataset.canDecide === "true",
    maxChars: Number(root.dataset.maxChars) || 10000,
  };

  const ENDED = new Set(["completed", "failed", "cancelled"]);
  const REQUEST_LABELS = {
    queued: "Queued",
    running: "Working…",
    awaiting_approval: "Waiting for approval",
    completed: "Done",
    failed: "Failed",
    cancelled: "Cancelled",
  };
  const ACTION_LABELS = {
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
  };
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  // A resync answer that has not arrived by then is asked for again.
  const RESYNC_RETRY_MS = 5000;
  // Close codes after which reconnecting cannot help (see consumers.py).
  const FINAL_CLOSE = { 4401: "Your session ended. Log in again to rejoin the room.",
                        4403: "This room is no longer open to you.",
                        4404: "This room no longer exists or you are not a member." };

  const dom = {
    timeline: document.getElementById("timeline"),
    empty: document.getElementById("timeline-empty"),
    presence: document.getElementById("presence-list"),
    notices: document.getElementById("notices"),
    conn: document.getElementById("conn-status"),
    composer: document.getElementById("composer"),
    text: document.getElementById("composer-text"),
    csrf: document.querySelector("#composer [name=csrfmiddlewaretoken]"),
  };

  const state = {
    lastSeq: null, // null until the first snapshot
    resyncAfter: null,
    resyncAt: 0,
    messages: new Map(), // id -> {data, el, partial, content}
    actions: new Map(), // id -> {data, el, json, ui}
    requests: new Map(), // id -> {id, status, error}
    socket: null,
    attempt: 0,
    reconnectTimer: null,
    closedForGood: false,
    lastChatText: "",
  };

  // Small DOM helpers -----------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(label, className, onClick) {
    const node = el("button", `btn ${className || ""}`.trim(), label);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  function timeOf(iso) {
    const ms = Date.parse(iso || "");
    return Number.isNaN(ms) ? null : ms;
  }

  function timeElement(iso) {
    const ms = timeOf(iso);
    const node = el("time", "time");
    if (ms === null) return node;
    const date = new Date(ms);
    const sameDay = date.toDateString() === new Date().toDateString();
    node.dateTime = date.toISOString();
    node.title = date.toLocaleString();
    node.textContent = sameDay
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    return node;
  }

  function pretty(value) {
    try {
      return JSON.stringify(value, null, 2);
    } catch (error) {
      return String(value);
    }
  }

  function cssToken(value) {
    return String(value || "").replace(/[^a-z0-9_-]/gi, "");
  }

  /* Keeps the newest item in view while streaming, unless the reader has
     scrolled up to read something older. */
  function keepingScroll(change) {
    const doc = document.scrollingElement || document.documentElement;
    const nearBottom = doc.scrollHeight - (doc.scrollTop + window.innerHeight) < 160;
    change();
    if (nearBottom) doc.scrollTop = doc.scrollHeight;
  }

  // Timeline order ----------------------------------------------------------------

  /* Items sit in server time order (`created`); an item with no time yet (a
     streaming answer) goes last and is moved once its final message lands. */
  function place(node, createdMs) {
    const key = createdMs === null ? lastSortKey() : createdMs;
    node.dataset.sort = String(key);
    let after = dom.timeline.lastElementChild;
    while (after && after !== node && Number(after.dataset.sort) > key) {
      after = after.previousElementSibling;
    }
    if (after === node) return;
    if (after) after.after(node);
    else dom.timeline.prepend(node);
    dom.empty.hidden = true;
  }

  function lastSortKey() {
    const last = dom.timeline.lastElementChild;
    return last ? Number(last.dataset.sort) : 0;
  }

  // Notices ---------------------------------------------------------------------------

  function showNotice(text, kind) {
    const notice = el("div", `notice notice--${kind || "error"}`);
    notice.setAttribute("role", kind === "info" ? "status" : "alert");
    notice.append(el("p", "notice__text", text));
    notice.append(button("Dismiss", "btn--quiet btn--small", () => notice.remove()));
    dom.notices.append(notice);
    // Keep the list short: the oldest notices matter least.
    while (dom.notices.children.length > 4) dom.notices.firstElementChild.remove();
    return notice;
  }

  function setConnection(status, text) {
    dom.conn.dataset.state = status;
    dom.conn.textContent = text;
  }

  // Messages --------------------------------------------------------------------------

  function upsertMessage(data) {
    const known = state.messages.get(data.id);
    if (known && !known.partial) return; // messages never change once final
    if (data.role === "assistant" && !String(data.content || "").trim()) {
      // Only tool calls, which the action cards show (the snapshot includes
      // these messages, events do not): nothing to say, so no empty bubble.
      if (known) known.el.remove();
      state.messages.delete(data.id);
      return;
    }
    const entry = { data, partial: false, content: data.content };
    entry.el = renderMessage(data);
    keepingScroll(() => {
      if (known) known.el.replaceWith(entry.el);
      place(entry.el, timeOf(data.created));
    });
    state.messages.set(data.id, entry);
  }

  function renderMessage(data) {
    if (data.role === "tool") return renderToolMessage(data);
    const user = data.role === "user";
    const item = el("li", `msg msg--${user ? "user" : "assistant"}`);
    item.dataset.messageId = data.id;
    if (data.request) item.dataset.request = data.request;
    const meta = el("div", "msg__meta");
    const who = user ? data.author || "someone" : "Agent";
    meta.append(el("span", "msg__author", who));
    if (user && data.author === config.username) meta.append(el("span", "msg__you", "you"));
    meta.append(timeElement(data.created));
    const body = el("div", user ? "msg__body msg__body--plain" : "msg__body md");
    if (user) body.textContent = data.content;
    else body.append(window.SafeMarkdown.render(data.content));
    item.append(meta, body);
    if (user && data.request) {
      item.append(el("div", "msg__request"));
      renderRequestFooter(item, data);
    }
    return item;
  }

  /* Tool results are JSON for the model; people get one line and the details. */
  function renderToolMessage(data) {
    const item = el("li", "msg msg--tool");
    item.dataset.messageId = data.id;
    let parsed = null;
    try {
      parsed = JSON.parse(data.content);
    } catch (error) {
      parsed = null;
    }
    const details = el("details", "tool-result");
    const summary = el("summary");
    summary.append(el("span", "tool-result__label", "Tool result"));
    if (parsed && typeof parsed === "object") {
      if (parsed.tool) summary.append(el("code", "tool-result__tool", parsed.tool));
      if (parsed.status) {
        summary.append(el("span", `badge badge--${cssToken(parsed.status)}`,
                          ACTION_LABELS[parsed.status] || parsed.status));
      }
    }
    summary.append(timeElement(data.created));
    const pre = el("pre", "json", parsed ? pretty(parsed) : data.content);
    details.append(summary, pre);
    item.append(details);
    return item;
  }

  // Streaming answers -------------------------------------------------------------

  function partialEntry(messageId, requestId) {
    let entry = state.messages.get(messageId);
    if (entry) return entry;
    const item = el("li", "msg msg--assistant msg--streaming");
    item.dataset.messageId = messageId;
    item.dataset.request = requestId;
    // Each model call opens with an empty delta; a step that only calls tools
    // never says anything, so the bubble shows up with the first text.
    item.hidden = true;
    const meta = el("div", "msg__meta");
    meta.append(el("span", "msg__author", "Agent"), el("span", "msg__typing", "writing…"));
    item.append(meta, el("div", "msg__body md"));
    entry = { data: { id: messageId, request: requestId }, partial: true, content: "",
              el: item, frame: 0 };
    state.messages.set(messageId, entry);
    keepingScroll(() => place(item, null));
    return entry;
  }

  function applyDelta(frame) {
    const known = state.messages.get(frame.message);
    if (known && !known.partial) return; // the final message is already shown
    if (!known && frame.offset > 0) return; // text before it is missing; wait for the final
    const entry = partialEntry(frame.message, frame.request);
    if (frame.offset > entry.content.length) {
      // A delta went missing: showing the rest would garble the answer, and
      // the final `message` event brings the whole text anyway.
      return;
    }
    // Offset semantics: a retried model call restarts at 0 (empty text clears).
    entry.content = entry.content.slice(0, frame.offset) + frame.text;
    scheduleRender(entry);
  }

  function seedPartial(partial, requestId) {
    const known = state.messages.get(partial.message);
    if (known && !known.partial) return;
    const entry = partialEntry(partial.message, requestId);
    // The snapshot is newer than anything we streamed before reconnecting.
    entry.content = partial.content;
    scheduleRender(entry);
  }

  /* Re-rendering markdown on every token is wasteful: once per frame is enough. */
  function scheduleRender(entry) {
    if (entry.frame) return;
    entry.frame = window.requestAnimationFrame(() => {
      entry.frame = 0;
      if (state.messages.get(entry.data.id) !== entry || !entry.partial) return;
      const body = entry.el.querySelector(".msg__body");
      keepingScroll(() => {
        entry.el.hidden = !entry.content;
        body.replaceChildren(window.SafeMarkdown.render(entry.content));
      });
    });
  }

  /* A request that ended leaves no more text: mark what it streamed as cut off. */
  function stopPartials(requestId) {
    for (const [id, entry] of state.messages) {
      if (!entry.partial || entry.data.request !== requestId) continue;
      if (!entry.content) {
        // Nothing was said (a retried call cleared it): leave no empty bubble.
        entry.el.remove();
        state.messages.delete(id);
        continue;
      }
      entry.el.classList.remove("msg--streaming");
      entry.el.classList.add("msg--stopped");
      const typing = entry.el.querySelector(".msg__typing");
      if (typing) typing.textContent = "stopped";
    }
  }

  // Requests --------------------------------------------------------------------------

  function upsertRequest(data) {
    const previous = state.requests.get(data.id) || {};
    const request = { ...previous, id: data.id, status: data.status, error: data.error };
    state.requests.set(data.id, request);
    const owner = dom.timeline.querySelector(
      `.msg--user[data-request="${CSS.escape(data.id)}"]`);
    if (owner) {
      const message = state.messages.get(owner.dataset.messageId);
      renderRequestFooter(owner, message ? message.data : {});
    }
    if (ENDED.has(request.status)) stopPartials(data.id);
  }

  function renderRequestFooter(item, message) {
    const footer = item.querySelector(".msg__request");
    const request = state.requests.get(item.dataset.request);
    if (!footer || !request) {
      if (footer) footer.replaceChildren();
      return;
    }
    const status = cssToken(request.status);
    const chip = el("span", `req-status req-status--${status}`,
                    REQUEST_LABELS[request.status] || request.status);
    chip.dataset.status = request.status;
    footer.replaceChildren(chip);
    if (request.status === "failed" && request.error) {
      footer.append(el("span", "req-status__error", request.error));
    }
    const mayCancel = config.canDecide || message.author === config.username;
    if (!ENDED.has(request.status) && mayCancel) {
      const cancel = button("Cancel", "btn--small", () => {
        cancel.disabled = true;
        cancelRequest(request.id).finally(() => { cancel.disabled = false; });
      });
      footer.append(cancel);
    }
  }

  function cancelRequest(requestId) {
    return sendFrame({ type: "cancel", request: requestId },
                     `/api/requests/${encodeURIComponent(requestId)}/cancel`, {});
  }

  // Actions ---------------------------------------------------------------------------

  function upsertAction(data) {
    const json = JSON.stringify(data);
    const known = state.actions.get(data.id);
    if (known && known.json === json) return; // nothing new: keep any open form
    const entry = known || { ui: { mode: "idle", busy: false, reason: "", args: null } };
    entry.data = data;
    entry.json = json;
    if (data.status !== "pending") entry.ui = { mode: "idle", busy: false, reason: "", args: null };
    else entry.ui.busy = false;
    const card = renderAction(entry);
    keepingScroll(() => {
      if (entry.el) entry.el.replaceWith(card);
      entry.el = card;
      place(card, timeOf(data.created));
    });
    state.actions.set(data.id, entry);
  }

  function rerenderAction(entry, focusSelector) {
    const card = renderAction(entry);
    card.dataset.sort = entry.el.dataset.sort;
    entry.el.replaceWith(card);
    entry.el = card;
    if (focusSelector) {
      const target = card.querySelector(focusSelector);
      if (target) target.focus();
    }
  }

  function renderAction(entry) {
    const data = entry.data;
    const status = cssToken(data.status);
    const item = el("li", `action action--${status}`);
    item.dataset.actionId = data.id;
    item.dataset.status = data.status;
    const card = el("article", "action__card");
    card.setAttribute("aria-label", `Action ${data.tool}: ${ACTION_LABELS[data.status] || data.status}`);
    card.append(actionHeader(data));
    const preview = actionPreview(data);
    if (preview) card.append(preview);
    card.append(actionArguments(data));
    const decision = actionDecision(data);
    if (decision) card.append(decision);
    const outcome = actionOutcome(data);
    if (outcome) card.append(outcome);
    if (config.canDecide && data.status === "pending") card.append(actionControls(entry));
    item.append(card);
    return item;
  }

  function actionHeader(data) {
    const header = el("header", "action__head");
    const title = el("div", "action__title");
    title.append(el("span", "action__kicker", data.requires_approval ? "Action" : "Tool call"));
    title.append(el("code", "action__tool", data.tool));
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
      list.append(el("dt", null, PREVIEW_LABELS[key] || key));
      list.append(el("dd", null, previewValue(key, value)));
    }
    if (!list.children.length) return null;
    if (!data.proposed_arguments) return list;
    // The preview was read for the model's call, not for the edited one.
    const box = el("div", "action__preview-box");
    box.append(el("p", "label", "Proposed target"), list);
    return box;
  }

  function previewValue(key, value) {
    if (key === "missing") return "This issue does not exist (any more).";
    if (value && typeof value === "object") return value.name || JSON.stringify(value);
    return String(value);
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
    const verb = data.status === "expired" ? "Expired"
      : data.status === "denied" ? "Denied" : "Approved";
    line.append(el("span", "action__verb", data.decided_by ? `${verb} by ` : verb));
    if (data.decided_by) line.append(el("strong", "action__who", data.decided_by));
    if (data.decided_at) {
      line.append(document.createTextNode(" · "));
      line.append(timeElement(data.decided_at));
    }
    if (data.decided_via && data.decided_via !== "room" && data.decided_via !== "system") {
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
    if (ui.busy) {
      box.querySelectorAll("button, input, textarea").forEach((node) => { node.disabled = true; });
      box.append(el("p", "muted action__busy", "Sending decision…"));
    }
    return box;
  }

  function decisionButtons(entry) {
    const row = el("div", "btn-row");
    row.append(
      button("Approve", "btn--approve", () => decide(entry, "approve")),
      button("Deny", "btn--deny", () => switchMode(entry, "deny", "input")),
      button("Edit", "btn--secondary", () => switchMode(entry, "edit", "textarea")),
    );
    return row;
  }

  function switchMode(entry, mode, focusSelector) {
    entry.ui.mode = mode;
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
    rerenderAction(entry);
    const frame = { type: "decide", action: entry.data.id, decision, ...(extra || {}) };
    const url = `/api/actions/${encodeURIComponent(entry.data.id)}/${decision}`;
    sendFrame(frame, url, extra || {}).then((ok) => {
      if (!ok) releaseBusy();
    });
  }

  /* A refused decision (someone else was first, bad arguments) frees the buttons. */
  function releaseBusy() {
    for (const entry of state.actions.values()) {
      if (entry.ui.busy) {
        entry.ui.busy = false;
        if (entry.data.status === "pending") rerenderAction(entry);
      }
    }
  }

  // Presence --------------------------------------------------------------------------

  function renderPresence(users) {
    const names = [...new Set(users || [])].sort();
    dom.presence.replaceChildren(...names.map((name) => {
      const chip = el("li", "chip", name);
      if (name === config.username) {
        chip.classList.add("chip--you");
        chip.append(el("span", "sr-only", " (you)"));
      }
      return chip;
    }));
    if (!names.length) dom.presence.append(el("li", "muted", "Nobody else yet"));
  }

  // Durable events and resync ---------------------------------------------------------

  /* Draws a snapshot: the one the page was rendered with, then each one the
     socket sends. Recent requests and actions come whatever their status, so
     the snapshot alone brings everything up to date; its seq replaces ours
     (lower only when the room's history was reset). */
  function applySnapshot(snapshot, live) {
    (snapshot.recent_requests || []).forEach(upsertRequest);
    (snapshot.messages || []).forEach(upsertMessage);
    for (const request of snapshot.requests || []) {
      upsertRequest(request);
      if (request.partial) seedPartial(request.partial, request.id);
    }
    (snapshot.recent_actions || []).forEach(upsertAction);
    (snapshot.actions || []).forEach(upsertAction);
    if (Array.isArray(snapshot.presence)) renderPresence(snapshot.presence);
    if (live) setConnection("live", "Live");
    state.lastSeq = snapshot.seq;
    dom.empty.hidden = dom.timeline.children.length > 0;
  }

  function applyDurable(frame) {
    if (state.lastSeq === null || frame.seq <= state.lastSeq) return; // seen already
    if (frame.seq > state.lastSeq + 1) {
      requestResync();
      return; // the resync answer replays this one in order
    }
    const payload = frame[frame.type];
    if (frame.type === "message") upsertMessage(payload);
    else if (frame.type === "action") upsertAction(payload);
    else if (frame.type === "request") upsertRequest(payload);
    state.lastSeq = frame.seq;
  }

  function requestResync() {
    const now = Date.now();
    const asked = state.resyncAfter === state.lastSeq && now - state.resyncAt < RESYNC_RETRY_MS;
    if (asked) return;
    if (!socketOpen()) return; // the next connect brings a fresh snapshot
    state.resyncAfter = state.lastSeq;
    state.resyncAt = now;
    state.socket.send(JSON.stringify({ type: "resync", after: state.lastSeq }));
  }

  function handleFrame(frame) {
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "snapshot": applySnapshot(frame, true); break;
      case "delta": applyDelta(frame); break;
      case "presence": renderPresence(frame.users); break;
      case "error": handleError(frame); break;
      default:
        if (typeof frame.seq === "number") applyDurable(frame);
    }
  }

  function handleError(frame) {
    showNotice(frame.detail || "The server refused that.");
    if (frame.frame === "decide") releaseBusy();
    if (frame.frame === "chat" && !dom.text.value) dom.text.value = state.lastChatText;
  }

  // The socket ------------------------------------------------------------------------

  function socketOpen() {
    return state.socket !== null && state.socket.readyState === WebSocket.OPEN;
  }

  function connect() {
    window.clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.closedForGood || state.socket) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${window.location.host}/ws/rooms/${encodeURIComponent(config.slug)}/`;
    setConnection("connecting", state.attempt ? "Reconnecting…" : "Connecting…");
    const socket = new WebSocket(url);
    state.socket = socket;
    socket.addEventListener("open", () => {
      state.attempt = 0;
      state.resyncAfter = null;
      setConnection("connecting", "Syncing…");
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      handleFrame(frame);
    });
    socket.addEventListener("close", (event) => onClose(socket, event));
  }

  function onClose(socket, event) {
    if (state.socket !== socket) return;
    state.socket = null;
    if (FINAL_CLOSE[event.code]) {
      state.closedForGood = true;
      setConnection("offline", "Disconnected");
      showNotice(FINAL_CLOSE[event.code]);
      return;
    }
    scheduleReconnect();
  }

  /* Exponential backoff with jitter, so a restarted server is not hit by every
     open page at the same instant. */
  function scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const jittered = base * (0.75 + Math.random() * 0.5);
    const delay = Math.max(BACKOFF_MIN_MS, Math.min(BACKOFF_MAX_MS, jittered));
    state.attempt += 1;
    setConnection("offline", `Offline · retrying in ${Math.ceil(delay / 1000)} s`);
    state.reconnectTimer = window.setTimeout(connect, delay);
  }

  /* Sends a frame over the socket, or the same operation over REST while the
     socket is down. Resolves to false if the REST call was refused. */
  function sendFrame(frame, url, body) {
    if (socketOpen()) {
      state.socket.send(JSON.stringify(frame));
      return Promise.resolve(true);
    }
    return postJson(url, body);
  }

  async function postJson(url, body) {
    try {
      const response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": dom.csrf.value },
        body: JSON.stringify(body),
      });
      if (response.ok) return true;
      const answer = await response.json().catch(() => ({}));
      showNotice(answer.detail || `The server answered ${response.status}.`);
    } catch (error) {
      showNotice("Could not reach the server. Check your connection and try again.");
    }
    return false;
  }

  // The composer ----------------------------------------------------------------------

  function submitChat(event) {
    event.preventDefault();
    const text = dom.text.value;
    if (!text.trim()) {
      dom.text.focus();
      return;
    }
    if (text.length > config.maxChars) {
      showNotice(`Messages are limited to ${config.maxChars} characters.`);
      return;
    }
    state.lastChatText = text;
    dom.text.value = "";
    growComposer();
    const url = `/api/rooms/${encodeURIComponent(config.slug)}/requests`;
    sendFrame({ type: "chat", text }, url, { text }).then((ok) => {
      if (!ok && !dom.text.value) dom.text.value = text; // keep what was typed
    });
  }

  function growComposer() {
    dom.text.style.height = "auto";
    dom.text.style.height = `${Math.min(dom.text.scrollHeight, 200)}px`;
  }

  function onComposerKey(event) {
    // Enter sends, Shift+Enter is a new line; never while an IME is composing.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      dom.composer.requestSubmit();
      event.preventDefault();
    }
  }

  // Start -----------------------------------------------------------------------------

  /* The snapshot the page was rendered with (json_script); null if it is broken. */
  function pageSnapshot() {
    const script = document.getElementById("room-snapshot");
    try {
      const snapshot = script ? JSON.parse(script.textContent) : null;
      return snapshot && Number.isInteger(snapshot.seq) ? snapshot : null;
    } catch (error) {
      return null; // the socket's snapshot draws the room all the same
    }
  }

  function start() {
    dom.composer.addEventListener("submit", submitChat);
    dom.text.addEventListener("keydown", onComposerKey);
    dom.text.addEventListener("input", growComposer);
    const seed = pageSnapshot();
    if (seed) applySnapshot(seed, false);
    // Come back at once when the network or the tab returns, not after the backoff.
    window.addEventListener("online", () => { if (!state.socket) connect(); });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !state.socket) connect();
    });
    connect();
  }

  start();
})();
