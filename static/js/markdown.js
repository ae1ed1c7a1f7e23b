/*
 * Markdown for untrusted text (model output, issue titles): markdown-it parses
 * it with raw HTML off, DOMPurify cleans what it made, and the caller gets
 * DOM nodes, never an HTML string.
 *
 * Both libraries are vendored (static/vendor/README.md) and loaded before this
 * script. markdown-it runs in time linear in its input, nests at most 100
 * blocks deep and has no backtracking regular expressions in its block rules:
 * the crafted inputs in tests/browser/test_markdown.py render in milliseconds.
 * Links go to absolute http(s) URLs only; images are never loaded (they stay
 * as the text that was typed).
 */
(function () {
  "use strict";

  const md = window.markdownit({ html: false, linkify: true, breaks: true });
  // Only what starts with http(s):// becomes a link: "example.com" in a sentence
  // or an email address stays text.
  md.linkify.set({ fuzzyLink: false, fuzzyEmail: false });
  md.validateLink = (url) => safeUrl(url) !== null;

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

  const ALIGN = /^text-align:(left|right|center)$/;

  md.core.ruler.push("agentsite", (state) => {
    for (const token of state.tokens) {
      // No newline between blocks: each would be one more text node for
      // DOMPurify to walk, and the page lays blocks out with CSS anyway.
      token.block = false;
      // Answers sit inside a card: their headings stay small.
      if (token.type === "heading_open" || token.type === "heading_close") {
        token.tag = `h${Math.min(Number(token.tag.slice(1)) + 2, 6)}`;
      }
      // Table alignment as a class, not a style attribute (the CSP allows none).
      const style = token.attrGet("style");
      if (style !== null) {
        const match = ALIGN.exec(style);
        token.attrs = token.attrs.filter(([name]) => name !== "style");
        if (match) token.attrJoin("class", `md-align-${match[1]}`);
      }
    }
  });

  const rules = md.renderer.rules;
  const escape = md.utils.escapeHtml;
  rules.link_open = (tokens, idx, options, env, self) => {
    tokens[idx].attrSet("target", "_blank");
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow");
    return self.renderToken(tokens, idx, options);
  };
  rules.softbreak = () => "<br>";
  rules.hardbreak = () => "<br>";
  rules.image = (tokens, idx) => {
    const token = tokens[idx];
    return escape(`![${token.content}](${token.attrGet("src") || ""})`);
  };
  rules.fence = (tokens, idx) => {
    const token = tokens[idx];
    const lang = token.info.trim().split(/\s+/)[0];
    const data = lang ? ` data-lang="${escape(lang)}"` : "";
    return `<pre class="md-code"${data}>${code(token)}</pre>`;
  };
  rules.code_block = (tokens, idx) => `<pre class="md-code">${code(tokens[idx])}</pre>`;

  function code(token) {
    return `<code>${escape(token.content.replace(/\n$/, ""))}</code>`;
  }

  // What markdown-it makes with html off; anything else is dropped.
  const PURIFY = {
    ALLOWED_TAGS: [
      "a", "blockquote", "br", "code", "del", "em", "h3", "h4", "h5", "h6", "hr",
      "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead",
      "tr", "ul",
    ],
    ALLOWED_ATTR: ["href", "target", "rel", "class", "data-lang", "start"],
    // Every attribute but these must match ALLOWED_URI_REGEXP, which then only
    // lets http(s) links through.
    ADD_URI_SAFE_ATTR: ["target", "rel", "data-lang", "start"],
    ALLOWED_URI_REGEXP: /^https?:\/\//i,
    RETURN_DOM_FRAGMENT: true,
  };

  /* Renders `source` into a DocumentFragment of safe nodes. */
  function render(source) {
    const html = md.render(String(source || ""));
    return window.DOMPurify.sanitize(html, PURIFY);
  }

  window.SafeMarkdown = Object.freeze({ render, safeUrl });
})();
