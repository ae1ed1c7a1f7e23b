"""The OpenAPI document at /api/schema and the docs page at /api/docs."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from tests.chat.test_api import forget_throttle_counts  # noqa: F401  (autouse)

# The contract's REST table, with the refusals each call documents besides 401/429.
CONTRACT = {
    ("post", "/api/auth/token"): {"200", "400"},
    ("get", "/api/rooms"): {"200"},
    ("post", "/api/rooms"): {"201", "400", "403"},
    ("get", "/api/rooms/{slug}"): {"200", "404"},
    ("post", "/api/rooms/{slug}/members"): {"201", "403", "404", "409"},
    ("post", "/api/rooms/{slug}/requests"): {"202", "400", "404"},
    ("get", "/api/requests/{request_id}"): {"200", "404"},
    ("post", "/api/requests/{request_id}/cancel"): {"200", "404", "409"},
    ("get", "/api/actions"): {"200", "400"},
    ("get", "/api/actions/{action_id}"): {"200", "404"},
    ("post", "/api/actions/{action_id}/approve"): {"200", "400", "403", "404", "409"},
    ("post", "/api/actions/{action_id}/deny"): {"200", "403", "404", "409"},
    ("get", "/api/rooms/{slug}/events"): {"200", "400", "404"},
    # Approval policies
    ("get", "/api/rooms/{slug}/policies"): {"200", "404"},
    ("post", "/api/rooms/{slug}/policies"): {"201", "400", "403", "404"},
    ("patch", "/api/rooms/{slug}/policies/{rule_id}"): {"200", "400", "403", "404"},
    ("delete", "/api/rooms/{slug}/policies/{rule_id}"): {"204", "403", "404"},
    ("get", "/api/tools"): {"200", "400", "404"},
    # Reaching approvers outside the room
    ("get", "/api/rooms/{slug}/webhooks"): {"200", "403", "404"},
    ("post", "/api/rooms/{slug}/webhooks"): {"201", "400", "403", "404"},
    ("delete", "/api/rooms/{slug}/webhooks/{webhook_id}"): {"204", "403", "404"},
    ("post", "/api/rooms/{slug}/webhooks/{webhook_id}/rotate"): {
        "200",
        "400",
        "403",
        "404",
    },
    # Triggers and schedules
    ("get", "/api/rooms/{slug}/triggers"): {"200", "403", "404"},
    ("post", "/api/rooms/{slug}/triggers"): {"201", "400", "403", "404", "409"},
    ("get", "/api/rooms/{slug}/triggers/{trigger_id}"): {"200", "403", "404"},
    ("patch", "/api/rooms/{slug}/triggers/{trigger_id}"): {"200", "400", "403", "404"},
    ("delete", "/api/rooms/{slug}/triggers/{trigger_id}"): {"204", "403", "404"},
    ("get", "/api/rooms/{slug}/schedules"): {"200", "403", "404"},
    ("post", "/api/rooms/{slug}/schedules"): {"201", "400", "403", "404", "409"},
    ("get", "/api/rooms/{slug}/schedules/{schedule_id}"): {"200", "403", "404"},
    ("patch", "/api/rooms/{slug}/schedules/{schedule_id}"): {
        "200",
        "400",
        "403",
        "404",
    },
    ("delete", "/api/rooms/{slug}/schedules/{schedule_id}"): {"204", "403", "404"},
    ("post", "/api/actions/{action_id}/retract"): {"200", "400", "403", "404", "409"},
    ("delete", "/api/rooms/{slug}/members/{username}"): {"204", "403", "404", "409"},
    # agentsite's extension: the Linear teams a room's agent may touch.
    ("patch", "/api/rooms/{slug}"): {"200", "400", "403", "404"},
    # Governance
    ("post", "/api/requests/{request_id}/decide"): {
        "200",
        "400",
        "403",
        "404",
        "409",
    },
    ("get", "/api/rooms/{slug}/audit"): {"200", "400", "403", "404"},
    ("get", "/api/rooms/{slug}/stats"): {"200", "400", "403", "404"},
    # AG-UI endpoint
    ("post", "/api/rooms/{slug}/agui"): {"200", "400", "403", "404", "409"},
    ("post", "/api/rooms/{slug}/agui/connect"): {"200", "400", "403", "404", "409"},
}


@pytest.fixture
def schema(db) -> dict:
    response = APIClient().get("/api/schema?format=json")
    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    return response.json()


def _operation(schema: dict, method: str, path: str) -> dict:
    assert path in schema["paths"], f"{path} is missing"
    assert method in schema["paths"][path], f"{method.upper()} {path} is missing"
    return schema["paths"][path][method]


def test_schema_is_a_valid_openapi_3_document(schema: dict) -> None:
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # the OpenAPI 3.x JSON Schema that drf-spectacular ships


def test_schema_validation_catches_a_broken_document(schema: dict) -> None:
    # The validator above must be able to fail: an operation without responses.
    broken = {**schema, "paths": {"/api/rooms": {"get": {"operationId": "x"}}}}
    with pytest.raises(jsonschema.ValidationError):
        validate_schema(broken)


def test_schema_is_served_as_json_by_accept_header(db) -> None:
    response = APIClient().get(
        "/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


@pytest.mark.parametrize(("method", "path"), sorted(CONTRACT))
def test_schema_has_every_contract_call(schema: dict, method: str, path: str) -> None:
    operation = _operation(schema, method, path)
    documented = set(operation["responses"])
    assert CONTRACT[(method, path)] <= documented
    assert "429" in documented
    if path != "/api/auth/token":
        assert "401" in documented


def test_schema_has_nothing_beyond_the_contract_paths(schema: dict) -> None:
    assert set(schema["paths"]) == {path for _, path in CONTRACT}


@pytest.mark.parametrize(
    "path", ["/api/rooms/{slug}/agui", "/api/rooms/{slug}/agui/connect"]
)
def test_the_agui_paths_take_json_and_answer_an_event_stream(
    schema: dict, path: str
) -> None:
    operation = _operation(schema, "post", path)
    assert list(operation["requestBody"]["content"]) == ["application/json"]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    refusal = operation["responses"]["409"]["content"]["application/json"]["schema"]
    assert refusal == {"$ref": "#/components/schemas/Error"}


def test_the_audit_answers_json_lines_or_csv(schema: dict) -> None:
    operation = _operation(schema, "get", "/api/rooms/{slug}/audit")
    answers = operation["responses"]["200"]["content"]
    assert list(answers) == ["application/x-ndjson", "text/csv"]
    assert "kind" in answers["application/x-ndjson"]["schema"]["properties"]
    formats = [p for p in operation["parameters"] if p["name"] == "format"]
    assert formats[0]["schema"]["enum"] == ["jsonl", "csv"]


def test_error_answers_are_documented_as_detail_objects(schema: dict) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["detail"]["type"] == "string"
    assert error["required"] == ["detail"]
    approve = _operation(schema, "post", "/api/actions/{action_id}/approve")
    body = approve["responses"]["409"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Error"}


def test_schema_documents_both_ways_to_authenticate(schema: dict) -> None:
    schemes = schema["components"]["securitySchemes"]
    kinds = {
        (scheme["type"], scheme["in"], scheme["name"]) for scheme in schemes.values()
    }
    assert ("apiKey", "header", "Authorization") in kinds
    assert ("apiKey", "cookie", "sessionid") in kinds
    rooms = _operation(schema, "get", "/api/rooms")
    assert {name for option in rooms["security"] for name in option} == set(schemes)
    token = _operation(schema, "post", "/api/auth/token")
    assert token["security"] == [{}]  # no credentials needed to get a token


def test_schema_describes_the_request_bodies(schema: dict) -> None:
    def body_schema(method: str, path: str) -> dict:
        content = _operation(schema, method, path)["requestBody"]["content"]
        ref = content["application/json"]["schema"]["$ref"]
        return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]

    assert set(body_schema("post", "/api/auth/token")["required"]) == {
        "username",
        "password",
    }
    assert body_schema("post", "/api/rooms/{slug}/requests")["required"] == ["text"]
    approve = body_schema("post", "/api/actions/{action_id}/approve")
    assert {"arguments", "reason"} <= set(approve["properties"])


def test_schema_documents_the_list_filters(schema: dict) -> None:
    parameters = {
        p["name"]: p for p in _operation(schema, "get", "/api/actions")["parameters"]
    }
    assert {"status", "room"} <= set(parameters)
    assert "pending" in parameters["status"]["schema"]["enum"]
    events = _operation(schema, "get", "/api/rooms/{slug}/events")
    assert "after" in {p["name"] for p in events["parameters"]}


# The docs page ----------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append(value)


def test_docs_page_loads_assets_only_from_this_host(db) -> None:
    response = APIClient().get("/api/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    parser = _Assets()
    parser.feed(html)
    assert any(url.endswith(".js") for url in parser.urls)
    assert any(url.endswith(".css") for url in parser.urls)
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{url} is on another host"
    # No absolute URL anywhere in the page, scripts included (for example a CDN).
    assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", html)


def test_docs_page_assets_are_shipped_as_static_files(db) -> None:
    parser = _Assets()
    parser.feed(APIClient().get("/api/docs").content.decode())
    static = [url for url in parser.urls if url.startswith("/static/")]
    assert len(static) >= 3
    for url in static:
        # The page names the hashed copy collectstatic made; its source has no hash.
        name = re.sub(r"\.[0-9a-f]{12}(\.[^./]+)$", r"\1", url.removeprefix("/static/"))
        path = finders.find(name)
        assert path, f"{url} is not shipped"
        if url.endswith(".css"):  # stylesheets could pull fonts from elsewhere
            css = Path(path).read_text()
            assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", css)


def test_docs_page_reads_the_schema_from_this_host(db) -> None:
    # Swagger UI's set-up is a script of its own (the CSP allows no inline one).
    html = APIClient().get("/api/docs").content.decode()
    assert '<script src="/api/docs?script="></script>' in html
    script = APIClient().get("/api/docs?script=").content.decode()
    assert '"/api/schema"' in script, script
