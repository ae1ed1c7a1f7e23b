/*
 * Small DOM helpers for the room page. Untrusted text only ever reaches the page
 * through textContent, text nodes or SafeMarkdown, never through innerHTML.
 */

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function button(label, className, onClick) {
  const node = el("button", `btn ${className || ""}`.trim(), label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

export function timeOf(iso) {
  const ms = Date.parse(iso || "");
  return Number.isNaN(ms) ? null : ms;
}

export function timeElement(iso) {
  const ms = timeOf(iso);
  const node = el("time", "time");
  if (ms === null) return node;
  const date = new Date(ms);
  const sameDay = date.toDateString() === new Date().toDateString();
  node.dateTime = date.toISOString();
  node.title = date.toLocaleString();
  node.textContent = sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  return node;
}

export function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch (error) {
    return String(value);
  }
}

export function cssToken(value) {
  return String(value || "").replace(/[^a-z0-9_-]/gi, "");
}

/* Keeps the newest item in view while streaming, unless the reader has
   scrolled up to read something older. */
export function keepingScroll(change) {
  const doc = document.scrollingElement || document.documentElement;
  const nearBottom = doc.scrollHeight - (doc.scrollTop + window.innerHeight) < 160;
  change();
  if (nearBottom) doc.scrollTop = doc.scrollHeight;
}

/* Untrusted Markdown as safe nodes (markdown.js and the vendored markdown-it and
   DOMPurify it uses, loaded before the modules). */
export function markdown(source) {
  return window.SafeMarkdown.render(source);
}
