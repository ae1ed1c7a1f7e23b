// What the room page and the inbox say in words (static/js/composer.js,
// actions.js, times.js, announce.js): the message box's counter, preview values,
// relative times and what a screen reader is told. Run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { fieldLabel, previewLabel, previewValue } from "../../static/js/actions.js";
import {
  actionAnnouncement, messageAnnouncement, spoken,
} from "../../static/js/announce.js";
import { limitState } from "../../static/js/composer.js";
import { relativeText } from "../../static/js/times.js";

test("the counter stays away until the text nears the limit", () => {
  assert.deepEqual(
    { state: limitState(8999, 10000).state, text: limitState(8999, 10000).text },
    { state: "ok", text: "" },
  );
  assert.equal(limitState(9500, 10000).state, "near");
  assert.equal(limitState(9500, 10000).text, "9,500 / 10,000 · 500 left");
  assert.equal(limitState(10000, 10000).state, "near");
});

test("over the limit the counter says by how much and that sending is off", () => {
  const over = limitState(12000, 10000);
  assert.equal(over.state, "over");
  assert.equal(over.text, "12,000 / 10,000 · 2,000 too many: shorten it to send");
  assert.match(over.alert, /limited to 10,000 characters.*2,000 over.*Sending is off/);
});

test("empty lists in previews read 'none', lists read as words", () => {
  assert.equal(previewValue("labels", []), "none");
  assert.equal(previewValue("labels", ["bug", "login"]), "bug, login");
  assert.equal(previewValue("labels", [{ name: "bug" }]), "bug");
  assert.equal(previewValue("state", { name: "Done" }), "Done");
  assert.equal(previewValue("title", ""), "none");
  assert.equal(fieldLabel("labels"), "Labels");
  assert.equal(fieldLabel("updated_at"), "Updated at");
});

test("a preview is labelled 'Before' once the call ran", () => {
  assert.equal(previewLabel("pending"), "Preview");
  assert.equal(previewLabel("succeeded"), "Before");
  assert.equal(previewLabel("failed"), "Before");
  assert.equal(previewLabel("denied"), "When proposed");
});

test("times read relative to now, both ways", () => {
  const now = Date.parse("2030-01-01T12:00:00Z");
  assert.equal(relativeText("2030-01-02T11:00:00Z", now), "in 23 h");
  assert.equal(relativeText("2030-01-01T12:00:05.5+00:00", now), "in 6 s");
  assert.equal(relativeText("2030-01-01T11:55:00Z", now), "5 min ago");
  assert.equal(relativeText("not a time", now), null);
});

test("a screen reader hears others' messages and the agent's, not its own", () => {
  const me = "bob";
  assert.equal(messageAnnouncement({ role: "user", author: "alice", content: "hi\n there" }, me),
               "alice: hi there");
  assert.equal(messageAnnouncement({ role: "user", author: "bob", content: "mine" }, me), null);
  assert.equal(messageAnnouncement({ role: "assistant", content: "Done." }, me), "Agent: Done.");
  assert.equal(messageAnnouncement({ role: "tool", content: "{}" }, me), null);
  assert.equal(messageAnnouncement({ role: "assistant", content: "  " }, me), null);
  const long = spoken("x".repeat(1000));
  assert.equal(long.length, 400);
  assert.ok(long.endsWith("…"));
});

test("an action is announced when it arrives and when its status changes", () => {
  const pending = { tool: "delete_issue", status: "pending" };
  assert.equal(actionAnnouncement(pending, undefined, true),
               "Action delete_issue waits for your approval.");
  assert.equal(actionAnnouncement(pending, undefined, false),
               "Action delete_issue waits for approval.");
  assert.equal(actionAnnouncement(pending, "pending", true), null);
  const approved = { tool: "delete_issue", status: "approved", decided_by: "alice" };
  assert.equal(actionAnnouncement(approved, "pending", false),
               "Action delete_issue: approved by alice.");
  assert.equal(actionAnnouncement({ tool: "delete_issue", status: "succeeded" }, "approved"),
               "Action delete_issue: succeeded.");
});
