/*
 * The composer: Enter sends (Shift+Enter is a new line), a refused message comes
 * back into the box. The box never cuts what was typed or pasted (no maxlength):
 * near the limit it counts the characters, over it says so and sending is off.
 */

// The counter shows once the text is this close to the limit.
const NEAR_FRACTION = 0.9;

/* What the counter says for `length` characters under a limit of `max`:
   {state: "ok" | "near" | "over", text, alert}. `text` is the visible counter
   ("" while far from the limit); `alert`, said once when the state changes. */
export function limitState(length, max) {
  const count = `${length.toLocaleString("en")} / ${max.toLocaleString("en")}`;
  if (length > max) {
    const over = length - max;
    const text = `${count} · ${over.toLocaleString("en")} too many: shorten it to send`;
    return {
      state: "over",
      text,
      alert: `Messages are limited to ${max.toLocaleString("en")} characters; ` +
        `this one is ${over.toLocaleString("en")} over. Sending is off until it is shorter.`,
    };
  }
  if (length >= Math.floor(max * NEAR_FRACTION)) {
    const left = max - length;
    return {
      state: "near",
      text: `${count} · ${left.toLocaleString("en")} left`,
      alert: `${left.toLocaleString("en")} characters left.`,
    };
  }
  return { state: "ok", text: "", alert: "Message length is fine again." };
}

/* `send(frame, {url, body})` resolves to false when the message was refused. */
export function createComposer({ form, text, counter, announce, config, send, notices }) {
  const sendButton = form.querySelector("button[type=submit]");
  let lastText = "";
  let shown = "ok";

  function submit(event) {
    event.preventDefault();
    const value = text.value;
    if (!value.trim()) {
      text.focus();
      return;
    }
    if (value.length > config.maxChars) {
      notices.show(`Messages are limited to ${config.maxChars.toLocaleString("en")} ` +
        `characters; this one has ${value.length.toLocaleString("en")}. Nothing was sent.`);
      text.focus();
      return;
    }
    lastText = value;
    text.value = "";
    changed();
    const url = `/api/rooms/${encodeURIComponent(config.slug)}/requests`;
    send({ type: "chat", text: value }, { url, body: { text: value } }).then((ok) => {
      if (!ok && !text.value) {
        text.value = value; // keep what was typed
        changed();
      }
    });
  }

  function grow() {
    text.style.height = "auto";
    text.style.height = `${Math.min(text.scrollHeight, 200)}px`;
  }

  /* The counter, the send button and, when the state changes, one announcement
     (not one per keystroke). */
  function count() {
    const limit = limitState(text.value.length, config.maxChars);
    counter.textContent = limit.text;
    counter.hidden = limit.state === "ok";
    counter.dataset.state = limit.state;
    const over = limit.state === "over";
    sendButton.disabled = over;
    if (over) text.setAttribute("aria-invalid", "true");
    else text.removeAttribute("aria-invalid");
    if (limit.state !== shown) {
      // Going back from "near" to fine is not worth interrupting anyone for.
      if (!(limit.state === "ok" && shown === "near")) announce(limit.alert);
      shown = limit.state;
    }
  }

  function changed() {
    grow();
    count();
  }

  function onKey(event) {
    // Enter sends, Shift+Enter is a new line; never while an IME is composing.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      form.requestSubmit();
      event.preventDefault();
    }
  }

  /* The server refused the last chat frame: give its text back, unless the
     reader has started typing something else. */
  function restore() {
    if (!text.value) {
      text.value = lastText;
      changed();
    }
  }

  form.addEventListener("submit", submit);
  text.addEventListener("keydown", onKey);
  text.addEventListener("input", changed);
  count();
  return { restore };
}
