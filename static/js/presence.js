/*
 * Who is in the room now: one chip per username.
 */

import { el } from "./dom.js";

export function renderPresence(list, users, me) {
  const names = [...new Set(users || [])].sort();
  list.replaceChildren(...names.map((name) => {
    const chip = el("li", "chip", name);
    if (name === me) {
      chip.classList.add("chip--you");
      chip.append(el("span", "sr-only", " (you)"));
    }
    return chip;
  }));
  if (!names.length) list.append(el("li", "muted", "Nobody else yet"));
}
