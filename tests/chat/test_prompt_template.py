"""Contract "Templates (`prompt`)": one pass, no evaluation, values and the whole cut;
filters' paths with `*`. Pure functions, no database."""

from __future__ import annotations

import pytest

from chat.errors import Invalid
from chat.prompt_template import (
    SCHEDULE_VARIABLES,
    TRIGGER_VARIABLES,
    filter_matches,
    path_parse,
    template_parse,
    template_render,
)

BODY = {
    "type": "Issue",
    "action": "create",
    "data": {
        "title": "Login broken",
        "number": 7,
        "open": True,
        "assignee": None,
        "labels": [{"name": "bug"}, {"name": "ui"}],
        "team": {"key": "ENG"},
    },
}


def render(text: str, body: object = BODY, **variables: str) -> str:
    return template_parse(text, variables=TRIGGER_VARIABLES).render(
        body=body, variables=variables, value_max=2000, total_max=10_000
    )


def test_paths_and_variables_are_inserted() -> None:
    text = "{{ $event }}: {{data.title}} ({{ data.labels.1.name }}) by {{ $source }}"
    assert render(text, event="Issue.create", source="linear") == (
        "Issue.create: Login broken (ui) by linear"
    )


def test_values_as_json_null_and_missing_as_nothing() -> None:
    assert render("{{ data.number }} {{ data.open }}") == "7 true"
    assert render("[{{ data.assignee }}][{{ data.nope.deeper }}]") == "[][]"
    assert render("{{ data.labels.9.name }}|{{ $trigger }}") == "|"
    assert render("{{ data.team }}") == '{"key":"ENG"}'
    assert render("{{ data.labels.0 }}") == '{"name":"bug"}'


def test_an_inserted_value_is_never_read_again() -> None:
    body = {"title": "{{ secret }} {{ $delivery }} {% x %}"}
    assert render("T: {{ title }}", body, delivery="d1") == (
        "T: {{ secret }} {{ $delivery }} {% x %}"
    )


def test_each_value_is_cut_then_marked_and_the_whole_is_cut() -> None:
    body = {"a": "x" * 50, "n": list(range(30))}
    template = template_parse("{{ a }}-{{ n }}", variables=())
    out = template.render(body=body, variables={}, value_max=10, total_max=1000)
    assert out == "x" * 10 + "…-" + "[0,1,2,3,4"[:10] + "…"
    whole = template.render(body=body, variables={}, value_max=100, total_max=20)
    assert len(whole) == 20


def test_defaults_come_from_the_settings(settings) -> None:
    settings.TRIGGER_VALUE_MAX_CHARS = 3
    settings.AGENT_MAX_INPUT_CHARS = 6
    out = template_render("{{ a }}{{ b }}", variables={}, body={"a": "abcd", "b": "z"})
    assert out == "abc…z"
    assert template_render("xxxxxxxxxx", variables={}) == "xxxxxx"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Hi {{ title", "{{ title"),
        ("{{ a b }}", "{{ a b }}"),
        ("{{ a..b }}", "{{ a..b }}"),
        ("{{ a|upper }}", "{{ a|upper }}"),
        ("{{{ a }}}", "{{{ a }}"),
        ("{{}}", "{{}}"),
        ("{{ $secret }}", "$secret"),
        ("{{ data.* }}", "{{ data.* }}"),
    ],
)
def test_a_bad_placeholder_is_named(text: str, named: str) -> None:
    with pytest.raises(Invalid) as caught:
        template_parse(text, variables=TRIGGER_VARIABLES)
    assert named in caught.value.detail


def test_schedule_prompts_know_only_their_variables() -> None:
    template = template_parse(
        "At {{ $slot }} ({{$schedule}})", variables=SCHEDULE_VARIABLES, paths=False
    )
    assert template.render(variables={"slot": "s", "schedule": "n"}) == "At s (n)"
    with pytest.raises(Invalid, match=r"\$event"):
        template_parse("{{ $event }}", variables=SCHEDULE_VARIABLES, paths=False)
    with pytest.raises(Invalid, match="data.title"):
        template_parse("{{ data.title }}", variables=SCHEDULE_VARIABLES, paths=False)


def test_braces_that_open_nothing_are_text() -> None:
    assert render("{ a } }} {x}") == "{ a } }} {x}"


def test_filters_match_by_json_equality_and_wildcards() -> None:
    assert filter_matches(BODY, {"data.team.key": "ENG", "action": "create"})
    assert filter_matches(BODY, {"data.labels.*.name": "ui"})
    assert filter_matches(BODY, {"data.assignee": None})
    assert filter_matches(BODY, {"data.number": 7.0})
    assert not filter_matches(BODY, {"data.open": 1})
    assert not filter_matches(BODY, {"data.number": "7"})
    assert not filter_matches(BODY, {"data.missing": None})
    assert not filter_matches(BODY, {"data.labels.*.name": "docs"})
    assert filter_matches(BODY, {})


def test_filter_paths_allow_a_star_templates_do_not() -> None:
    assert path_parse("a.*.b", wildcard=True) == ("a", "*", "b")
    for bad in ["", "a..b", "a.b c", "a.**", 3]:
        with pytest.raises(Invalid):
            path_parse(bad, wildcard=True)
    with pytest.raises(Invalid):
        path_parse("a.*")
