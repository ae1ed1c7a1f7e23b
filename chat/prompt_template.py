"""Prompt templates of triggers and schedules (contract: "Templates (`prompt`)").

`{{ path }}` inserts a value of the delivery's body, `{{ $name }}` one the caller
passes (`$event`, `$slot`, ...). Nothing else exists: rendering is one pass, left to
right, and an inserted value is never read again, so an issue titled `{{ secret }}`
arrives as those characters. Filters use the same paths, plus `*` for any list
element. Pure functions: no database, settings read only for the default cuts.
"""

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat.errors import Invalid

TRIGGER_VARIABLES = ("event", "delivery", "source", "trigger")
SCHEDULE_VARIABLES = ("slot", "schedule")

_KEY = r"[A-Za-z0-9_-]+"
_KEY_RE = re.compile(_KEY)
# `{{`, optional spaces, a `$name` or a path, optional spaces, `}}`.
_PLACEHOLDER = re.compile(r"\{\{ *(\$?" + _KEY + r"(?:\." + _KEY + r")*) *\}\}")
# What an error quotes of a bad placeholder: up to its `}}`, at most this much.
_QUOTE_CHARS = 40
ELLIPSIS = "…"


@dataclass(frozen=True)
class Placeholder:
    variable: str | None  # `$name` without the `$`, or None for a path
    path: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Placeholder, ...]

    def render(
        self,
        *,
        body: Any = None,
        variables: Mapping[str, str] | None = None,
        value_max: int | None = None,
        total_max: int | None = None,
    ) -> str:
        """The text, each inserted value cut to `value_max` characters (then `…`),
        the whole cut to `total_max` (defaults: TRIGGER_VALUE_MAX_CHARS,
        AGENT_MAX_INPUT_CHARS)."""
        if value_max is None:
            value_max = settings.TRIGGER_VALUE_MAX_CHARS
        if total_max is None:
            total_max = settings.AGENT_MAX_INPUT_CHARS
        variables = variables or {}
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part.variable is not None:
                value: Any = variables.get(part.variable)
            else:
                found = path_values(body, part.path)
                value = found[0] if found else None
            out.append(value_text(value, value_max))
        return "".join(out)[:total_max]


def template_parse(
    text: str, *, variables: Collection[str], paths: bool = True
) -> Template:
    """`text` as a template; Invalid (400) naming the first bad placeholder.

    `variables`: the `$names` this kind of prompt knows; `paths`: whether `{{ a.b }}`
    (the event's body) is allowed.
    """
    parts: list[str | Placeholder] = []
    at = 0
    while (start := text.find("{{", at)) != -1:
        if start > at:
            parts.append(text[at:start])
        match = _PLACEHOLDER.match(text, start)
        if match is None:
            raise Invalid(
                f"prompt: {_quote(text, start)!r} (character {start + 1}) is not a "
                "placeholder: write {{ path }} or {{ $name }}, closed by }}."
            )
        name = match.group(1)
        if name.startswith("$"):
            if name[1:] not in variables:
                known = ", ".join(f"${v}" for v in variables) or "none"
                raise Invalid(
                    f"prompt: {{{{ {name} }}}} is not a variable here (known: {known})."
                )
            parts.append(Placeholder(variable=name[1:], path=()))
        else:
            if not paths:
                raise Invalid(
                    f"prompt: {{{{ {name} }}}}: this prompt has no event to read "
                    "paths from; only $-variables."
                )
            parts.append(Placeholder(variable=None, path=tuple(name.split("."))))
        at = match.end()
    if at < len(text):
        parts.append(text[at:])
    return Template(parts=tuple(parts))


def template_render(
    text: str,
    *,
    variables: Mapping[str, str],
    body: Any = None,
    value_max: int | None = None,
    total_max: int | None = None,
) -> str:
    """Parse and render at once (the `$names` known are those passed)."""
    template = template_parse(text, variables=variables.keys(), paths=True)
    return template.render(
        body=body, variables=variables, value_max=value_max, total_max=total_max
    )


def _quote(text: str, start: int) -> str:
    end = text.find("}}", start + 2)
    stop = len(text) if end == -1 else end + 2
    quoted = text[start : min(stop, start + _QUOTE_CHARS)]
    return quoted if stop <= start + _QUOTE_CHARS else quoted + ELLIPSIS


def value_text(value: Any, limit: int) -> str:
    """A value as a template inserts it: a string as is, a number or boolean as
    JSON, null as nothing, an object or list as compact JSON; cut to `limit`
    characters, then `…`."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + ELLIPSIS


def path_parse(path: object, *, wildcard: bool = False) -> tuple[str, ...]:
    """A path's keys; Invalid naming it unless each key is `[A-Za-z0-9_-]` (or `*`
    when `wildcard`, for filters)."""
    if not isinstance(path, str) or not path:
        raise Invalid(f"{path!r} is not a path: keys of [A-Za-z0-9_-] joined by '.'.")
    keys = tuple(path.split("."))
    for key in keys:
        if not (_KEY_RE.fullmatch(key) or (wildcard and key == "*")):
            what = "[A-Za-z0-9_-] or *" if wildcard else "[A-Za-z0-9_-]"
            raise Invalid(f"{path!r} is not a path: keys of {what} joined by '.'.")
    return keys


def path_values(body: Any, keys: tuple[str, ...]) -> list[Any]:
    """The values at `keys` in `body`: none when the path is missing, several when
    a `*` matched several list elements. A key of digits indexes a list."""
    return list(_walk(body, keys))


def _walk(value: Any, keys: tuple[str, ...]) -> Iterator[Any]:
    if not keys:
        yield value
        return
    key, rest = keys[0], keys[1:]
    if isinstance(value, dict):
        if key in value:
            yield from _walk(value[key], rest)
    elif isinstance(value, list):
        if key == "*":
            for item in value:
                yield from _walk(item, rest)
        elif key.isdigit() and int(key) < len(value):
            yield from _walk(value[int(key)], rest)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality of scalars: `true` is not `1`, `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def filter_matches(body: Any, conditions: Mapping[str, Any]) -> bool:
    """Whether `body` has, at every path, a value equal to the condition's (with
    `*`, at least one element's); a missing path does not match."""
    for path, expected in conditions.items():
        keys = path_parse(path, wildcard=True)
        if not any(json_equal(v, expected) for v in path_values(body, keys)):
            return False
    return True
