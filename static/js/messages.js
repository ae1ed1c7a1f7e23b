/*
 * Messages in the timeline (user, assistant, tool results), the answers still
 * streaming (stream.js), and the status of each request under the user message
 * that started it, with its Cancel button.
 */

import { ENDED } from "./protocol.js";
import { ACTION_LABELS } from "./actions.js";
import { viaLabel } from "./automation.js";
import {
  button, cssToken, el, keepingScroll, markdown, pretty, timeElement, timeOf,
} from "./dom.js";
import { createStream } from "./stream.js";

const REQUEST_LABELS = {
  queued: "Queued",
  running: "Working…",
  awaiting_approval: "Waiting for approval",
  completed: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

export function createMessages({ timeline, config, cancelRequest }) {
  const messages = new Map(); // id -> {data, el}: final messages, which never change
  const requests = new Map(); // id -> {id, status, error, trigger}
  const stream = createStream({ timeline });

  /* True when it drew a message the page did not show yet. */
  function upsertMessage(data) {
    if (messages.has(data.id)) return false;
    const streamed = stream.take(data.id);
    if (data.role === "assistant" && !String(data.content || "").trim()) {
      // Only tool calls, which the action cards show: nothing to say, so no
      // empty bubble.
      if (streamed) streamed.remove();
      return false;
    }
    const entry = { data, el: renderMessage(data) };
    keepingScroll(() => {
      if (streamed) streamed.replaceWith(entry.el);
      timeline.place(entry.el, timeOf(data.created));
    });
    messages.set(data.id, entry);
    return true;
  }

  /* Something the room is told about a turn that is not the agent's answer, such
     as a tool pack left out ({id, request, text, created}). */
  function showNotice(data) {
    if (messages.has(data.id)) return false;
    const item = el("li", "msg msg--notice");
    item.dataset.noticeId = data.id;
    item.append(el("span", "msg__notice", String(data.text || "")));
    keepingScroll(() => timeline.place(item, timeOf(data.created)));
    messages.set(data.id, { data, el: item });
    return true;
  }

  /* The text so far of an answer that streams ({message, request, content}). */
  function showText(update) {
    if (!messages.has(update.message)) stream.show(update);
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
    if (user) renderVia(meta, data.request);
    const body = el("div", user ? "msg__body msg__body--plain" : "msg__body md");
    if (user) body.textContent = data.content;
    else body.append(markdown(data.content));
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

  // Requests ------------------------------------------------------------------------

  function upsertRequest(data) {
    const previous = requests.get(data.id) || {};
    const request = {
      ...previous, id: data.id, status: data.status, error: data.error,
      trigger: data.trigger ?? previous.trigger ?? null,
    };
    requests.set(data.id, request);
    const owner = timeline.list.querySelector(
      `.msg--user[data-request="${CSS.escape(data.id)}"]`);
    if (owner) {
      renderVia(owner.querySelector(".msg__meta"), data.id);
      const message = messages.get(owner.dataset.messageId);
      renderRequestFooter(owner, message ? message.data : {});
    }
    if (ENDED.has(request.status)) stream.stop(data.id);
  }

  /* "via Linear trigger" (or GitHub, webhook, schedule) beside the author of a
     message a trigger or schedule posted, from its request's `trigger`; the
     request may arrive before or after the message. */
  function renderVia(meta, requestId) {
    const request = requestId ? requests.get(requestId) : null;
    const text = request ? viaLabel(request.trigger) : null;
    if (!meta || !text || meta.querySelector(".msg__via")) return;
    const label = el("span", "msg__via", text);
    meta.querySelector(".msg__author").after(label);
  }

  function renderRequestFooter(item, message) {
    const footer = item.querySelector(".msg__request");
    const request = requests.get(item.dataset.request);
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

  return { upsertMessage, upsertRequest, showText, showNotice };
}
