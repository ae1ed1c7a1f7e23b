/*
 * Triggers and schedules without the DOM (PROTOCOL.md, "Triggers and schedules"):
 * what a request posted by one is labelled, a trigger or schedule in words, and
 * the panels' forms as the bodies of POST /api/rooms/<slug>/triggers and
 * /schedules. The server checks every field again (400 with its detail); these
 * only catch the obvious before a round trip. Pure functions, so tests/js run them
 * under node.
 */

export const SOURCES = {
  linear: "Linear",
  github: "GitHub",
  generic: "webhook",
};

const EVENT = /^[A-Za-z0-9_.-]{1,100}$/;
const MAX_EVENTS = 50;
const MAX_FILTER_KEYS = 20;
const MAX_NAME = 100;

/* "via Linear trigger", "via GitHub trigger", "via webhook trigger", "via
   schedule"; null for a person's request (`trigger` null or absent). */
export function viaLabel(trigger) {
  if (!trigger || typeof trigger !== "object") return null;
  if (trigger.kind === "schedule") return "via schedule";
  if (trigger.kind !== "webhook") return null;
  return `via ${SOURCES[trigger.source] || "webhook"} trigger`;
}

/* A trigger's source in words: "Linear", "GitHub", "Webhook". */
export function sourceName(source) {
  const name = SOURCES[source] || String(source || "webhook");
  return name.charAt(0).toUpperCase() + name.slice(1);
}

/* "Events: every event" or "Events: Issue.create, Comment". */
export function eventsText(events) {
  const list = Array.isArray(events) ? events : [];
  return `Events: ${list.length ? list.join(", ") : "every event"}`;
}

/* "Only when action = \"opened\"" for a filter, or null for none. */
export function filterText(filter) {
  const entries = filter && typeof filter === "object" ? Object.entries(filter) : [];
  if (!entries.length) return null;
  return `Only when ${entries.map(([path, value]) => `${path} = ${JSON.stringify(value)}`).join(", ")}`;
}

function splitList(text) {
  return String(text || "").split(/[\s,]+/).map((part) => part.trim()).filter(Boolean);
}

function checkedName(text) {
  const name = String(text || "").trim();
  if (name.length > MAX_NAME) return { error: `Name: at most ${MAX_NAME} characters.` };
  return { value: name };
}

function checkedPrompt(text, maxChars) {
  const prompt = String(text || "");
  if (!prompt.trim()) return { error: "Prompt: say what the agent should do." };
  if (maxChars && prompt.length > maxChars) {
    return { error: `Prompt: at most ${maxChars} characters.` };
  }
  return { value: prompt };
}

/* The trigger form's raw fields ({source, name, events, filter, prompt}) as a POST
   body, or {error} saying what is wrong. `events` is a comma- or space-separated
   list (empty: every event); `filter` a JSON object of path -> value, optional. */
export function triggerFromForm(fields, maxChars) {
  const source = String(fields.source || "");
  if (!Object.hasOwn(SOURCES, source)) return { error: "Source: Linear, GitHub or webhook." };
  const name = checkedName(fields.name);
  if (name.error) return name;
  const events = [...new Set(splitList(fields.events))];
  if (events.length > MAX_EVENTS) return { error: `Events: at most ${MAX_EVENTS}.` };
  const bad = events.find((event) => !EVENT.test(event));
  if (bad !== undefined) {
    return { error: `Events: "${bad}" is not an event name (letters, digits, _ . -).` };
  }
  const prompt = checkedPrompt(fields.prompt, maxChars);
  if (prompt.error) return prompt;
  const body = { source, prompt: prompt.value, events };
  if (name.value) body.name = name.value;
  const filterSource = String(fields.filter || "").trim();
  if (filterSource) {
    let parsed;
    try {
      parsed = JSON.parse(filterSource);
    } catch (error) {
      return { error: `Filter: that is not valid JSON (${error.message}).` };
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      return { error: "Filter: a JSON object, like {\"action\": \"opened\"}." };
    }
    if (Object.keys(parsed).length > MAX_FILTER_KEYS) {
      return { error: `Filter: at most ${MAX_FILTER_KEYS} paths.` };
    }
    body.filter = parsed;
  }
  return { body };
}

/* The schedule form's raw fields ({cron, timezone, name, prompt}) as a POST body,
   or {error}. The server reads the cron and the zone (400 naming what is wrong). */
export function scheduleFromForm(fields, maxChars) {
  const cron = String(fields.cron || "").trim().split(/\s+/).join(" ");
  if (!cron) return { error: "Cron: five fields, like \"0 9 * * 1-5\"." };
  const name = checkedName(fields.name);
  if (name.error) return name;
  const prompt = checkedPrompt(fields.prompt, maxChars);
  if (prompt.error) return prompt;
  const body = { cron, prompt: prompt.value };
  const timezone = String(fields.timezone || "").trim();
  if (timezone) body.timezone = timezone;
  if (name.value) body.name = name.value;
  return { body };
}

/* What a trigger has done: "Fired 3 times" / "Never fired". */
export function firedText(trigger) {
  const fired = Number(trigger.fired) || 0;
  if (!fired) return "Never fired";
  return `Fired ${fired} ${fired === 1 ? "time" : "times"}`;
}

/* What the Linear, GitHub or generic sender needs to be told, beside the secret. */
export function secretHelp(source) {
  if (source === "github") {
    return "In GitHub: Settings → Webhooks → Add webhook; paste the URL as the "
      + "payload URL, choose content type application/json, and paste this secret.";
  }
  if (source === "linear") {
    return "In Linear: Settings → API → Webhooks → New webhook; paste the URL and "
      + "choose Issues. Linear shows a signing secret of its own: paste it here with "
      + "Set secret (or pass this one as the secret of webhookCreate).";
  }
  return "Give the sender the URL and this secret (Standard Webhooks: "
    + "webhook-id, webhook-timestamp and webhook-signature headers).";
}
