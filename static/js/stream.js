/*
 * Answers while they stream: one bubble per message id, drawn from the text so
 * far that the protocol computes from the deltas, until the final message takes
 * its place (messages.js) or its request ends.
 */

import { el, keepingScroll, markdown } from "./dom.js";

export function createStream({ timeline }) {
  const entries = new Map(); // message id -> {id, request, content, el, frame}

  function entryFor(messageId, requestId) {
    let entry = entries.get(messageId);
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
    entry = {
      id: messageId, request: requestId, content: "", el: item,
      frame: 0, drawnAt: 0, cost: 0,
    };
    entries.set(messageId, entry);
    keepingScroll(() => timeline.place(item, null));
    return entry;
  }

  /* The text so far of an answer ({message, request, content}). */
  function show(update) {
    const entry = entryFor(update.message, update.request);
    entry.content = update.content;
    scheduleRender(entry);
  }

  /* Re-rendering the whole answer on every token is wasteful, and a long answer
     costs more to render each time: draw at most once a frame, and wait at least
     four times as long as the last draw took, so that drawing never takes more
     than a fifth of the page's time however long the answer grows. */
  function scheduleRender(entry) {
    if (entry.frame) return;
    const wait = Math.max(0, entry.drawnAt + 4 * entry.cost - performance.now());
    entry.frame = window.setTimeout(() => {
      window.requestAnimationFrame(() => {
        entry.frame = 0;
        if (entries.get(entry.id) !== entry || entry.stopped) return;
        draw(entry);
      });
    }, wait);
  }

  function draw(entry) {
    const start = performance.now();
    const body = entry.el.querySelector(".msg__body");
    keepingScroll(() => {
      entry.el.hidden = !entry.content;
      body.replaceChildren(markdown(entry.content));
    });
    entry.drawnAt = performance.now();
    entry.cost = entry.drawnAt - start;
  }

  /* The bubble of a message whose final form arrived, taken out of the stream
     (the caller replaces or removes it); null if it never streamed. */
  function take(messageId) {
    const entry = entries.get(messageId);
    if (!entry) return null;
    entries.delete(messageId);
    return entry.el;
  }

  /* A request that ended leaves no more text: mark what it streamed as cut off. */
  function stop(requestId) {
    for (const [id, entry] of entries) {
      if (entry.request !== requestId || entry.stopped) continue;
      if (!entry.content) {
        // Nothing was said (a retried call cleared it): leave no empty bubble.
        entry.el.remove();
        entries.delete(id);
        continue;
      }
      entry.stopped = true;
      // The last text may still wait for its frame: draw it now.
      draw(entry);
      entry.el.classList.remove("msg--streaming");
      entry.el.classList.add("msg--stopped");
      const typing = entry.el.querySelector(".msg__typing");
      if (typing) typing.textContent = "stopped";
    }
  }

  return { show, take, stop };
}
