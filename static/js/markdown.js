/*
 * A small Markdown renderer for untrusted text (model output, issue titles).
 *
 * It builds DOM nodes with createElement/textNode and never parses HTML, so
 * "<script>" or "<img onerror>" in the input can only ever become text.
 * Supported: paragraphs, line breaks, headings, block quotes, lists, fenced
 * code, `code`, **bold**, *italic*, and links to http(s) URLs only. Images
 * and links to any other scheme (javascript:, data:) stay literal text.
 */
(function () {
  "use strict";

  const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([^`\s]*)\s*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const QUOTE = /^\s{0,3}>\s?(.*)$/;
  const BULLET = /^\s{0,3}([-*+])\s+(.*)$/;
  const ORDERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
  // Sticky (y): matched at a given index without slicing the text each time.
  const BARE_URL = /https?:\/\/[^\s<>"'`]+/iy;
  const TICKS = /`+/y;
  const ESCAPABLE = /[\\`*_[\]()!#>~+\-.{}|]/;

  /* Only absolute http(s) URLs become links: the scheme check is the guard
     against javascript: and data: URLs, so it runs on the parsed URL. */
  function safeUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  function link(url, children) {
    const a = el("a");
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    a.append(...children);
    return a;
  }

  // Inline --------------------------------------------------------------------

  /* [label](url "title") starting at text[start] === "[": the parts, or null. */
  function matchLink(text, start) {
    let depth = 0;
    let close = -1;
    for (let i = start; i < text.length; i += 1) {
      if (text[i] === "\\") { i += 1; continue; }
      if (text[i] === "[") depth += 1;
      if (text[i] === "]" && --depth === 0) { close = i; break; }
    }
    if (close < 0 || text[close + 1] !== "(") return null;
    const tail = /^\(\s*([^\s()]*)\s*(?:"[^"]*"\s*)?\)/.exec(text.slice(close + 1));
    if (!tail) return null;
    return {
      label: text.slice(start + 1, close),
      url: tail[1],
      end: close + 1 + tail[0].length,
    };
  }

  /* The index of the closing delimiter for emphasis opened at `from`, or -1.
     Content must not start or end with a space, so "2 * 3 * 4" stays text. */
  function closingDelimiter(text, from, delim) {
    if (/\s/.test(text[from] || " ")) return -1;
    for (let i = from + 1; i < text.length; i += 1) {
      if (text[i] === "\\") { i += 1; continue; }
      if (text[i] === "`") {
        const end = text.indexOf("`", i + 1);
        if (end > 0) i = end;
        continue;
      }
      if (text.startsWith(delim, i) && !/\s/.test(text[i - 1])) {
        // A single * must not be the first half of a **.
        if (delim.length === 1 && text[i + 1] === delim) { i += 1; continue; }
        return i;
      }
    }
    return -1;
  }

  function isWordChar(ch) {
    return ch !== undefined && /[\p{L}\p{N}]/u.test(ch);
  }

  /* Renders inline Markdown of `text` into a list of nodes. */
  function inline(text, inLink) {
    const out = [];
    let buf = "";
    const flush = () => {
      if (buf) out.push(document.createTextNode(buf));
      buf = "";
    };
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === "\\" && ESCAPABLE.test(text[i + 1] || "")) {
        buf += text[i + 1];
        i += 2;
        continue;
      }
      if (ch === "\n") {
        flush();
        out.push(el("br"));
        i += 1;
        continue;
      }
      if (ch === "`") {
        TICKS.lastIndex = i;
        const run = TICKS.exec(text)[0];
        const end = text.indexOf(run, i + run.length);
        if (end < 0) {
          buf += run;
          i += run.length;
          continue;
        }
        flush();
        const code = el("code");
        code.textContent = text.slice(i + run.length, end).replace(/^ (.+) $/, "$1");
        out.push(code);
        i = end + run.length;
        continue;
      }
      if (ch === "!" && text[i + 1] === "[") {
        // Images are never loaded: the whole ![alt](url) stays as it was typed.
        const image = matchLink(text, i + 1);
        if (image) {
          buf += text.slice(i, image.end);
          i = image.end;
          continue;
        }
      }
      if (ch === "[" && !inLink) {
        const found = matchLink(text, i);
        if (found) {
          const url = safeUrl(found.url);
          if (url) {
            flush();
            out.push(link(url, inline(found.label, true)));
          } else {
            buf += text.slice(i, found.end);
          }
          i = found.end;
          continue;
        }
      }
      if ((ch === "*" || ch === "_") && !(ch === "_" && isWordChar(text[i - 1]))) {
        const delim = text[i + 1] === ch ? ch + ch : ch;
        const end = closingDelimiter(text, i + delim.length, delim);
        // snake_case_words keep their underscores.
        const wordAfter = ch === "_" && end > 0 && isWordChar(text[end + delim.length]);
        if (end > 0 && !wordAfter) {
          flush();
          const node = el(delim.length === 2 ? "strong" : "em");
          node.append(...inline(text.slice(i + delim.length, end), inLink));
          out.push(node);
          i = end + delim.length;
          continue;
        }
      }
      if (!inLink && (ch === "h" || ch === "H") && !isWordChar(text[i - 1])) {
        BARE_URL.lastIndex = i;
        const bare = BARE_URL.exec(text);
        if (bare) {
          // Trailing punctuation belongs to the sentence, not the URL.
          const raw = bare[0].replace(/[.,;:!?)\]]+$/, "");
          const url = safeUrl(raw);
          if (url) {
            flush();
            out.push(link(url, [document.createTextNode(raw)]));
            i += raw.length;
            continue;
          }
        }
      }
      buf += ch;
      i += 1;
    }
    flush();
    return out;
  }

  // Blocks --------------------------------------------------------------------

  function isBlockStart(line) {
    return FENCE.test(line) || HEADING.test(line) || QUOTE.test(line) ||
      BULLET.test(line) || ORDERED.test(line);
  }

  function fencedCode(lines, i) {
    const open = FENCE.exec(lines[i]);
    const body = [];
    let j = i + 1;
    while (j < lines.length) {
      const close = FENCE.exec(lines[j]);
      if (close && close[1][0] === open[1][0] && close[1].length >= open[1].length &&
          !close[2]) break;
      body.push(lines[j]);
      j += 1;
    }
    const pre = el("pre", "md-code");
    const code = el("code");
    code.textContent = body.join("\n");
    if (open[2]) pre.dataset.lang = open[2];
    pre.append(code);
    return { node: pre, next: j + 1 };
  }

  function list(lines, i) {
    const ordered = ORDERED.test(lines[i]) && !BULLET.test(lines[i]);
    const pattern = ordered ? ORDERED : BULLET;
    const node = el(ordered ? "ol" : "ul");
    if (ordered) {
      const first = Number(ORDERED.exec(lines[i])[1]);
      if (first !== 1) node.start = first;
    }
    let item = null;
    let j = i;
    while (j < lines.length) {
      const line = lines[j];
      const match = pattern.exec(line);
      if (match) {
        item = [match[2]];
        node.append(listItem(item));
      } else if (/^\s*$/.test(line)) {
        // A blank line ends the list unless another item of it follows.
        if (!(j + 1 < lines.length && pattern.test(lines[j + 1]))) break;
      } else if (/^\s+\S/.test(line) && item) {
        item.push(line.trim());
        node.lastChild.replaceChildren(...inline(item.join("\n")));
      } else {
        break;
      }
      j += 1;
    }
    return { node, next: j };
  }

  function listItem(parts) {
    const li = el("li");
    li.append(...inline(parts.join("\n")));
    return li;
  }

  function paragraph(lines, i) {
    const body = [];
    let j = i;
    while (j < lines.length && !/^\s*$/.test(lines[j]) &&
           (j === i || !isBlockStart(lines[j]))) {
      body.push(lines[j].trim());
      j += 1;
    }
    const p = el("p");
    p.append(...inline(body.join("\n")));
    return { node: p, next: j };
  }

  function quote(lines, i) {
    const body = [];
    let j = i;
    while (j < lines.length && QUOTE.test(lines[j])) {
      body.push(QUOTE.exec(lines[j])[1]);
      j += 1;
    }
    const node = el("blockquote");
    node.append(render(body.join("\n")));
    return { node, next: j };
  }

  function heading(lines, i) {
    const match = HEADING.exec(lines[i]);
    // Answers sit inside a card: their headings stay small.
    const node = el(`h${Math.min(match[1].length + 2, 6)}`);
    node.append(...inline(match[2]));
    return { node, next: i + 1 };
  }

  function block(lines, i) {
    const line = lines[i];
    if (FENCE.test(line)) return fencedCode(lines, i);
    if (HEADING.test(line)) return heading(lines, i);
    if (QUOTE.test(line)) return quote(lines, i);
    if (BULLET.test(line) || ORDERED.test(line)) return list(lines, i);
    return paragraph(lines, i);
  }

  /* Renders `source` into a DocumentFragment of safe nodes. */
  function render(source) {
    const fragment = document.createDocumentFragment();
    const lines = String(source || "").replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      if (/^\s*$/.test(lines[i])) {
        i += 1;
        continue;
      }
      const { node, next } = block(lines, i);
      fragment.append(node);
      i = next;
    }
    return fragment;
  }

  window.SafeMarkdown = Object.freeze({ render, safeUrl });
})();
