/*
 * Notices above the timeline, and the connection line in the room's header.
 */

import { button, el } from "./dom.js";

// What a close after which the page stops reconnecting means to the reader.
const FINAL_CLOSE = {
  4401: "Your session ended. Log in again to rejoin the room.",
  4403: "This room is no longer open to you.",
  4404: "This room no longer exists or you are not a member.",
};

export function createNotices(container) {
  function show(text, kind) {
    const notice = el("div", `notice notice--${kind || "error"}`);
    notice.setAttribute("role", kind === "info" ? "status" : "alert");
    notice.append(el("p", "notice__text", text));
    notice.append(button("Dismiss", "btn--quiet btn--small", () => notice.remove()));
    container.append(notice);
    // Keep the list short: the oldest notices matter least.
    while (container.children.length > 4) container.firstElementChild.remove();
    return notice;
  }

  /* A refused send (protocol.send's answer) as a notice. */
  function showRefusal(answer) {
    show(refusalText(answer));
  }

  return { show, showRefusal };
}

/* What a refused send (protocol.send's answer) says to the reader. */
export function refusalText(answer) {
  if (answer.status === 0) {
    return "Could not reach the server. Check your connection and try again.";
  }
  return answer.detail || `The server answered ${answer.status}.`;
}

/* Draws a protocol status update ({state, attempt, delay, code}). */
export function showConnection(line, update, notices) {
  const [state, text] = connectionText(update);
  line.dataset.state = state;
  line.textContent = text;
  if (update.state === "closed") {
    notices.show(FINAL_CLOSE[update.code] || "The server closed the connection.");
  }
}

function connectionText(update) {
  switch (update.state) {
    case "connecting":
      return ["connecting", update.attempt ? "Reconnecting…" : "Connecting…"];
    case "syncing":
      return ["connecting", "Syncing…"];
    case "live":
      return ["live", "Live"];
    case "offline":
      return ["offline", `Offline · retrying in ${Math.ceil(update.delay / 1000)} s`];
    default:
      return ["offline", "Disconnected"];
  }
}
