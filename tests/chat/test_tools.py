"""The tool catalogue's checks: what the model (or an approver) may call, and how.

A call that fails them never becomes an action; its error text goes back to the
model, so each must say plainly what was wrong.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from chat import tools
from chat.tools import InvalidCall, check_call, validate


def test_catalogue_offers_every_tool_with_its_schema() -> None:
    offered = tools.openai_tools()
    assert [t["function"]["name"] for t in offered] == list(tools.catalogue())
    assert {t["type"] for t in offered} == {"function"}
    assert all(t["function"]["parameters"]["type"] == "object" for t in offered)


def test_changing_tools_ask_for_approval_and_reads_do_not() -> None:
    asks = {name for name, spec in tools.catalogue().items() if spec.needs_approval}
    github_writes = {"github_create_issue", "github_update_issue", "github_add_comment"}
    assert asks == set(settings.AGENT_APPROVAL_TOOLS) | github_writes
    assert not tools.catalogue()["search_issues"].needs_approval
    assert not tools.catalogue()["get_issue"].needs_approval


def test_valid_call_gives_its_tool() -> None:
    assert validate("get_issue", {"id": "ENG-3"}) is tools.catalogue()["get_issue"]


def test_unknown_tool_is_refused_and_the_available_ones_named() -> None:
    with pytest.raises(InvalidCall, match="Unknown tool 'drop_database'") as caught:
        validate("drop_database", {})
    assert "search_issues" in str(caught.value)


@pytest.mark.parametrize("arguments", [["ENG-3"], "ENG-3", None, 3])
def test_arguments_that_are_not_an_object_are_refused(arguments: object) -> None:
    with pytest.raises(InvalidCall, match="get_issue must be a JSON object"):
        validate("get_issue", arguments)


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("get_issue", {"id": 3}, "id: 3 is not of type 'string'"),
        ("get_issue", {}, "'id' is a required property"),
        ("get_issue", {"id": ""}, "id: '' should be non-empty"),
        ("get_issue", {"id": "ENG-3", "force": True}, "'force' was unexpected"),
        ("search_issues", {"query": "x", "limit": 500}, "limit: 500 is greater"),
        ("update_issue", {"id": "ENG-3"}, "does not have enough properties"),
        ("add_comment", {"id": "ENG-3"}, "'body' is a required property"),
    ],
)
def test_arguments_that_miss_the_schema_are_refused_saying_why(
    tool: str, arguments: dict, says: str
) -> None:
    with pytest.raises(InvalidCall, match=f"Invalid arguments for {tool}") as caught:
        validate(tool, arguments)
    assert says in str(caught.value)


def test_several_schema_errors_are_reported_together() -> None:
    with pytest.raises(InvalidCall) as caught:
        validate("create_issue", {"title": "", "priority": 9})
    assert "priority: 9 is greater than the maximum of 4" in str(caught.value)
    assert "title: '' should be non-empty" in str(caught.value)


@pytest.mark.parametrize(
    "arguments",
    [{"id": "ENG\x003"}, {"id": "ENG-\ud8003"}],
    ids=["nul", "lone-surrogate"],
)
def test_text_no_database_can_store_is_refused(arguments: dict) -> None:
    with pytest.raises(InvalidCall, match="NUL characters or invalid Unicode"):
        validate("get_issue", arguments)


def test_key_with_a_nul_is_refused() -> None:
    with pytest.raises(InvalidCall, match="Invalid arguments for get_issue"):
        validate("get_issue", {"id": "ENG-3", "\x00": "x"})


def test_checked_call_keeps_the_parsed_arguments() -> None:
    call = check_call(call_id="c1", name="get_issue", arguments='{"id": "ENG-3"}')
    assert (call.spec, call.parsed, call.error) == (
        tools.catalogue()["get_issue"],
        {"id": "ENG-3"},
        "",
    )
    assert call.arguments == '{"id": "ENG-3"}'  # as sent, for the model's context


@pytest.mark.parametrize("arguments", ['{"id": "ENG-3"', "{'id': 'ENG-3'}", "nope"])
def test_call_with_bad_json_is_invalid(arguments: str) -> None:
    call = check_call(call_id="c1", name="get_issue", arguments=arguments)
    assert call.spec is None and call.parsed is None
    assert call.error == "The arguments of get_issue are not valid JSON."


def test_call_with_no_arguments_is_checked_as_an_empty_object() -> None:
    call = check_call(call_id="c1", name="get_issue", arguments="")
    assert call.spec is None
    assert "'id' is a required property" in call.error


def test_call_of_an_unknown_tool_is_invalid() -> None:
    call = check_call(call_id="c1", name="rm_rf", arguments="{}")
    assert call.spec is None
    assert call.error.startswith("Unknown tool 'rm_rf'.")


def test_call_whose_json_is_a_list_is_invalid() -> None:
    call = check_call(call_id="c1", name="get_issue", arguments='["ENG-3"]')
    assert call.error == "Arguments of get_issue must be a JSON object."


def test_call_with_a_nul_escaped_in_its_json_is_invalid() -> None:
    call = check_call(call_id="c1", name="get_issue", arguments='{"id": "ENG\\u00003"}')
    assert call.spec is None
    assert "NUL characters" in call.error


def test_call_with_absurdly_nested_json_is_invalid() -> None:
    call = check_call(call_id="c1", name="get_issue", arguments="[" * 100_000)
    assert call.spec is None
    assert call.error == "The arguments of get_issue are not valid JSON."
