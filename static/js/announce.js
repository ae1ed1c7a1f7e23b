/*
 * What a screen reader hears of the room: one polite announcement per thing that
 * happened live (a message from someone else, an answer once it is complete, an
 * action that needs a vote or changed status), never one per streamed delta, and
 * nothing for what the page drew from a snapshot (it is already on the page to
 * read). The timeline itself stays a plain list that one reads at one's own pace.
 */

import { ACTION_LABELS } from "./actions.js";

// An announcement longer than this is cut with "…": the message is on the page.
const SPOKEN_CHARS = 400;
// Old announcements are removed from the live region, which only ever grows.
const KEEP = 5;

export function spoken(text) {
  const flat = String(text || "").replace(/\s+/g, " ").trim();
  return flat.length > SPOKEN_CHARS ? `${flat.slice(0, SPOKEN_CHARS - 1)}…` : flat;
}

/* A final message ({role, author, content}) as one sentence, or null when the
   viewer need not hear it (their own message, a tool result, an empty answer). */
export function messageAnnouncement(message, username) {
  const text = spoken(message.content);
  if (!text) return null;
  if (message.role === "assistant") return `Agent: ${text}`;
  if (message.role === "user" && message.author !== username) {
    return `${message.author || "Someone"}: ${text}`;
  }
  return null;
}

/* An action ({tool, status, decided_by}) whose status went from `before`
   (undefined: new) to its own, as one sentence; null when nothing changed. */
export function actionAnnouncement(action, before, mayVoteNow) {
  if (before === action.status) return null;
  if (action.status === "pending") {
    return mayVoteNow
      ? `Action ${action.tool} waits for your approval.`
      : `Action ${action.tool} waits for approval.`;
  }
  const label = ACTION_LABELS[action.status] || action.status;
  const by = action.decided_by && ["approved", "denied"].includes(action.status)
    ? ` by ${action.decided_by}` : "";
  return `Action ${action.tool}: ${label.toLowerCase()}${by}.`;
}

/* The live region: `say(text)` appends one line to it. */
export function createAnnouncer(region) {
  function say(text) {
    if (!text) return;
    const line = document.createElement("p");
    line.textContent = text;
    region.append(line);
    while (region.children.length > KEEP) region.firstElementChild.remove();
  }
  return { say };
}
