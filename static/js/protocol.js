/*
 * The room's WebSocket protocol (docs/PROTOCOL.md), with no DOM in it: the socket,
 * frame validation, seq order, gap fill, snapshots, reconnecting with backoff, the
 * REST fallback for sends while the socket is down, and the text streamed so far
 * for each answer (delta offsets). What an update does to the page is the caller's:
 * room.js hands each one to the rendering modules, as Zulip keeps server_events.ts
 * (transport, validation, buffering) apart from server_events_dispatch.ts.
 *
 * The WebSocket constructor, timers, fetch, clock and randomness are parameters,
 * so tests/js drive all of it with fakes.
 */

export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 10000;
// A gap whose resync answer has not arrived by then is asked for again.
export const RESYNC_RETRY_MS = 5000;
// Events held past a gap; beyond this the resync answer replays them anyway.
export const MAX_HELD = 1000;
// Reconnecting cannot help after these (PROTOCOL.md); after any other close (4408,
// 1011, a dropped network) a client reconnects and gets a fresh snapshot.
export const FINAL_CLOSE_CODES = new Set([4401, 4403, 4404]);
export const ENDED = new Set(["completed", "failed", "cancelled"]);

const DURABLE = new Set(["message", "action", "request", "notice"]);
const SNAPSHOT_LISTS = ["messages", "requests", "actions", "recent_actions", "recent_requests"];
const OPEN = 1; // WebSocket.OPEN

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isSeq(value) {
  return Number.isSafeInteger(value) && value >= 0;
}

function hasId(value) {
  return isObject(value) && typeof value.id === "string" && value.id !== "";
}

function isPartial(value) {
  return isObject(value) && typeof value.message === "string"
    && typeof value.content === "string";
}

/* A snapshot as the rest of the page may trust it, or null without a valid seq.
   Lists that are missing or not lists become empty, items without an id and
   broken partials are left out: a half-broken snapshot still draws the room. */
export function parseSnapshot(value) {
  if (!isObject(value) || !isSeq(value.seq)) return null;
  const snapshot = { ...value, type: "snapshot" };
  for (const key of SNAPSHOT_LISTS) {
    snapshot[key] = Array.isArray(value[key]) ? value[key].filter(hasId) : [];
  }
  snapshot.requests = snapshot.requests.map((request) => (
    isPartial(request.partial) ? request : { ...request, partial: null }));
  snapshot.presence = isUsers(value.presence) ? value.presence : null;
  return snapshot;
}

function isUsers(value) {
  return Array.isArray(value) && value.every((name) => typeof name === "string");
}

/* A server frame (the text of a WebSocket message), or null if it is not one we
   can use. Durable events are checked only for their seq here: one with a broken
   payload still takes its place in the order (see dispatchDurable). */
export function parseFrame(text) {
  if (typeof text !== "string") return null; // binary frames are not ours
  let frame;
  try {
    frame = JSON.parse(text);
  } catch (error) {
    return null;
  }
  if (!isObject(frame) || typeof frame.type !== "string") return null;
  switch (frame.type) {
    case "snapshot":
      return parseSnapshot(frame);
    case "delta":
      return typeof frame.message === "string" && typeof frame.request === "string"
        && typeof frame.text === "string" && isSeq(frame.offset) ? frame : null;
    case "presence":
      return isUsers(frame.users) ? frame : null;
    case "error":
      return frame;
    case "decided_all":
      return typeof frame.request === "string" && Array.isArray(frame.actions)
        && Array.isArray(frame.refused) ? frame : null;
    default:
      // An event type this page does not know still counts for the seq order.
      if (frame.seq === undefined) return frame;
      return isSeq(frame.seq) && frame.seq > 0 ? frame : null;
  }
}

/* Exponential backoff with jitter (random in [0, 1)), so a restarted server is
   not hit by every open page at the same instant. */
export function backoffDelay(attempt, random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  const jittered = base * (0.75 + random * 0.5);
  return Math.max(BACKOFF_MIN_MS, Math.min(BACKOFF_MAX_MS, jittered));
}

/*
 * One room connection. `on` receives, in order:
 *   snapshot(snapshot)                the room as a whole (the page's, then each socket's)
 *   message(m), action(a), request(r) durable events, in seq order, each once
 *   text({message, request, content}) an answer's text so far (deltas applied)
 *   policy({change, rule, actor, action}) a `policy` event, in seq order, once
 *   presence(users), error({detail, frame})
 *   decidedAll({request, decision, actions, refused}) the sender's decide-all result
 *   status({state, attempt?, delay?, code?}) state: connecting, syncing, live,
 *                                            offline (retrying in delay ms), closed
 * Returns {start(seed), reconnectNow(), send(frame, rest), lastSeq}.
 */
export function createRoomSocket({
  url, WebSocket: Socket, setTimeout: later, clearTimeout: cancel, fetch: post,
  now, random, csrfToken, on,
}) {
  let socket = null;
  let attempt = 0;
  let reconnectTimer = null;
  let closedForGood = false;
  let lastSeq = null; // null until a snapshot
  const held = new Map(); // seq -> frame that arrived past a gap
  let resyncAfter = null;
  let resyncAt = 0;
  let resyncTimer = null;
  const partials = new Map(); // message id -> {request, content} while it streams
  const finished = new Set(); // message ids that take no more text

  function start(seed) {
    const snapshot = seed ? parseSnapshot(seed) : null;
    if (snapshot) applySnapshot(snapshot, false);
    connect();
  }

  function reconnectNow() {
    if (!socket && !closedForGood) connect();
  }

  function isOpen() {
    return socket !== null && socket.readyState === OPEN;
  }

  // The socket -----------------------------------------------------------------

  function connect() {
    cancel(reconnectTimer);
    reconnectTimer = null;
    if (closedForGood || socket) return;
    on.status({ state: "connecting", attempt });
    const current = new Socket(url);
    socket = current;
    current.addEventListener("open", () => {
      if (socket !== current) return;
      resyncAfter = null;
      on.status({ state: "syncing" });
    });
    current.addEventListener("message", (event) => {
      if (socket === current) receive(event.data);
    });
    current.addEventListener("close", (event) => onClose(current, event));
  }

  function onClose(closed, event) {
    if (socket !== closed) return;
    socket = null;
    // What was held past a gap is in the next snapshot.
    held.clear();
    cancel(resyncTimer);
    resyncTimer = null;
    if (FINAL_CLOSE_CODES.has(event.code)) {
      closedForGood = true;
      on.status({ state: "closed", code: event.code });
      return;
    }
    const delay = backoffDelay(attempt, random());
    attempt += 1;
    on.status({ state: "offline", attempt, delay });
    reconnectTimer = later(connect, delay);
  }

  function receive(text) {
    const frame = parseFrame(text);
    if (!frame) return;
    switch (frame.type) {
      case "snapshot": applySnapshot(frame, true); break;
      case "delta": applyDelta(frame); break;
      case "presence": on.presence(frame.users); break;
      case "decided_all": if (on.decidedAll) on.decidedAll(frame); break;
      case "error":
        on.error({ detail: typeof frame.detail === "string" ? frame.detail : "",
                   frame: typeof frame.frame === "string" ? frame.frame : "" });
        break;
      default:
        if (frame.seq !== undefined) applyDurable(frame);
    }
  }

  // Snapshots and durable events ----------------------------------------------

  /* A snapshot replaces what we knew, its seq included (lower only when the
     room's history was reset): it lists recent actions and requests whatever
     their status, so nothing needs replaying after it. */
  function applySnapshot(snapshot, fromSocket) {
    lastSeq = snapshot.seq;
    for (const seq of held.keys()) if (seq <= lastSeq) held.delete(seq);
    partials.clear();
    finished.clear();
    for (const message of snapshot.messages) finished.add(message.id);
    on.snapshot(snapshot);
    for (const request of snapshot.requests) {
      const partial = request.partial;
      if (!partial || finished.has(partial.message)) continue;
      partials.set(partial.message, { request: request.id, content: partial.content });
      on.text({ message: partial.message, request: request.id, content: partial.content });
    }
    if (fromSocket) {
      attempt = 0; // only a connection that delivered its snapshot resets the backoff
      on.status({ state: "live" });
    }
    drain();
  }

  function applyDurable(frame) {
    if (lastSeq === null || frame.seq <= lastSeq) return; // seen already
    if (frame.seq > lastSeq + 1) {
      hold(frame);
      requestResync();
      return;
    }
    apply(frame);
    drain();
  }

  function apply(frame) {
    lastSeq = frame.seq;
    dispatchDurable(frame);
  }

  /* Events held past a gap follow as soon as the gap is filled. */
  function drain() {
    while (held.has(lastSeq + 1)) {
      const next = held.get(lastSeq + 1);
      held.delete(next.seq);
      apply(next);
    }
    if (held.size === 0) {
      cancel(resyncTimer);
      resyncTimer = null;
    }
  }

  function hold(frame) {
    if (held.size >= MAX_HELD) held.clear();
    held.set(frame.seq, frame);
  }

  function dispatchDurable(frame) {
    const payload = frame[frame.type];
    if (frame.type === "policy") {
      // A rule changed: its payload names the rule, not itself.
      if (on.policy && isObject(payload) && hasId(payload.rule)) on.policy(payload);
      return;
    }
    // An unknown type or a broken payload counts only for the seq order.
    if (!DURABLE.has(frame.type) || !hasId(payload)) return;
    if (frame.type === "message") {
      partials.delete(payload.id);
      finished.add(payload.id);
      on.message(payload);
    } else if (frame.type === "request") {
      if (ENDED.has(payload.status)) endStreams(payload.id);
      on.request(payload);
    } else if (frame.type === "notice") {
      if (on.notice) on.notice(payload);
    } else {
      on.action(payload);
    }
  }

  function requestResync() {
    if (!isOpen()) return; // the next connect brings a fresh snapshot
    const at = now();
    if (resyncAfter === lastSeq && at - resyncAt < RESYNC_RETRY_MS) return; // asked
    resyncAfter = lastSeq;
    resyncAt = at;
    socket.send(JSON.stringify({ type: "resync", after: lastSeq }));
    cancel(resyncTimer);
    resyncTimer = later(() => {
      resyncTimer = null;
      if (held.size) requestResync();
    }, RESYNC_RETRY_MS);
  }

  // Streamed text ----------------------------------------------------------------

  /* content = content[:offset] + text; a retried model call restarts at offset 0
     with empty text, which clears what was shown. */
  function applyDelta(frame) {
    if (finished.has(frame.message)) return; // the final message is shown
    const known = partials.get(frame.message);
    if (!known && frame.offset > 0) return; // its start is missing; wait for the final
    const entry = known || { request: frame.request, content: "" };
    // A delta went missing: the rest would garble the answer, and the final
    // message brings the whole text anyway.
    if (frame.offset > entry.content.length) return;
    entry.content = entry.content.slice(0, frame.offset) + frame.text;
    partials.set(frame.message, entry);
    on.text({ message: frame.message, request: entry.request, content: entry.content });
  }

  /* A request that ended streams no more: late deltas of its answers are dropped. */
  function endStreams(requestId) {
    for (const [id, entry] of partials) {
      if (entry.request !== requestId) continue;
      partials.delete(id);
      finished.add(id);
    }
  }

  // Sending ------------------------------------------------------------------------

  /* Sends a client frame over the socket, or the same operation over REST
     (rest: {url, body}) while the socket is down. Resolves to {ok: true} (over
     REST, with the answer's JSON as `data`, or null), or {ok: false, status,
     detail} (status 0: the server was not reached). */
  async function send(frame, rest) {
    if (isOpen()) {
      socket.send(JSON.stringify(frame));
      return { ok: true };
    }
    let response;
    try {
      response = await post(rest.url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(rest.body),
      });
    } catch (error) {
      return { ok: false, status: 0, detail: null };
    }
    const answer = await readJson(response);
    if (response.ok) return { ok: true, data: answer };
    const detail = isObject(answer) && typeof answer.detail === "string" ? answer.detail : null;
    return { ok: false, status: response.status, detail };
  }

  async function readJson(response) {
    if (typeof response.json !== "function") return null;
    return response.json().catch(() => null);
  }

  return {
    start,
    reconnectNow,
    send,
    get lastSeq() {
      return lastSeq;
    },
  };
}
