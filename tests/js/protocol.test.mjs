// The room protocol (static/js/protocol.js) against a fake WebSocket, a fake clock
// and a fake fetch: what a reader of the room page would notice (order, gaps,
// streamed text, reconnects), without a browser. Run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BACKOFF_MAX_MS,
  BACKOFF_MIN_MS,
  RESYNC_RETRY_MS,
  backoffDelay,
  createRoomSocket,
} from "../../static/js/protocol.js";

const URL = "ws://room.test/ws/rooms/triage/";

/* Timers that run only when the test moves the clock. */
class FakeClock {
  now = 0;
  timers = new Map();
  nextId = 1;

  setTimeout(callback, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + ms, callback });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.timers].filter(([, t]) => t.at <= until)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (!due) break;
      const [id, timer] = due;
      this.timers.delete(id);
      this.now = timer.at;
      timer.callback();
    }
    this.now = until;
  }
}

/* The browser's WebSocket as far as the protocol uses it; the test plays the server. */
class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.listeners = { open: [], message: [], close: [] };
  }

  addEventListener(type, listener) {
    this.listeners[type].push(listener);
  }

  send(text) {
    assert.equal(this.readyState, 1, "sent on a socket that is not open");
    this.sent.push(JSON.parse(text));
  }

  // The server's side --------------------------------------------------------

  open() {
    this.readyState = 1;
    this.emit("open", {});
  }

  receive(frame) {
    this.emit("message", { data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  close(code) {
    this.readyState = 3;
    this.emit("close", { code });
  }

  emit(type, event) {
    for (const listener of this.listeners[type]) listener(event);
  }
}

const KINDS = ["snapshot", "message", "action", "request", "text", "presence", "error",
               "status", "policy", "decidedAll"];

/* A room page's connection with everything it reports recorded in `seen`. */
function room({ random = () => 0.5, fetch } = {}) {
  const clock = new FakeClock();
  const sockets = [];
  const seen = [];
  const connection = createRoomSocket({
    url: URL,
    WebSocket: class extends FakeSocket {
      constructor(url) {
        super(url);
        sockets.push(this);
      }
    },
    setTimeout: (callback, ms) => clock.setTimeout(callback, ms),
    clearTimeout: (id) => clock.clearTimeout(id),
    fetch: fetch || (() => assert.fail("fetch while the socket is open")),
    now: () => clock.now,
    random,
    csrfToken: () => "the-csrf-token",
    on: Object.fromEntries(KINDS.map((kind) => [kind, (value) => seen.push([kind, value])])),
  });
  return {
    connection,
    clock,
    sockets,
    seen,
    get socket() {
      return sockets.at(-1);
    },
    of(kind) {
      return seen.filter(([k]) => k === kind).map(([, value]) => value);
    },
    /* Connects and receives the server's snapshot. */
    live(seq = 0, extra = {}) {
      connection.start(null);
      this.socket.open();
      this.socket.receive(snapshot(seq, extra));
      seen.length = 0;
      return this;
    },
    /* The durable events dispatched, as "type:id" in the order they were drawn. */
    drawn() {
      return seen.filter(([k]) => ["message", "action", "request"].includes(k))
        .map(([kind, value]) => `${kind}:${value.id}`);
    },
  };
}

function snapshot(seq, extra = {}) {
  return { type: "snapshot", seq, messages: [], requests: [], actions: [], presence: [],
           recent_actions: [], recent_requests: [], ...extra };
}

function message(seq, id, extra = {}) {
  return { type: "message", seq, message: { id, role: "user", content: "hi", ...extra } };
}

function action(seq, id, status = "pending") {
  return { type: "action", seq, action: { id, tool: "delete_issue", status } };
}

function request(seq, id, status) {
  return { type: "request", seq, request: { id, status, error: "" } };
}

function delta(messageId, offset, text, requestId = "r1") {
  return { type: "delta", request: requestId, message: messageId, offset, text };
}

function texts(page) {
  return page.of("text").map((update) => update.content);
}

function resyncs(socket) {
  return socket.sent.filter((frame) => frame.type === "resync").map((frame) => frame.after);
}

// Seq order -------------------------------------------------------------------------

test("events after the snapshot are drawn in seq order, each once", () => {
  const page = room().live(3);

  page.socket.receive(message(4, "m4"));
  page.socket.receive(action(5, "a5"));
  page.socket.receive(request(6, "r6", "running"));

  assert.deepEqual(page.drawn(), ["message:m4", "action:a5", "request:r6"]);
  assert.equal(page.connection.lastSeq, 6);
  assert.deepEqual(resyncs(page.socket), []);
});

test("an event with an old or repeated seq is ignored", () => {
  const page = room().live(5);

  page.socket.receive(message(5, "in-the-snapshot"));
  page.socket.receive(message(2, "older"));
  page.socket.receive(message(6, "m6"));
  page.socket.receive(message(6, "m6"));

  assert.deepEqual(page.drawn(), ["message:m6"]);
});

test("a gap asks for a resync and the events past it follow the fill in order", () => {
  const page = room().live(3);

  page.socket.receive(message(6, "m6"));
  page.socket.receive(message(7, "m7"));
  assert.deepEqual(page.drawn(), [], "nothing is drawn out of order");
  assert.deepEqual(resyncs(page.socket), [3], "one resync for one gap");

  // The resync answer: everything after 3, the held ones included.
  for (const seq of [4, 5, 6, 7]) page.socket.receive(message(seq, `m${seq}`));

  assert.deepEqual(page.drawn(), ["message:m4", "message:m5", "message:m6", "message:m7"]);
  assert.equal(page.connection.lastSeq, 7);
});

test("a resync that is not answered is asked for again after five seconds", () => {
  const page = room().live(3);
  page.socket.receive(message(5, "m5"));

  page.clock.advance(RESYNC_RETRY_MS - 1);
  assert.deepEqual(resyncs(page.socket), [3]);
  page.clock.advance(1);
  assert.deepEqual(resyncs(page.socket), [3, 3]);

  page.socket.receive(message(4, "m4"));
  page.clock.advance(RESYNC_RETRY_MS * 3);
  assert.deepEqual(resyncs(page.socket), [3, 3], "no more asking once the gap is filled");
  assert.deepEqual(page.drawn(), ["message:m4", "message:m5"]);
});

test("a resync from far back answered by a snapshot: held events past it follow", () => {
  const page = room().live(3);
  page.socket.receive(message(700, "m700"));
  page.socket.receive(message(702, "m702"));
  assert.deepEqual(resyncs(page.socket), [3]);

  // More than 500 events behind: the server sends a fresh snapshot instead.
  page.socket.receive(snapshot(701));
  page.socket.receive(message(703, "m703"));

  assert.deepEqual(page.drawn(), ["message:m702", "message:m703"]);
  assert.equal(page.connection.lastSeq, 703);
  page.clock.advance(RESYNC_RETRY_MS * 3);
  assert.deepEqual(resyncs(page.socket), [3], "nothing more to ask");
});

test("an event of an unknown type or with a broken payload still takes its seq", () => {
  const page = room().live(1);

  page.socket.receive({ type: "reaction", seq: 2, reaction: { id: "x" } });
  page.socket.receive({ type: "message", seq: 3, message: { content: "no id" } });
  page.socket.receive(message(4, "m4"));

  assert.deepEqual(page.drawn(), ["message:m4"]);
  assert.deepEqual(resyncs(page.socket), [], "no gap was seen");
});

test("frames that are not valid are dropped and the connection goes on", () => {
  const page = room().live(1);

  for (const frame of ["not json", "[1, 2]", '"message"', "null", { type: 5 },
                       { type: "message", seq: "2", message: { id: "m" } },
                       { type: "message", seq: 2.5, message: { id: "m" } },
                       { type: "delta", message: "m", request: "r1", offset: "0", text: "x" },
                       { type: "presence", users: "alice" }]) {
    page.socket.receive(frame);
  }
  page.socket.receive(message(2, "m2"));

  assert.deepEqual(page.seen.map(([kind]) => kind), ["message"]);
  assert.deepEqual(page.drawn(), ["message:m2"]);
});

test("presence and error frames are handed on", () => {
  const page = room().live(1);

  page.socket.receive({ type: "presence", users: ["alice", "bob"] });
  page.socket.receive({ type: "error", detail: "Already decided.", frame: "decide" });

  assert.deepEqual(page.of("presence"), [["alice", "bob"]]);
  assert.deepEqual(page.of("error"), [{ detail: "Already decided.", frame: "decide" }]);
});

test("policy events are handed on in seq order; one naming no rule only takes its seq", () => {
  const page = room().live(1);
  const change = { change: "granted", rule: { id: "p1", tool: "add_comment" },
                   actor: "alice", action: "a1" };

  page.socket.receive({ type: "policy", seq: 3, policy: change }); // past a gap: held
  page.socket.receive({ type: "policy", seq: 2, policy: { change: "created", rule: null } });
  page.socket.receive(message(4, "m4"));

  assert.deepEqual(page.of("policy"), [change]);
  assert.deepEqual(page.drawn(), ["message:m4"]);
  assert.deepEqual(resyncs(page.socket), [1]);
});

test("the sender's decided_all is handed on; a broken one is dropped", () => {
  const page = room().live(1);
  const result = { type: "decided_all", request: "r1", decision: "approve",
                   actions: ["a1", "a2"], refused: [{ action: "a3", status: 403, detail: "" }] };

  page.socket.receive(result);
  page.socket.receive({ type: "decided_all", request: "r1", actions: "a1", refused: [] });

  assert.deepEqual(page.of("decidedAll"), [result]);
});

// Streamed text -----------------------------------------------------------------------

test("deltas build the answer as content[:offset] + text", () => {
  const page = room().live(1);

  page.socket.receive(delta("m1", 0, "Hel"));
  page.socket.receive(delta("m1", 3, "lo"));
  page.socket.receive(delta("m1", 5, " world"));
  page.socket.receive(delta("m1", 3, "p!"));

  assert.deepEqual(texts(page), ["Hel", "Hello", "Hello world", "Help!"]);
  assert.deepEqual(page.of("text")[0], { message: "m1", request: "r1", content: "Hel" });
});

test("an empty delta at offset 0 clears the answer, and the retry never shows twice", () => {
  const page = room().live(1);

  page.socket.receive(delta("m1", 0, "1 2 3"));
  page.socket.receive(delta("m1", 0, ""));
  page.socket.receive(delta("m1", 0, "1 2"));
  page.socket.receive(delta("m1", 3, " 3"));

  assert.deepEqual(texts(page), ["1 2 3", "", "1 2", "1 2 3"]);
});

test("a delta whose start is missing, or past the end of the text, is not shown", () => {
  const page = room().live(1);

  page.socket.receive(delta("joined-late", 5, "tail"));
  page.socket.receive(delta("m1", 0, "Hi"));
  page.socket.receive(delta("m1", 10, "after a lost delta"));

  assert.deepEqual(texts(page), ["Hi"]);
});

test("no text is shown after the final message or after the request ended", () => {
  const page = room().live(1);

  page.socket.receive(delta("m1", 0, "Done"));
  page.socket.receive(message(2, "m1", { role: "assistant", content: "Done." }));
  page.socket.receive(delta("m1", 0, "Done"));
  page.socket.receive(delta("m2", 0, "Counting 1 2", "r2"));
  page.socket.receive(request(3, "r2", "cancelled"));
  page.socket.receive(delta("m2", 12, " 3", "r2"));
  page.socket.receive(delta("m2", 0, "again", "r2"));

  assert.deepEqual(texts(page), ["Done", "Counting 1 2"]);
});

test("the snapshot's half answer is shown and the stream carries on from it", () => {
  const page = room();
  page.connection.start(null);
  page.socket.open();

  page.socket.receive(snapshot(4, {
    requests: [{ id: "r1", status: "running", error: "",
                 partial: { message: "m1", content: "1 2 3 " } }],
  }));
  page.socket.receive(delta("m1", 6, "4 "));

  assert.deepEqual(page.seen.map(([kind]) => kind).slice(0, 3),
                   ["status", "status", "snapshot"]);
  assert.deepEqual(texts(page), ["1 2 3 ", "1 2 3 4 "]);
});

// Snapshots ---------------------------------------------------------------------------

test("the page's snapshot is drawn at once; the page is live after the socket's", () => {
  const page = room();

  page.connection.start(snapshot(4, { messages: [{ id: "m1", role: "user" }] }));
  assert.deepEqual(page.of("snapshot").map((s) => s.seq), [4]);
  assert.deepEqual(page.of("status"), [{ state: "connecting", attempt: 0 }]);
  assert.equal(page.socket.url, URL);

  page.socket.open();
  page.socket.receive(snapshot(6));
  page.socket.receive(message(7, "m7"));

  assert.deepEqual(page.of("snapshot").map((s) => s.seq), [4, 6]);
  assert.deepEqual(page.of("status").map((s) => s.state), ["connecting", "syncing", "live"]);
  assert.deepEqual(page.drawn(), ["message:m7"]);
  assert.deepEqual(resyncs(page.socket), [], "a newer snapshot needs no replay");
});

test("a broken page snapshot is skipped and the socket's snapshot draws the room", () => {
  const page = room();

  page.connection.start({ seq: "4", messages: [] });
  page.socket.open();
  const actions = [{ id: "a1" }, { tool: "no id" }];
  page.socket.receive(snapshot(4, { messages: "nope", actions }));

  const [drawn] = page.of("snapshot");
  assert.equal(page.of("snapshot").length, 1);
  assert.deepEqual(drawn.messages, []);
  assert.deepEqual(drawn.actions, [{ id: "a1" }]);
});

test("a fresh snapshot replaces the state: its seq, and the text streamed so far", () => {
  const page = room().live(10);
  page.socket.receive(delta("m1", 0, "stale text", "r1"));
  page.socket.receive(message(12, "m12")); // held behind a gap

  page.socket.receive(snapshot(20, {
    requests: [{ id: "r1", status: "running", error: "",
                 partial: { message: "m1", content: "newer text" } }],
  }));
  page.socket.receive(message(15, "old"));
  page.socket.receive(message(21, "m21"));
  page.socket.receive(delta("m1", 10, "!", "r1"));

  assert.deepEqual(page.drawn(), ["message:m21"]);
  assert.deepEqual(texts(page), ["stale text", "newer text", "newer text!"]);
  assert.deepEqual(resyncs(page.socket), [10], "only the gap before the snapshot");

  // A room whose history was reset sends a lower seq: it counts from there.
  page.socket.receive(snapshot(2));
  page.socket.receive(message(3, "m3"));
  assert.deepEqual(page.drawn(), ["message:m21", "message:m3"]);
});

// Reconnecting ------------------------------------------------------------------------

test("a dropped socket reconnects with exponential backoff, reset by a snapshot", () => {
  const page = room().live(1);
  const delays = [];

  for (let i = 0; i < 7; i += 1) {
    page.socket.close(1006);
    const { delay } = page.of("status").at(-1);
    delays.push(delay);
    const before = page.sockets.length;
    page.clock.advance(delay - 1);
    assert.equal(page.sockets.length, before, "reconnected before the backoff");
    page.clock.advance(1);
    assert.equal(page.sockets.length, before + 1);
    page.socket.open(); // accepted, but closed again before its snapshot
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
  assert.deepEqual(page.of("status").at(-2), { state: "connecting", attempt: 7 });

  page.socket.receive(snapshot(1));
  page.socket.close(1006);
  assert.equal(page.of("status").at(-1).delay, BACKOFF_MIN_MS);
});

test("the backoff is jittered by a quarter either way, within its bounds", () => {
  assert.equal(backoffDelay(2, 0), 1500);
  assert.equal(backoffDelay(2, 0.5), 2000);
  assert.ok(Math.abs(backoffDelay(2, 0.9999) - 2500) < 1);
  assert.equal(backoffDelay(0, 0), BACKOFF_MIN_MS);
  assert.equal(backoffDelay(30, 0.9999), BACKOFF_MAX_MS);

  const page = room({ random: () => 0 }).live(1);
  page.socket.close(1006);
  page.clock.advance(BACKOFF_MIN_MS);
  assert.equal(page.sockets.length, 2);
});

for (const code of [4401, 4403, 4404]) {
  test(`a close with ${code} stops reconnecting`, () => {
    const page = room().live(1);

    page.socket.close(code);
    page.clock.advance(60_000);
    page.connection.reconnectNow();

    assert.equal(page.sockets.length, 1);
    assert.deepEqual(page.of("status"), [{ state: "closed", code }]);
  });
}

for (const code of [4408, 1011, 4429, 1012]) {
  test(`a close with ${code} reconnects and the new snapshot makes the page live`, () => {
    const page = room().live(1);

    page.socket.close(code);
    page.clock.advance(BACKOFF_MAX_MS);
    page.socket.open();
    page.socket.receive(snapshot(5));
    page.socket.receive(message(6, "m6"));

    assert.equal(page.sockets.length, 2);
    assert.equal(page.of("status").at(-1).state, "live");
    assert.deepEqual(page.drawn(), ["message:m6"]);
  });
}

test("reconnectNow skips the backoff, and the pending retry opens no second socket", () => {
  const page = room().live(1);
  page.socket.close(1006);

  page.connection.reconnectNow();
  assert.equal(page.sockets.length, 2);
  page.connection.reconnectNow();
  page.clock.advance(BACKOFF_MAX_MS);

  assert.equal(page.sockets.length, 2);
});

test("after a reconnect, events missed meanwhile come with the snapshot, each once", () => {
  const page = room().live(3);
  page.socket.receive(message(5, "m5")); // a gap: held, resync asked
  page.socket.close(1006);
  page.clock.advance(BACKOFF_MAX_MS);

  page.socket.open();
  page.socket.receive(snapshot(5));
  page.socket.receive(message(5, "m5"));
  page.socket.receive(message(6, "m6"));

  assert.deepEqual(page.drawn(), ["message:m6"]);
  assert.deepEqual(resyncs(page.socket), [], "the new connection needs no resync");
});

test("a socket that was replaced says nothing more", () => {
  const page = room().live(1);
  const old = page.socket;
  old.close(1006);
  page.connection.reconnectNow();

  old.receive(message(2, "from-the-old-socket"));
  old.close(1006);

  assert.deepEqual(page.drawn(), []);
  assert.equal(page.sockets.length, 2);
  assert.equal(page.of("status").at(-1).state, "connecting");
});

// Sending ------------------------------------------------------------------------------

test("a frame goes over the open socket", async () => {
  const page = room().live(1);

  const answer = await page.connection.send({ type: "chat", text: "hi" },
                                            { url: "/api/rooms/triage/requests", body: {} });

  assert.deepEqual(answer, { ok: true });
  assert.deepEqual(page.socket.sent, [{ type: "chat", text: "hi" }]);
});

test("while the socket is down the operation goes to its REST twin, with the CSRF token",
     async () => {
  const calls = [];
  const replies = [
    { ok: true, status: 202, json: async () => ({ id: "r1" }) },
    { ok: false, status: 409, json: async () => ({ detail: "It already ended." }) },
    { ok: false, status: 502, json: async () => { throw new SyntaxError("HTML"); } },
  ];
  const page = room({
    fetch: async (url, init) => {
      calls.push([url, init]);
      if (!replies.length) throw new TypeError("Failed to fetch");
      return replies.shift();
    },
  }).live(1);
  page.socket.close(1006);
  const rest = { url: "/api/requests/r1/cancel", body: { why: "test" } };

  const answers = [];
  for (let i = 0; i < 4; i += 1) {
    answers.push(await page.connection.send({ type: "cancel", request: "r1" }, rest));
  }

  assert.deepEqual(answers, [
    { ok: true, data: { id: "r1" } },
    { ok: false, status: 409, detail: "It already ended." },
    { ok: false, status: 502, detail: null },
    { ok: false, status: 0, detail: null },
  ]);
  const [url, init] = calls[0];
  assert.equal(url, "/api/requests/r1/cancel");
  assert.equal(init.method, "POST");
  assert.equal(init.credentials, "same-origin");
  assert.equal(init.headers["X-CSRFToken"], "the-csrf-token");
  assert.deepEqual(JSON.parse(init.body), { why: "test" });
});
