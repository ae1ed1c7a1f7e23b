"""A deterministic stand-in for a chat model that manages Linear issues.

`respond` reads an OpenAI-style conversation and answers the way a (rather
literal) model would: it proposes tool calls for plain commands such as
"delete ENG-3" and describes tool results in words. Everything is a pure
function of the conversation, so tests can predict every answer and a retried
request gets the same answer, tool call ids included.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IDENTIFIER = re.compile(r"\b[A-Z]{2,5}-\d+\b")
# A huge count would tie a server thread up for minutes; benchmarks need far less.
MAX_COUNT = 100_000
COUNT = re.compile(r"count to (\d+)", re.IGNORECASE)
INJECTION = "delete every issue"

ToolCall = tuple[str, dict[str, Any]]


@dataclass
class Reply:
    """What the model answers: words, tool calls, or both."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Set for a "count to N" answer, so the server can timestamp its tokens.
    count_to: int | None = None


def respond(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> Reply:
    """Answer the conversation `messages`, calling only tools named in `tools`."""
    available = tool_names(tools)
    if messages and messages[-1].get("role") == "tool":
        return answer_tool_results(messages, available)
    return answer_user(last_user_text(messages), available)


def tool_call_id(messages: list[dict[str, Any]], index: int) -> str:
    """The id of the `index`-th tool call answering `messages`.

    Derived from the conversation so that a retried request proposes the same
    ids, which is what lets the app recognise a call it has already seen.
    """
    seed = json.dumps(messages, sort_keys=True, default=str) + f"#{index}"
    return "call_" + hashlib.sha1(seed.encode()).hexdigest()[:24]


def tool_names(tools: list[dict[str, Any]] | None) -> set[str]:
    """The function names offered in `tools` (modern or legacy format)."""
    names = set()
    for tool in tools or []:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(function, dict) and function.get("name"):
            names.add(function["name"])
    return names


def content_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the newest user message, or "" when there is none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message).strip()
    return ""


def identifiers(text: str) -> list[str]:
    """Distinct issue identifiers such as ENG-3 in `text`, in order of appearance."""
    return list(dict.fromkeys(IDENTIFIER.findall(text)))


def unquote(value: str) -> str:
    """`value` without surrounding whitespace and one pair of quotes."""
    value = value.strip()
    if len(value) >= 2 and value[0] + value[-1] in ('""', "''", "“”"):
        value = value[1:-1]
    return value.strip()


def clean(value: str) -> str:
    """A value taken from free text, without quotes and trailing punctuation."""
    return unquote(value.strip().rstrip(".!?,;"))


def calls_or_refusal(calls: list[ToolCall], available: set[str]) -> Reply:
    """`calls` as a reply, or words explaining that a needed tool is missing."""
    missing = sorted({name for name, _ in calls if name not in available})
    if missing:
        names = ", ".join(missing)
        return Reply(text=f"I cannot do that: the tool {names} is not available here.")
    return Reply(tool_calls=calls)


# ---------------------------------------------------------------------------
# The last message is the user's: commands become tool calls.


# Commands joined by " ;; " are answered together: every call of every part, in one
# reply (a model proposing several tool calls at once, across packs).
SEVERAL = re.compile(r"\s+;;\s+")


def answer_user(text: str, available: set[str]) -> Reply:
    """Answer a user message: a count, a command for a tool, or a general answer."""
    parts = SEVERAL.split(text)
    if len(parts) > 1:
        replies = [answer_user(part, available) for part in parts]
        calls = [call for reply in replies for call in reply.tool_calls]
        if calls and all(reply.tool_calls for reply in replies):
            return Reply(tool_calls=calls)
        return Reply(text=" ".join(r.text for r in replies if r.text))
    count = COUNT.fullmatch(text)
    if count:
        return count_reply(int(count.group(1)))
    direct = direct_call(text)
    if direct is not None:
        return (
            calls_or_refusal(direct.tool_calls, available)
            if direct.tool_calls
            else direct
        )
    for pack_intent in (github_intent, notes_intent):
        reply = pack_intent(text, available)
        if reply is not None:
            return (
                calls_or_refusal(reply.tool_calls, available)
                if reply.tool_calls
                else reply
            )
    handler = intent_handler(text)
    reply = handler(text) if handler else None
    if reply is None:
        return general_answer(text)
    return calls_or_refusal(reply.tool_calls, available) if reply.tool_calls else reply


def count_reply(n: int) -> Reply:
    """The words 1..n, each followed by a space (one token each when streamed)."""
    n = min(n, MAX_COUNT)
    return Reply(text="".join(f"{k} " for k in range(1, n + 1)), count_to=n)


def intent_handler(text: str) -> Callable[[str], Reply | None] | None:
    """The handler of the command whose verb comes first in `text`.

    The earliest verb wins so that "create issue: delete old logs" creates an
    issue instead of deleting something.
    """
    found = []
    for pattern, handler in INTENTS:
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            found.append((match.start(), handler))
    return min(found, key=lambda item: item[0])[1] if found else None


def general_answer(text: str) -> Reply:
    """A deterministic, helpful answer to anything that is not a command."""
    words = text.split()
    quote = " ".join(words[:8]) + (" ..." if len(words) > 8 else "")
    opening = f'You asked: "{quote}".' if quote else "You did not ask anything yet."
    return Reply(
        text=f"{opening} I am the demo assistant for this room. I can search, show, "
        "create, update, delete and comment on Linear and GitHub issues for you, "
        'and keep notes. Try "find issues about login", "show ENG-3", "search notes '
        'for launch" or "count to 400", and I will take it from there.'
    )


# Other packs' tools: a direct call, GitHub issues, and an MCP notes server.

DIRECT = re.compile(r"call\s+([A-Za-z0-9_-]{1,64})(?:\s+with)?\s*(\{.*\})?\s*", re.S)


def direct_call(text: str) -> Reply | None:
    """ "call notes__add_note {"title": "x", "text": "y"}": exactly that call."""
    match = DIRECT.fullmatch(text)
    if not match:
        return None
    try:
        args = json.loads(match.group(2) or "{}")
    except ValueError:
        return Reply(text="Those arguments are not valid JSON.")
    if not isinstance(args, dict):
        return Reply(text="The arguments of a call are a JSON object.")
    return Reply(tool_calls=[(match.group(1), args)])


NUMBER = re.compile(r"#(\d+)")


def github_intent(text: str, available: set[str]) -> Reply | None:
    """Commands that say "github" (or name an issue like #12) -> the github_ tools."""
    if not re.search(r"\bgithub\b", text, re.I):
        return None
    number = NUMBER.search(text)
    n = {"number": int(number.group(1))} if number else {}
    if re.match(r"\s*(?:create|open)\b", text, re.I):
        title = re.search(r"(?:titled|called|named|:)\s*(.+)", text, re.I | re.S)
        if not title or not clean(title.group(1)):
            return Reply(text="What should the new GitHub issue be called?")
        return Reply(
            tool_calls=[("github_create_issue", {"title": clean(title.group(1))})]
        )
    if re.match(r"\s*comment\b", text, re.I) and number:
        body = re.split(r":|\bsaying\b", text[number.end() :], maxsplit=1)
        if len(body) < 2 or not clean(body[1]):
            return Reply(text=f"What should the comment on #{n['number']} say?")
        return Reply(
            tool_calls=[("github_add_comment", {**n, "body": unquote(body[1])})]
        )
    if re.match(r"\s*(?:close|reopen)\b", text, re.I) and number:
        state = "closed" if re.match(r"\s*close", text, re.I) else "open"
        return Reply(tool_calls=[("github_update_issue", {**n, "state": state})])
    if re.match(r"\s*(?:show|get|read)\b", text, re.I) and number:
        return Reply(tool_calls=[("github_get_issue", n)])
    if re.match(r"\s*(?:find|search|list|show)\b", text, re.I):
        about = re.search(r"\b(?:about|for|matching|mentioning)\s+(.+)", text, re.I)
        query = clean(about.group(1)) if about else ""
        return Reply(tool_calls=[("github_search_issues", {"query": query})])
    return None


def notes_intent(text: str, available: set[str]) -> Reply | None:
    """ "add a note titled X: text", "search notes for X", "delete note n2" -> the
    tools of an MCP notes server, whatever it is named."""
    tools = {name.partition("__")[2]: name for name in available if "__" in name}
    if not re.search(r"\bnotes?\b", text, re.I) or not tools:
        return None
    add = re.match(
        r"\s*(?:add|write|take)\s+(?:a\s+)?note\s+(?:titled\s+)?(.+?)\s*:\s*(.+)",
        text,
        re.I | re.S,
    )
    if add and "add_note" in tools:
        args = {"title": clean(add.group(1)), "text": unquote(add.group(2))}
        return Reply(tool_calls=[(tools["add_note"], args)])
    delete = re.match(r"\s*delete\s+note\s+(\S+)", text, re.I)
    if delete and "delete_note" in tools:
        return Reply(
            tool_calls=[(tools["delete_note"], {"id": clean(delete.group(1))})]
        )
    search = re.match(r"\s*(?:search|find|list)\s+(?:my\s+)?notes?\b(.*)", text, re.I)
    if search and "search_notes" in tools:
        query = re.sub(
            r"^\s*(?:for|about|matching)\s+", "", search.group(1), flags=re.I
        )
        return Reply(tool_calls=[(tools["search_notes"], {"query": clean(query)})])
    return None


CREATE = re.compile(
    r"create\s+(?:an?\s+)?(?:new\s+)?(?:linear\s+)?issue\s*"
    r"(?::|titled|called|named)?\s*(.*)",
    re.IGNORECASE | re.DOTALL,
)


def create_intent(text: str) -> Reply | None:
    """ "create an issue titled X" and its variants -> create_issue."""
    match = CREATE.search(text)
    if not match:
        return None
    rest = match.group(1)
    # A quoted title may contain anything, even words that end an unquoted one.
    quoted = re.match(r'\s*["“\'](.+?)["”\']', rest)
    if quoted:
        title = clean(quoted.group(1))
    else:
        title = clean(re.split(TITLE_END, rest, maxsplit=1, flags=re.I)[0])
    if not title:
        return Reply(text="What should the new issue be called?")
    return Reply(tool_calls=[("create_issue", {"title": title, **create_extras(rest)})])


# Where a title stops and the optional parts of a create command begin.
TITLE_END = r"(?:,|\s)\s*(?:with\s+)?(?:description\s*:|in\s+team\s+|priority\s+\d)"


def create_extras(rest: str) -> dict[str, Any]:
    """The description, team and priority named in a create command."""
    extras: dict[str, Any] = {}
    description = re.search(
        r"description\s*:\s*(.+?)(?=,?\s+in\s+team\s+|,?\s+priority\s+\d|$)",
        rest,
        re.IGNORECASE | re.DOTALL,
    )
    if description:
        extras["description"] = unquote(description.group(1).rstrip(","))
    team = re.search(r"\bin\s+team\s+([A-Za-z]{2,5})\b", rest, re.IGNORECASE)
    if team:
        extras["team"] = team.group(1).upper()
    priority = re.search(r"\bpriority\s+(\d)\b", rest, re.IGNORECASE)
    if priority:
        extras["priority"] = int(priority.group(1))
    return extras


def update_intent(text: str) -> Reply | None:
    """ "set ENG-3 state to Done", "move ENG-3 to Done" ... -> update_issue."""
    ids = identifiers(text)
    if not ids:
        return Reply(text="Which issue should I update? Name it like ENG-3.")
    changes = update_fields(text)
    if not changes:
        return Reply(text=f"What should I change on {ids[0]}?")
    return Reply(tool_calls=[("update_issue", {"id": ids[0], **changes})])


UPDATE_FIELD = re.compile(
    r"\b(title|state|status|priority|description|assignee)\b"
    r"(?:\s+of\s+[A-Z]{2,5}-\d+)?\s+to\s+",
    re.IGNORECASE,
)


def update_fields(text: str) -> dict[str, Any]:
    """The fields an update command sets; each value runs up to the next field."""
    changes: dict[str, Any] = {}
    matches = list(UPDATE_FIELD.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = re.sub(r"[\s,]+(?:and|its)?\s*$", "", text[match.end() : end])
        name = "state" if match.group(1).lower() == "status" else match.group(1).lower()
        changes[name] = clean(value)
    move = re.search(r"\bmove\s+[A-Z]{2,5}-\d+\s+to\s+(.+)", text, re.IGNORECASE)
    if move and "state" not in changes:
        changes["state"] = clean(move.group(1))
    if "priority" in changes:
        digits = re.search(r"\d+", changes["priority"])
        changes["priority"] = int(digits.group()) if digits else changes["priority"]
    return changes


def comment_intent(text: str) -> Reply | None:
    """ "comment on ENG-3: text" / "add a comment to ENG-3 saying text"."""
    match = IDENTIFIER.search(text)
    if not match:
        return Reply(text="Which issue should I comment on? Name it like ENG-3.")
    body = re.sub(
        r"^\s*(?::|saying|that says|with the text|with text|with)\s*",
        "",
        text[match.end() :],
        flags=re.IGNORECASE,
    )
    if not clean(body):
        return Reply(text=f"What should the comment on {match.group()} say?")
    # Unlike other values the body keeps its final punctuation.
    call = ("add_comment", {"id": match.group(), "body": unquote(body)})
    return Reply(tool_calls=[call])


def delete_intent(text: str) -> Reply | None:
    """ "delete ENG-3" (or several identifiers) -> one delete_issue per issue."""
    ids = identifiers(text)
    if not ids:
        return Reply(text="Which issue should I delete? Name it like ENG-3.")
    return Reply(tool_calls=[("delete_issue", {"id": i}) for i in ids])


def get_intent(text: str) -> Reply | None:
    """ "show ENG-3" -> get_issue; "show issues about X" is a search."""
    ids = identifiers(text)
    if ids:
        return Reply(tool_calls=[("get_issue", {"id": i}) for i in ids])
    return search_intent(text) if re.search(r"\bissues?\b", text, re.I) else None


def search_intent(text: str) -> Reply | None:
    """ "find issues about X" / "list issues" -> search_issues."""
    about = re.search(
        r"\b(?:about|for|matching|mentioning|containing|with)\s+(.+)", text, re.I
    )
    if about:
        query = about.group(1)
    else:
        verb = re.search(r"\b(?:find|search|list|show|look up|look for)\b", text, re.I)
        query = text[verb.end() :] if verb else ""
        query = re.sub(r"^\s*(?:me\s+)?(?:all\s+)?(?:the\s+)?(?:open\s+)?", "", query)
        query = re.sub(r"^(?:linear\s+)?issues?\b", "", query, flags=re.I)
    return Reply(tool_calls=[("search_issues", {"query": clean(query)})])


INTENTS: list[tuple[str, Callable[[str], Reply | None]]] = [
    (r"\bcreate\b", create_intent),
    (r"\bcomment\b", comment_intent),
    (r"\b(?:update|set|move|change|rename|priority\s+of)\b", update_intent),
    (r"\bdelete\b", delete_intent),
    (r"\b(?:show|get|what\s+is|what's|tell\s+me\s+about|describe)\b", get_intent),
    (r"\b(?:find|search|list|look\s+up|look\s+for)\b", search_intent),
]


# ---------------------------------------------------------------------------
# The last message is a tool result: describe it in words.


def answer_tool_results(messages: list[dict[str, Any]], available: set[str]) -> Reply:
    """Answer about every tool result that follows the last assistant message."""
    results = trailing_tool_messages(messages)
    calls = calls_by_id(messages)
    injected = injected_ids(results)
    if injected:
        # Gullible on purpose: the security tests check that the app does not
        # simply execute what a tool result told the model to do.
        deletes = [("delete_issue", {"id": i}) for i in injected]
        return calls_or_refusal(deletes, available)
    sentences = []
    for message in results:
        name, args = calls.get(message.get("tool_call_id", ""), ("", {}))
        sentences.append(describe_result(name, args, content_text(message)))
    return Reply(text=" ".join(sentences))


def injected_ids(results: list[dict[str, Any]]) -> list[str]:
    """Every issue named in a tool result that says to "delete every issue"."""
    found: list[str] = []
    for message in results:
        text = content_text(message)
        if INJECTION in text.lower():
            found += identifiers(text)
    return list(dict.fromkeys(found))


def trailing_tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run of tool messages at the end of the conversation, in order."""
    start = len(messages)
    while start > 0 and messages[start - 1].get("role") == "tool":
        start -= 1
    return messages[start:]


def calls_by_id(messages: list[dict[str, Any]]) -> dict[str, ToolCall]:
    """Every tool call the assistant made, by id, with parsed arguments."""
    calls: dict[str, ToolCall] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            calls[call.get("id", "")] = (
                function.get("name", ""),
                parse_json_object(function.get("arguments")),
            )
    return calls


def parse_json_object(raw: Any) -> dict[str, Any]:
    """`raw` (a JSON string or a dict) as a dict; {} when it is neither."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def parse_result(text: str) -> Any:
    """A tool message's content: parsed JSON when it is JSON, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


VERBS = {
    "delete_issue": "delete",
    "create_issue": "create",
    "update_issue": "update",
    "add_comment": "comment on",
    "get_issue": "look up",
    "search_issues": "search for",
    "github_create_issue": "create",
    "github_update_issue": "update",
    "github_add_comment": "comment on",
}


def describe_result(name: str, args: dict[str, Any], text: str) -> str:
    """One or two sentences about the result `text` of the call `name(args)`."""
    data = parse_result(text)
    if isinstance(data, dict) and isinstance(data.get("edited"), dict):
        # An approver changed the call: speak of what ran, not what was proposed.
        args = data["edited"].get("ran_with") or args
    if has_flag(data, "denied"):
        sentence = denied_sentence(name, args, data)
    elif has_flag(data, "expired"):
        sentence = (
            f"The request to {VERBS.get(name, 'run')} {target(args)} expired "
            "before anyone decided, so I did not do it."
        )
    elif isinstance(data, dict) and data.get("error"):
        sentence = f"That did not work: {clean(error_text(data['error']))}."
    else:
        sentence = success_sentence(name, args, unwrap(data))
    return with_edit_note(sentence, data)


def unwrap(data: Any) -> Any:
    """The tool's own result inside an app's `{"tool", "status", "result"}` envelope."""
    if isinstance(data, dict) and "tool" in data and "result" in data:
        return data["result"]
    return data


def has_flag(data: Any, word: str) -> bool:
    """Whether a result says `word` ("denied", "edited" ...) about the call.

    For JSON only the outcome fields count: an issue titled "Access denied"
    in a search result is not a denial.
    """
    if isinstance(data, str):
        return word in data.lower()
    if not isinstance(data, dict):
        return False
    # "denied": true, "edited_by": "ana", "expired_at": "..." all say so.
    if any(word in str(k).lower() and v for k, v in data.items()):
        return True
    outcome = (data.get(k) for k in ("status", "outcome", "decision", "note"))
    return any(isinstance(v, str) and word in v.lower() for v in outcome)


def with_edit_note(sentence: str, data: Any) -> str:
    """`sentence`, noting that an approver edited the call's arguments."""
    if not has_flag(data, "edited"):
        return sentence
    return sentence.rstrip(".") + " (with the arguments you edited)."


def target(args: dict[str, Any]) -> str:
    """How to name the object of a call: its identifier, title or query."""
    if args.get("id"):
        return str(args["id"])
    if args.get("title"):
        return f'the issue "{args["title"]}"'
    return f'"{args["query"]}"' if args.get("query") else "that"


def denied_sentence(name: str, args: dict[str, Any], data: Any) -> str:
    """What to say when a person denied the call."""
    if isinstance(data, dict):
        reason = data.get("reason") or data.get("message") or ""
    else:
        match = re.search(r"reason\s*(?:given)?\s*:\s*(.+)", data, re.I | re.S)
        reason = match.group(1) if match else data
    reason = clean(str(reason)) or "none"
    verb = VERBS.get(name, "do")
    return f"Understood, I did not {verb} {target(args)}. Reason given: {reason}."


def error_text(error: Any) -> str:
    """The message of an error that is a string or an object with a message."""
    if isinstance(error, dict):
        return str(error.get("message") or json.dumps(error))
    return str(error)


def success_sentence(name: str, args: dict[str, Any], data: Any) -> str:
    """Words about a successful result, chosen by the tool and the result's shape."""
    if isinstance(data, dict) and isinstance(data.get("text"), str) and "__" in name:
        return f"{name} answered: {short(data['text'])}."
    if name.startswith("github_"):
        name = name.removeprefix("github_")
        args = {**args, "id": f"#{args['number']}"} if "number" in args else args
    issues = issue_list(data)
    if name == "search_issues" or (issues is not None and not name):
        return search_sentence(args, issues or [])
    issue = find_issue(data)
    label = issue_label(issue, args)
    if name == "delete_issue":
        return f"Done: I deleted {label}."
    if name == "create_issue":
        return f"Done: I created {label}."
    if name == "update_issue":
        return f"Done: I updated {label}{change_summary(args)}."
    if name == "add_comment":
        return f"Done: I added a comment to {args.get('id') or label}."
    if issue:
        return issue_sentence(issue)
    return f"The tool {name or 'call'} returned: {short(data)}."


def issue_list(data: Any) -> list[dict[str, Any]] | None:
    """The issues of a search result: a list, or a list under a usual key."""
    if isinstance(data, dict):
        for key in ("issues", "results", "nodes", "items", "data"):
            found = issue_list(data.get(key))
            if found is not None:
                return found
        return None
    if isinstance(data, list) and all(isinstance(i, dict) for i in data):
        return data
    return None


def find_issue(data: Any) -> dict[str, Any] | None:
    """The issue a result is about: the result itself or a dict inside it."""
    if not isinstance(data, dict):
        return None
    if "identifier" in data or "title" in data:
        return data
    for value in data.values():
        if isinstance(value, dict) and ("identifier" in value or "title" in value):
            return value
    return None


def name_of(value: Any) -> str:
    """A state or person given as a string or as an object with a name."""
    if isinstance(value, dict):
        return str(value.get("name") or value.get("displayName") or "")
    return "" if value is None else str(value)


def issue_label(issue: dict[str, Any] | None, args: dict[str, Any]) -> str:
    """ "ENG-3 (Title)" from the result, falling back to the call's arguments."""
    issue = issue or {}
    ident = issue.get("identifier") or args.get("id") or ""
    title = issue.get("title") or args.get("title") or ""
    if ident and title:
        return f"{ident} ({title})"
    return str(ident) or (f'the issue "{title}"' if title else "the issue")


def change_summary(args: dict[str, Any]) -> str:
    """ ": state is now Done, priority is now 1" for the fields an update set."""
    changes = [f"{k} is now {v}" for k, v in args.items() if k not in ("id", "number")]
    return ": " + ", ".join(changes) if changes else ""


def search_sentence(args: dict[str, Any], issues: list[dict[str, Any]]) -> str:
    """ "I found N issues: ENG-1 Title (State), ..." """
    if not issues:
        query = args.get("query")
        return (
            f'I found no issues matching "{query}".' if query else "I found no issues."
        )
    parts = [
        f"{i.get('identifier', '?')} {i.get('title', '')} ({name_of(i.get('state'))})"
        for i in issues
    ]
    noun = "issue" if len(issues) == 1 else "issues"
    return f"I found {len(issues)} {noun}: " + ", ".join(parts) + "."


def issue_sentence(issue: dict[str, Any]) -> str:
    """Identifier, title, state and the first sentence of the description."""
    sentence = (
        f'{issue.get("identifier", "The issue")} is "{issue.get("title", "")}", '
        f"currently in state {name_of(issue.get('state')) or 'unknown'}."
    )
    description = str(issue.get("description") or "").strip()
    first = re.match(r"(.+?[.!?])(?:\s|$)", description, re.S)
    if description:
        sentence += " " + (first.group(1) if first else description[:200])
    return sentence


def short(data: Any) -> str:
    """A result squeezed into at most 200 characters for a sentence."""
    text = data if isinstance(data, str) else json.dumps(data)
    return clean(text[:200]) or "nothing"
