/*
 * The "Decision stats" panel (approvers): GET /api/rooms/<slug>/stats?days=30,
 * read each time the panel opens, as two tables: per approver (votes, approvals,
 * denials, median time to vote, and "Rubber stamp" where the server flags one)
 * and per tool (how its actions ended). The audit download links are the page's.
 */

import { duration } from "./approvals.js";
import { el } from "./dom.js";

export const STATS_DAYS = 30;

const APPROVER_COLUMNS = ["Approver", "Votes", "Approvals", "Denials", "Median time to vote"];
const TOOL_COLUMNS = ["Tool", "Proposed", "Approved", "Denied", "Expired", "Auto", "Never"];

export function createStatsPanel({ root, config, fetch }) {
  const body = root.querySelector("#stats-body");
  const status = root.querySelector("#stats-status");
  const url = `/api/rooms/${encodeURIComponent(config.slug)}/stats?days=${STATS_DAYS}`;

  async function refresh() {
    let data = null;
    let detail = "Could not reach the server.";
    try {
      const response = await fetch(url, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      data = await response.json().catch(() => null);
      if (!response.ok) {
        detail = data && typeof data.detail === "string" ? data.detail
          : `The server answered ${response.status}.`;
        data = null;
      }
    } catch (error) {
      data = null;
    }
    if (!data || !Array.isArray(data.approvers) || !Array.isArray(data.tools)) {
      status.textContent = detail;
      status.hidden = false;
      return;
    }
    status.hidden = true;
    body.replaceChildren(approverTable(data.approvers), toolTable(data.tools));
  }

  function table(caption, columns, rows) {
    const node = el("table", "stats__table");
    node.append(el("caption", null, caption));
    const head = el("tr");
    for (const column of columns) {
      const cell = el("th", null, column);
      cell.scope = "col";
      head.append(cell);
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    tbody.append(...rows);
    node.append(thead, tbody);
    return node;
  }

  /* `first`: the row's header, text or nodes. */
  function row(first, cells) {
    const tr = el("tr");
    const header = el("th");
    header.scope = "row";
    header.append(...(Array.isArray(first) ? first : [first]));
    tr.append(header);
    for (const cell of cells) {
      tr.append(el("td", null, cell));
    }
    return tr;
  }

  function approverTable(approvers) {
    const rows = approvers.map((entry) => {
      const median = entry.median_seconds_to_vote;
      // The flag beside the name, where a narrow panel still shows it.
      const who = [String(entry.username)];
      if (entry.rubber_stamp) {
        const flag = el("span", "badge badge--stamp", "Rubber stamp");
        flag.title = "10 or more approvals, no denial, and a median under 5 s to vote.";
        who.push(" ", flag);
      }
      return row(who, [
        entry.votes, entry.approvals, entry.denials,
        median === null || median === undefined ? "–" : duration(median),
      ]);
    });
    if (!rows.length) rows.push(emptyRow(APPROVER_COLUMNS.length, "No approvers."));
    return table(`Approvers, last ${STATS_DAYS} days`, APPROVER_COLUMNS, rows);
  }

  function toolTable(tools) {
    const rows = tools.map((entry) => row(entry.tool, [
      entry.proposed, entry.approved, entry.denied, entry.expired, entry.auto, entry.never,
    ]));
    if (!rows.length) rows.push(emptyRow(TOOL_COLUMNS.length, "No actions in this time."));
    return table(`Tools, last ${STATS_DAYS} days`, TOOL_COLUMNS, rows);
  }

  function emptyRow(span, text) {
    const tr = el("tr");
    const td = el("td", "muted", text);
    td.colSpan = span;
    tr.append(td);
    return tr;
  }

  function onToggle() {
    if (root.open) refresh();
  }

  root.addEventListener("toggle", onToggle);
  if (root.open) refresh();
  return { refresh };
}
