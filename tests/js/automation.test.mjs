// Triggers and schedules in words and the panels' forms as POST bodies
// (static/js/automation.js). Run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  eventsText, filterText, firedText, scheduleFromForm, sourceName, triggerFromForm,
  viaLabel,
} from "../../static/js/automation.js";

test("a request is labelled by what posted it, a person's by nothing", () => {
  const webhook = (source) => ({ kind: "webhook", id: "t", source, event: "e", delivery: "d" });
  assert.equal(viaLabel(webhook("linear")), "via Linear trigger");
  assert.equal(viaLabel(webhook("github")), "via GitHub trigger");
  assert.equal(viaLabel(webhook("generic")), "via webhook trigger");
  assert.equal(viaLabel(webhook("something-new")), "via webhook trigger");
  assert.equal(viaLabel({ kind: "schedule", id: "s", slot: "2026-12-07T09:00:00Z" }), "via schedule");
  assert.equal(viaLabel(null), null);
  assert.equal(viaLabel(undefined), null);
  assert.equal(viaLabel({ kind: "other" }), null);
});

test("sources, events, filters and counts read as words", () => {
  assert.equal(sourceName("github"), "GitHub");
  assert.equal(sourceName("generic"), "Webhook");
  assert.equal(eventsText([]), "Events: every event");
  assert.equal(eventsText(["Issue.create", "Comment"]), "Events: Issue.create, Comment");
  assert.equal(filterText({}), null);
  assert.equal(filterText({ action: "opened", "data.n": 3 }), 'Only when action = "opened", data.n = 3');
  assert.equal(firedText({ fired: 0 }), "Never fired");
  assert.equal(firedText({ fired: 1 }), "Fired 1 time");
  assert.equal(firedText({ fired: 4 }), "Fired 4 times");
});

test("the trigger form becomes the POST body", () => {
  const body = triggerFromForm({
    source: "github", name: " Issues ", events: "issues.opened, issues.opened push",
    filter: '{"repository.full_name": "demo/agentsite"}', prompt: "Look at {{ issue.title }}",
  }, 10000).body;
  assert.deepEqual(body, {
    source: "github", name: "Issues", events: ["issues.opened", "push"],
    filter: { "repository.full_name": "demo/agentsite" }, prompt: "Look at {{ issue.title }}",
  });
  assert.deepEqual(
    triggerFromForm({ source: "linear", name: "", events: "", filter: "", prompt: "x" }).body,
    { source: "linear", events: [], prompt: "x" },
  );
});

test("the trigger form says what is wrong before asking the server", () => {
  const ok = { source: "linear", name: "", events: "", filter: "", prompt: "p" };
  assert.match(triggerFromForm({ ...ok, source: "slack" }).error, /^Source/);
  assert.match(triggerFromForm({ ...ok, events: "Issue create!" }).error, /"create!"/);
  assert.match(triggerFromForm({ ...ok, filter: "{" }).error, /^Filter: that is not valid JSON/);
  assert.match(triggerFromForm({ ...ok, filter: "[1]" }).error, /^Filter: a JSON object/);
  assert.match(triggerFromForm({ ...ok, prompt: "  " }).error, /^Prompt/);
  assert.match(triggerFromForm({ ...ok, prompt: "x".repeat(11) }, 10).error, /at most 10/);
  assert.match(triggerFromForm({ ...ok, name: "n".repeat(101) }).error, /^Name/);
});

test("the schedule form becomes the POST body", () => {
  assert.deepEqual(
    scheduleFromForm({ cron: " 0  9 * * 1-5 ", timezone: "Europe/Paris", name: "", prompt: "Standup" }).body,
    { cron: "0 9 * * 1-5", timezone: "Europe/Paris", prompt: "Standup" },
  );
  assert.match(scheduleFromForm({ cron: "", timezone: "", name: "", prompt: "p" }).error, /^Cron/);
  assert.match(scheduleFromForm({ cron: "* * * * *", timezone: "", name: "", prompt: "" }).error, /^Prompt/);
});
