// The header's count of actions waiting for the user's vote, and the inbox page's
// list: both follow GET /api/actions?awaiting=me while the page is open (a poll,
// and at once when the tab comes back). A module of its own: no inline script.

import { relativeTime } from "./times.js";

const POLL_MS = 5000;
const API = "/api/actions?awaiting=me&limit=200";

// Room slug -> name: the actions name their room by slug; the page was rendered
// with the names of its rooms, and GET /api/rooms names any other the user is in.
const roomNames = new Map();
let roomsAsked = false;

function itemFor(action) {
  const item = document.createElement("li");
  item.className = "room-list__item";
  item.dataset.action = action.id;
  const link = document.createElement("a");
  link.className = "room-list__link";
  link.href = action.decide_url;
  const name = document.createElement("span");
  name.className = "room-list__name";
  name.textContent = action.tool;
  const where = document.createElement("span");
  where.className = "room-list__slug";
  where.textContent = `in ${roomNames.get(action.room) || action.room}`;
  if (action.expires_at) {
    where.append(" · expires ", relativeTime(action.expires_at));
  }
  link.append(name, where);
  item.append(link);
  return item;
}

async function learnRoomNames(actions) {
  if (roomsAsked || actions.every((action) => roomNames.has(action.room))) return;
  roomsAsked = true; // once a page: a room one is not in keeps its slug
  const response = await fetch("/api/rooms", {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) return;
  const body = await response.json();
  for (const room of Array.isArray(body) ? body : body.results || []) {
    roomNames.set(room.slug, room.name);
  }
}

function countText(count) {
  return `${count} action${count === 1 ? "" : "s"} waiting for you`;
}

function show(actions) {
  const count = document.querySelector("[data-inbox-count]");
  if (count) {
    count.textContent = actions.length ? String(actions.length) : "";
    count.hidden = actions.length === 0;
    // The badge's number alone means nothing read aloud: the link says it in words.
    const words = document.querySelector("[data-inbox-words]");
    if (words) words.textContent = actions.length ? `: ${countText(actions.length)}` : "";
  }
  const list = document.querySelector("[data-inbox-list]");
  if (list) {
    list.replaceChildren(...actions.map(itemFor));
    const empty = document.querySelector("[data-inbox-empty]");
    if (empty) empty.hidden = actions.length > 0;
  }
}

async function refresh() {
  try {
    const response = await fetch(API, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    const actions = await response.json();
    if (document.querySelector("[data-inbox-list]")) await learnRoomNames(actions);
    show(actions);
  } catch {
    // Offline for a moment: the next poll tries again.
  }
}

document.querySelectorAll("[data-room-slug]").forEach((node) => {
  roomNames.set(node.dataset.roomSlug, node.dataset.roomName);
});

if (document.querySelector("[data-inbox-count]")) {
  refresh();
  setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, POLL_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
}
