/*
 * The room page's entry point (an ES module): it draws the snapshot the page was
 * rendered with, then follows the room's WebSocket (protocol.js) and hands each
 * update to the module that draws it, as Zulip's server_events_dispatch.ts does.
 * Everything is upserted by id, so an item that arrives twice (page and socket
 * snapshot, snapshot and event, resync and live) is drawn once.
 */

import { createActions } from "./actions.js";
import {
  actionAnnouncement, createAnnouncer, messageAnnouncement, spoken,
} from "./announce.js";
import { mayVote } from "./approvals.js";
import { createBatches } from "./batch.js";
import { createComposer } from "./composer.js";
import { createMessages } from "./messages.js";
import { createNotices, refusalText, showConnection } from "./notices.js";
import { createPolicyPanel } from "./policy.js";
import { renderPresence } from "./presence.js";
import { createRoomSocket } from "./protocol.js";
import { createStatsPanel } from "./stats.js";
import { createTimeline } from "./timeline.js";
import { createSchedulesPanel, createTriggersPanel } from "./triggers.js";

const root = document.getElementById("room");
if (root) start(root);

function start(root) {
  const config = {
    slug: root.dataset.slug,
    username: root.dataset.username,
    canDecide: root.dataset.canDecide === "true",
    maxChars: Number(root.dataset.maxChars) || 10000,
  };
  const dom = {
    presence: document.getElementById("presence-list"),
    conn: document.getElementById("conn-status"),
    composer: document.getElementById("composer"),
    text: document.getElementById("composer-text"),
    counter: document.getElementById("composer-count"),
    csrf: document.querySelector("#composer [name=csrfmiddlewaretoken]"),
  };
  const notices = createNotices(document.getElementById("notices"));
  const announcer = createAnnouncer(document.getElementById("timeline-live"));
  const timeline = createTimeline({
    list: document.getElementById("timeline"),
    empty: document.getElementById("timeline-empty"),
  });

  /* A frame over the socket, or its REST twin while the socket is down;
     resolves to false (after a notice, or the reason on the action's card) if
     the server refused it. Called only from clicks and keys, after `socket`
     and `actions` below exist. */
  async function send(frame, rest) {
    const answer = await socket.send(frame, rest);
    if (!answer.ok && !(onCard(frame.type) && actions.refused(refusalText(answer)))) {
      notices.showRefusal(answer);
    }
    return answer.ok;
  }

  function onCard(frameType) {
    return frameType === "decide" || frameType === "retract";
  }

  function cancelRequest(id) {
    const url = `/api/requests/${encodeURIComponent(id)}/cancel`;
    return send({ type: "cancel", request: id }, { url, body: {} });
  }

  const messages = createMessages({ timeline, config, cancelRequest });
  const actions = createActions({ timeline, config, send });
  // Approve all / Deny all: the bar says what was refused, not a notice.
  const batches = createBatches({
    timeline, config, announce: announcer.say,
    send: (frame, rest) => socket.send(frame, rest),
  });
  const composer = createComposer({
    form: dom.composer, text: dom.text, counter: dom.counter, announce: announcer.say,
    config, send, notices,
  });

  /* What is said aloud: live updates only, once each (announce.js). */
  const statuses = new Map(); // action id -> the status last drawn
  const answering = new Set(); // ids of streamed messages already announced
  const viewer = { username: config.username };

  function onMessage(data) {
    if (messages.upsertMessage(data)) announcer.say(messageAnnouncement(data, config.username));
  }

  function onAction(data) {
    const before = statuses.get(data.id);
    actions.upsertAction(data);
    batches.update(data);
    statuses.set(data.id, data.status);
    announcer.say(actionAnnouncement(data, before, mayVote(data, viewer)));
  }

  function onNotice(data) {
    if (messages.showNotice(data)) announcer.say(spoken(data.text));
  }

  function onText(update) {
    // Once when an answer starts to stream; the whole answer when it is final.
    if (update.content && !answering.has(update.message)) {
      answering.add(update.message);
      announcer.say("The agent is answering…");
    }
    messages.showText(update);
  }

  function drawSnapshot(snapshot) {
    // Requests first: the footers under user messages are drawn from them.
    snapshot.recent_requests.forEach(messages.upsertRequest);
    snapshot.messages.forEach(messages.upsertMessage);
    snapshot.requests.forEach(messages.upsertRequest);
    for (const action of [...snapshot.recent_actions, ...snapshot.actions]) {
      actions.upsertAction(action);
      batches.update(action);
      statuses.set(action.id, action.status);
    }
    // Policy events missed while the socket was away.
    if (policyPanel) policyPanel.resync();
    // The page's own snapshot leaves presence to the socket (null).
    if (snapshot.presence) renderPresence(dom.presence, snapshot.presence, config.username);
    timeline.refreshEmpty();
  }

  function onError(error) {
    const detail = error.detail || "The server refused that.";
    if (error.frame === "decide_all" && batches.refused(detail)) return;
    if (!(onCard(error.frame) && actions.refused(detail))) notices.show(detail);
    if (error.frame === "chat") composer.restore();
  }

  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const socket = createRoomSocket({
    url: `${scheme}//${window.location.host}/ws/rooms/${encodeURIComponent(config.slug)}/`,
    WebSocket: window.WebSocket,
    setTimeout: (callback, ms) => window.setTimeout(callback, ms),
    clearTimeout: (id) => window.clearTimeout(id),
    fetch: (url, init) => window.fetch(url, init),
    now: () => Date.now(),
    random: () => Math.random(),
    csrfToken: () => dom.csrf.value,
    on: {
      snapshot: drawSnapshot,
      message: onMessage,
      request: messages.upsertRequest,
      action: onAction,
      notice: onNotice,
      text: onText,
      presence: (users) => renderPresence(dom.presence, users, config.username),
      policy: (change) => { if (policyPanel) policyPanel.apply(change); },
      decidedAll: (result) => batches.done(result),
      error: onError,
      status: (update) => showConnection(dom.conn, update, notices),
    },
  });

  // Come back at once when the network or the tab returns, not after the backoff.
  window.addEventListener("online", () => socket.reconnectNow());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") socket.reconnectNow();
  });
  const policy = document.getElementById("policy");
  const policyPanel = policy ? createPolicyPanel({
    root: policy, config, csrfToken: () => dom.csrf.value,
    fetch: (url, init) => window.fetch(url, init),
  }) : null;
  const stats = document.getElementById("stats"); // approvers only
  if (stats) createStatsPanel({ root: stats, config, fetch: (url, init) => window.fetch(url, init) });
  if (config.canDecide) loadTargets();
  socket.start(pageSnapshot());

  /* Which argument names each tool's target: a pending card may offer a grant. */
  async function loadTargets() {
    try {
      const response = await window.fetch(
        `/api/tools?room=${encodeURIComponent(config.slug)}`,
        { credentials: "same-origin", headers: { Accept: "application/json" } });
      const tools = response.ok ? await response.json() : null;
      if (Array.isArray(tools)) actions.setTargets(tools);
    } catch (error) {
      // No grant buttons: Approve still works.
    }
  }

  // Approvers only: the template leaves both panels out of anyone else's page.
  const triggers = document.getElementById("triggers");
  if (triggers) {
    createTriggersPanel({
      root: triggers, config, csrfToken: () => dom.csrf.value,
      fetch: (url, init) => window.fetch(url, init),
      clipboard: window.navigator.clipboard,
    });
  }
  const schedules = document.getElementById("schedules");
  if (schedules) {
    createSchedulesPanel({
      root: schedules, config, csrfToken: () => dom.csrf.value,
      fetch: (url, init) => window.fetch(url, init),
    });
  }
}

/* The snapshot the page was rendered with (json_script); null if it is broken,
   and the socket's snapshot draws the room all the same. */
function pageSnapshot() {
  const script = document.getElementById("room-snapshot");
  try {
    return script ? JSON.parse(script.textContent) : null;
  } catch (error) {
    return null;
  }
}
