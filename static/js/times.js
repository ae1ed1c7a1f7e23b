/*
 * Times in the reader's own clock: every <time data-relative datetime="..."> on a
 * page (the server writes an absolute UTC time in it, for a page without scripts)
 * reads "in 23 h" or "5 min ago", with the local date and time in its title, and
 * keeps counting while the page is open. A module of its own: no inline script.
 */

import { duration } from "./approvals.js";

const REFRESH_MS = 30_000;

/* "in 23 h" / "5 min ago" for `iso` seen at `now` (ms); null if not a time. */
export function relativeText(iso, now) {
  const at = Date.parse(iso || "");
  if (Number.isNaN(at)) return null;
  const seconds = (at - now) / 1000;
  if (seconds >= 0) return `in ${duration(Math.ceil(seconds))}`;
  return `${duration(-seconds)} ago`;
}

/* The local date and time of `iso`, e.g. "8 Dec 2026, 13:19". */
export function localText(iso) {
  const at = Date.parse(iso || "");
  if (Number.isNaN(at)) return "";
  return new Date(at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

/* Redraws one <time data-relative> element. */
export function showRelative(node, now) {
  const iso = node.getAttribute("datetime");
  const text = relativeText(iso, now);
  if (text === null) return;
  node.textContent = text;
  node.title = localText(iso);
}

/* A new <time data-relative> for `iso`. */
export function relativeTime(iso) {
  const node = document.createElement("time");
  node.dataset.relative = "";
  node.setAttribute("datetime", iso);
  showRelative(node, Date.now());
  return node;
}

function refreshAll() {
  const now = Date.now();
  document.querySelectorAll("time[data-relative]").forEach((node) => showRelative(node, now));
}

if (typeof document !== "undefined") {
  refreshAll();
  setInterval(refreshAll, REFRESH_MS);
}
