/*
 * The composer: Enter sends (Shift+Enter is a new line), a refused message comes
 * back into the box.
 */

/* `send(frame, {url, body})` resolves to false when the message was refused. */
export function createComposer({ form, text, config, send, notices }) {
  let lastText = "";

  function submit(event) {
    event.preventDefault();
    const value = text.value;
    if (!value.trim()) {
      text.focus();
      return;
    }
    if (value.length > config.maxChars) {
      notices.show(`Messages are limited to ${config.maxChars} characters.`);
      return;
    }
    lastText = value;
    text.value = "";
    grow();
    const url = `/api/rooms/${encodeURIComponent(config.slug)}/requests`;
    send({ type: "chat", text: value }, { url, body: { text: value } }).then((ok) => {
      if (!ok && !text.value) text.value = value; // keep what was typed
    });
  }

  function grow() {
    text.style.height = "auto";
    text.style.height = `${Math.min(text.scrollHeight, 200)}px`;
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
    if (!text.value) text.value = lastText;
  }

  form.addEventListener("submit", submit);
  text.addEventListener("keydown", onKey);
  text.addEventListener("input", grow);
  return { restore };
}
