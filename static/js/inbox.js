// The header's count of actions waiting for the user's vote, and the inbox page's
// list: both follow GET /api/actions?awaiting=me while the page is open (a poll,
// and at once when the tab comes back). A module of its own: no inline script.

const POLL_MS = 5000;
const API = "/api/actions?awaiting=me&limit=200";

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
  where.textContent = action.room + (action.expires_at ? ` · expires ${action.expires_at}` : "");
  link.append(name, where);
  item.append(link);
  return item;
}

function show(actions) {
  const count = document.querySelector("[data-inbox-count]");
  if (count) {
    count.textContent = actions.length ? String(actions.length) : "";
    count.hidden = actions.length === 0;
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
    if (response.ok) show(await response.json());
  } catch {
    // Offline for a moment: the next poll tries again.
  }
}

if (document.querySelector("[data-inbox-count]")) {
  refresh();
  setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, POLL_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
}
