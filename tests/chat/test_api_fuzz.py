"""Fuzzing the REST API from its own OpenAPI document, with schemathesis.

The schema is the one the app serves at /api/schema; every operation in it gets
generated calls (valid and invalid ones), sent through the app's WSGI handler into
the test database, and each answer passes every check schemathesis has, among them:

- never a 5xx (`not_a_server_error`: bad input never produces a 500),
- a status code the operation documents (`status_code_conformance`), with the
  documented content type and headers, and a body that fits the documented schema,
- valid data accepted (`positive_data_acceptance`: a 2xx, or 401/403/404/409/429)
  and invalid data refused (`negative_data_rejection`: a 4xx), so the schema's
  constraints are the server's, no looser and no stricter.

Alice (approver of "triage", which holds a pending action and a finished request)
authenticates every call with her token; a second pass sends no credentials at all.
Path parameters are drawn from ids that exist (hers, and ones of a room she is not
in) as well as from generated values, so the 200 paths are exercised too. Every
example runs in a savepoint that is rolled back, so each one sees the same data (the
pending action stays pending for the next approval).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import DatabaseError, close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chat import services
from chat.models import Action, Membership, PolicyRule, Request, Room, User, Webhook
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures)
    fast_password_hashing,
    forget_throttle_counts,
    pending_action,
)
from tests.plugins.people import token_for

# Every operation of the schema; test_every_operation_is_fuzzed keeps this complete.
OPERATIONS = [
    ("POST", "/api/auth/token"),
    ("GET", "/api/rooms"),
    ("POST", "/api/rooms"),
    ("GET", "/api/rooms/{slug}"),
    ("POST", "/api/rooms/{slug}/members"),
    ("POST", "/api/rooms/{slug}/requests"),
    ("GET", "/api/rooms/{slug}/events"),
    ("GET", "/api/requests/{request_id}"),
    ("POST", "/api/requests/{request_id}/cancel"),
    ("POST", "/api/requests/{request_id}/decide"),
    ("GET", "/api/actions"),
    ("GET", "/api/actions/{action_id}"),
    ("POST", "/api/actions/{action_id}/approve"),
    ("POST", "/api/actions/{action_id}/deny"),
    ("POST", "/api/actions/{action_id}/retract"),
    ("GET", "/api/rooms/{slug}/policies"),
    ("POST", "/api/rooms/{slug}/policies"),
    ("PATCH", "/api/rooms/{slug}/policies/{rule_id}"),
    ("DELETE", "/api/rooms/{slug}/policies/{rule_id}"),
    ("GET", "/api/tools"),
    ("GET", "/api/rooms/{slug}/webhooks"),
    ("POST", "/api/rooms/{slug}/webhooks"),
    ("DELETE", "/api/rooms/{slug}/webhooks/{webhook_id}"),
    ("POST", "/api/rooms/{slug}/webhooks/{webhook_id}/rotate"),
    ("PATCH", "/api/rooms/{slug}"),
    ("DELETE", "/api/auth/token"),
    ("DELETE", "/api/rooms/{slug}/members/{username}"),
    ("GET", "/api/rooms/{slug}/audit"),
    ("GET", "/api/rooms/{slug}/stats"),
    ("GET", "/api/rooms/{slug}/triggers"),
    ("POST", "/api/rooms/{slug}/triggers"),
    ("GET", "/api/rooms/{slug}/triggers/{trigger_id}"),
    ("PATCH", "/api/rooms/{slug}/triggers/{trigger_id}"),
    ("DELETE", "/api/rooms/{slug}/triggers/{trigger_id}"),
    ("GET", "/api/rooms/{slug}/schedules"),
    ("POST", "/api/rooms/{slug}/schedules"),
    ("GET", "/api/rooms/{slug}/schedules/{schedule_id}"),
    ("PATCH", "/api/rooms/{slug}/schedules/{schedule_id}"),
    ("DELETE", "/api/rooms/{slug}/schedules/{schedule_id}"),
]

IDS = [f"{method} {path}" for method, path in OPERATIONS]
# Served as Server-Sent Events for as long as a request runs: a valid input streams
# until a worker ends its request, which this in-process fuzzer has none of. Their
# refusals and streams are proven against the real processes (tests/e2e/test_agui.py).
STREAMS = [
    ("POST", "/api/rooms/{slug}/agui"),
    ("POST", "/api/rooms/{slug}/agui/connect"),
]


def _refused_only(*reasons: str) -> object:
    """A check: valid data gets a 2xx, or a 400 whose detail starts with a reason."""

    def check(
        ctx: object, response: schemathesis.Response, case: schemathesis.Case
    ) -> None:
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if positive and response.status_code == 400:
            detail = response.json()["detail"]
            assert detail.startswith(reasons), f"valid data refused: {detail}"

    return check


# Two refusals of well-formed bodies that the contract makes 400 and no schema can
# foresee: wrong credentials (schemathesis excuses those only for an OAuth
# `tokenUrl`, which a DRF token has none of) and edited arguments that the action's
# tool refuses (each tool has its own parameters). For these operations a 400 to
# valid data must be exactly that refusal; every other check runs as everywhere.
EXCEPTIONS: dict[tuple[str, str], dict[str, list]] = {
    ("POST", "/api/auth/token"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [
            _refused_only("Unable to log in with these credentials.")
        ],
    },
    ("POST", "/api/actions/{action_id}/approve"): {
        "excluded_checks": [positive_data_acceptance],
        # A grant with edited arguments, or on a tool without a target, is 400.
        "additional_checks": [_refused_only("Invalid arguments for ", "grant:")],
    },
    # Named approvers must be users that exist, and no more approvals may be asked
    # than approvers are named: no schema says which names exist.
    ("POST", "/api/rooms/{slug}/policies"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [
            _refused_only(
                "approvers: no user",
                "approvals_required is",
                "arguments: NUL",
                # Which names exist, the time now, and fields that go in pairs.
                "escalate_to: no user",
                "escalate_after",
                "expires_at",
            )
        ],
    },
    # A webhook's host must resolve, and not to a private or loopback address (SSRF):
    # the schema cannot say which names resolve where. Its secret is also checked
    # once trimmed. A refusal of valid data must still name the field.
    ("POST", "/api/rooms/{slug}/webhooks"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [_refused_only("url", "secret")],
    },
    # A given whsec_ secret must be base64 of 24 to 64 bytes: no schema pattern says so.
    ("POST", "/api/rooms/{slug}/webhooks/{webhook_id}/rotate"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [_refused_only("secret")],
    },
    # An audit cursor must be one of this room's records: no schema knows which.
    ("GET", "/api/rooms/{slug}/audit"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [_refused_only("after:")],
    },
    # A prompt must parse as a template, a given secret fit its source (whsec_ +
    # base64 for generic), a filter's keys be paths: no schema pattern says so.
    ("POST", "/api/rooms/{slug}/triggers"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [_refused_only("prompt", "secret", "filter")],
    },
    ("PATCH", "/api/rooms/{slug}/triggers/{trigger_id}"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [_refused_only("prompt", "secret", "filter", "source")],
    },
    ("PATCH", "/api/rooms/{slug}/policies/{rule_id}"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [
            _refused_only(
                "approvers: no user",
                "approvals_required is",
                "arguments: NUL",
                # Which names exist, the time now, and fields that go in pairs.
                "escalate_to: no user",
                "escalate_after",
                "expires_at",
            )
        ],
    },
    # A cron expression, a time zone name and a template have grammars of their
    # own (Debian's cron, the IANA database, placeholders): no schema pattern says
    # which strings parse. A refusal of valid data must name the field.
    ("POST", "/api/rooms/{slug}/schedules"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [_refused_only("cron", "timezone", "prompt", "name")],
    },
    ("PATCH", "/api/rooms/{slug}/schedules/{schedule_id}"): {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [_refused_only("cron", "timezone", "prompt", "name")],
    },
}

# Per operation and pass: 25 operations x 2 passes x 50 calls take minutes on SQLite
# and PostgreSQL alike: `slow`, in `make test` and not in `make test-fast`.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class World:
    token: str
    slugs: list[str]
    requests: list[str]
    actions: list[str]
    rules: list[str]
    webhooks: list[str]
    triggers: list[str]
    schedules: list[str]


@pytest.fixture
def generous_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fuzzer sends hundreds of calls a minute as one user; it tests validation,
    # not throttling (test_api.py does that).
    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        {"anon": "100000/min", "user": "100000/min"},
    )


@pytest.fixture
def wsgi_app(db) -> Iterator[object]:
    """Django's WSGI handler, kept inside the test's transaction.

    A real handler closes "old" connections at the start and end of each request,
    which inside the test's transaction would break it; Django's own test client
    unhooks the same signal handler for the same reason.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app: object, generous_rates: None) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_wsgi("/api/schema?format=json", wsgi_app)


@pytest.fixture
def world(room: Room, alice: User, bob: User, mallory: User) -> World:
    """Ids that exist: alice's room with a pending action and a finished request,
    and mallory's room (alice is not in it) with a pending action of its own."""
    for person in (alice, bob):  # a quick hash (see fast_password_hashing)
        person.set_password(f"{person.username}-pass")
        person.save(update_fields=["password"])
    pending = pending_action(room, bob)
    finished = services.request_start(room=room, user=alice, text="Hello")
    Request.objects.filter(pk=finished.pk).update(status=Request.Status.COMPLETED)
    done = pending_action(room, alice, call="call_2")
    Action.objects.filter(pk=done.pk).update(
        status=Action.Status.DENIED, decided_by=alice, decided_via=Action.Via.API
    )
    elsewhere = services.room_create(user=mallory, name="Secret", slug="secret")
    hidden = pending_action(elsewhere, mallory, call="call_3")
    assert Membership.objects.filter(room=elsewhere, user=alice).count() == 0
    rules = [
        PolicyRule.objects.create(room=room, tool="delete_issue", approvals_required=2),
        PolicyRule.objects.create(room=elsewhere, tool="*", mode="never"),
    ]
    hooks = [
        Webhook.objects.create(room=room, url="https://93.184.215.14/hook"),
        Webhook.objects.create(room=elsewhere, url="https://93.184.215.14/other"),
    ]
    triggers = [
        services.trigger_create(
            room_slug=slug, user=owner, data={"source": "github", "prompt": "x"}
        ).pk
        for slug, owner in ((room.slug, alice), (elsewhere.slug, mallory))
    ]
    schedules = [
        services.schedule_create(room_slug=slug, user=owner, data=SCHEDULE).pk
        for slug, owner in ((room.slug, alice), (elsewhere.slug, mallory))
    ]
    return World(
        token=token_for(alice),
        slugs=[room.slug, elsewhere.slug],
        requests=[str(r) for r in (pending.request_id, finished.pk, hidden.request_id)],
        actions=[str(a) for a in (pending.pk, done.pk, hidden.pk)],
        rules=[str(r.pk) for r in rules],
        webhooks=[str(h.pk) for h in hooks],
        triggers=triggers,
        schedules=schedules,
    )


def _known_path_parameters(world: World, path: str) -> st.SearchStrategy[dict]:
    """Existing ids for the operation's path parameters (none if it has none)."""
    if "{rule_id}" in path:
        return st.fixed_dictionaries(
            {
                "slug": st.sampled_from(world.slugs),
                "rule_id": st.sampled_from(world.rules),
            }
        )
    if "{schedule_id}" in path:
        return st.fixed_dictionaries(
            {
                "slug": st.sampled_from(world.slugs),
                "schedule_id": st.sampled_from(world.schedules),
            }
        )
    if "{webhook_id}" in path:
        return st.fixed_dictionaries(
            {
                "slug": st.sampled_from(world.slugs),
                "webhook_id": st.sampled_from(world.webhooks),
            }
        )
    if "{trigger_id}" in path:
        return st.fixed_dictionaries(
            {
                "slug": st.sampled_from(world.slugs),
                "trigger_id": st.sampled_from(world.triggers),
            }
        )
    if "{slug}" in path:
        return st.fixed_dictionaries({"slug": st.sampled_from(world.slugs)})
    if "{request_id}" in path:
        return st.fixed_dictionaries({"request_id": st.sampled_from(world.requests)})
    if "{action_id}" in path:
        return st.fixed_dictionaries({"action_id": st.sampled_from(world.actions)})
    return st.just({})


SCHEDULE = {"cron": "0 9 * * mon-fri", "prompt": "Standup for {{ $slot }}"}
SCHEDULE_FIELDS = {
    "cron": st.sampled_from(["*/5 * * * *", "0 9 * * 1-5", "0 0 1 jan *", "0 0 L * *"]),
    "prompt": st.sampled_from(["Report {{ $slot }}", "{{ $schedule }}", "{{ x }}"]),
}
SCHEDULE_OPTIONAL = {
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base"]),
    "name": st.sampled_from(["", "Daily"]),
    "enabled": st.booleans(),
}

# Bodies that can succeed, which random text almost never does: real credentials,
# people who exist.
KNOWN_BODIES = {
    ("POST", "/api/auth/token"): st.fixed_dictionaries(
        {
            "username": st.sampled_from(["alice", "bob", "nobody"]),
            "password": st.sampled_from(["alice-pass", "bob-pass", "wrong"]),
        }
    ),
    ("POST", "/api/rooms/{slug}/members"): st.fixed_dictionaries(
        {
            "username": st.sampled_from(["alice", "bob", "mallory", "nobody"]),
            "role": st.sampled_from(Membership.Role.values),
        }
    ),
    ("POST", "/api/rooms/{slug}/triggers"): st.fixed_dictionaries(
        {
            "source": st.sampled_from(["linear", "github", "generic"]),
            "prompt": st.sampled_from(["New: {{ issue.title }}", "{{ $event }}", "x"]),
        },
        optional={
            "events": st.lists(st.sampled_from(["Issue", "issues.opened"])),
            "filter": st.dictionaries(
                st.sampled_from(["action", "data.labels.*.name"]),
                st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
            ),
            "enabled": st.booleans(),
        },
    ),
    # Address literals: no DNS, and both sides of the SSRF guard.
    ("POST", "/api/rooms/{slug}/webhooks"): st.fixed_dictionaries(
        {
            "url": st.sampled_from(
                ["https://93.184.215.14/hook", "http://127.0.0.1/", "http://10.0.0.1/"]
            ),
        },
        optional={
            "events": st.lists(
                st.sampled_from(list(Webhook.EVENTS)), min_size=1, max_size=3
            ),
            "format": st.sampled_from(Webhook.Format.values),
        },
    ),
    ("POST", "/api/rooms/{slug}/schedules"): st.fixed_dictionaries(
        SCHEDULE_FIELDS, optional=SCHEDULE_OPTIONAL
    ),
    ("PATCH", "/api/rooms/{slug}/schedules/{schedule_id}"): st.fixed_dictionaries(
        {}, optional={**SCHEDULE_FIELDS, **SCHEDULE_OPTIONAL}
    ),
}


def _cases(
    schema: schemathesis.BaseSchema, method: str, path: str, world: World
) -> st.SearchStrategy:
    operation = schema[path][method]
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if (method, path) in KNOWN_BODIES:
        known_body = KNOWN_BODIES[method, path].flatmap(
            lambda body: operation.as_strategy(body=body, media_type="application/json")
        )
        strategies += [known_body, known_body]  # half the calls
    generated = st.one_of(strategies)
    known = _known_path_parameters(world, path)
    if "{" not in path:
        return generated

    def with_known_ids(drawn: tuple) -> object:
        case, parameters, generated_ids = drawn
        if not generated_ids:
            case.path_parameters = {**(case.path_parameters or {}), **parameters}
        return case

    # Two calls in three address things that exist, the rest whatever was generated.
    return st.tuples(generated, known, st.integers(0, 2).map(lambda n: n == 0)).map(
        with_known_ids
    )


def _fuzz(
    schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    world: World,
    headers: dict[str, str],
) -> None:
    @FUZZ
    @given(case=_cases(schema, method, path, world))
    def run(case: schemathesis.Case) -> None:
        with transaction.atomic():
            try:
                response = case.call(headers=headers)
                # No `checks=`: every check schemathesis registers, not a chosen few.
                case.validate_response(
                    response, headers=headers, **EXCEPTIONS.get((method, path), {})
                )
            finally:
                transaction.set_rollback(True)

    run()


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=IDS)
def test_fuzz_as_an_approver(
    api_schema: schemathesis.BaseSchema, world: World, method: str, path: str
) -> None:
    _fuzz(api_schema, method, path, world, {"Authorization": f"Token {world.token}"})
    # Nothing a generated call did outlived its savepoint.
    assert Action.objects.get(pk=world.actions[0]).status == Action.Status.PENDING


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=IDS)
def test_fuzz_without_credentials(
    api_schema: schemathesis.BaseSchema, world: World, method: str, path: str
) -> None:
    _fuzz(api_schema, method, path, world, {})


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    served = {
        (result.ok().method.upper(), result.ok().path)
        for result in api_schema.get_all_operations()
    }
    assert served == set(OPERATIONS) | set(STREAMS)


# What a schema-driven fuzzer does not generate ---------------------------------------
# Its strings are valid UTF-8 and its JSON is shallow; a hostile client's need not be.

HOSTILE_BODIES = [
    ("POST", "/api/rooms", '{"name": "ok \\ud800"}'),
    ("POST", "/api/rooms", "[" * 5000 + "]" * 5000),
    ("POST", "/api/rooms", '{"name":' * 5000 + '"x"' + "}" * 5000),
    ("POST", "/api/auth/token", "[" * 5000 + "]" * 5000),
    ("POST", "/api/rooms/{slug}/requests", '{"text": "hi \\ud800"}'),
    ("POST", "/api/rooms/{slug}/requests", "[" * 5000 + "]" * 5000),
    ("POST", "/api/actions/{action}/deny", '{"reason": "no \\ud800"}'),
    ("POST", "/api/rooms/{slug}/triggers", '{"source": "linear", "prompt": "\\ud800"}'),
    (
        "POST",
        "/api/rooms/{slug}/triggers",
        '{"source": "github", "filter": {"\\ud800": 1}}',
    ),
    ("POST", "/api/actions/{action}/approve", '{"arguments": {"id": "\\ud800"}}'),
    ("POST", "/api/actions/{action}/approve", '{"arguments": {"\\ud800": 1}}'),
    (
        "POST",
        "/api/actions/{action}/approve",
        '{"arguments": ' + "[" * 5000 + "]" * 5000 + "}",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    HOSTILE_BODIES,
    ids=[f"{m} {p} {b[:24]}" for m, p, b in HOSTILE_BODIES],
)
def test_hostile_json_bodies_get_a_4xx_and_change_nothing(
    generous_rates: None, world: World, method: str, path: str, body: str
) -> None:
    """Lone surrogates (no database stores them) and JSON nested thousands deep
    (Python's parser gives up with RecursionError) are bad input: a 4xx with a
    `{"detail"}` body, never a 500, and the pending action stays pending."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.token}")
    url = path.format(slug=world.slugs[0], action=world.actions[0])
    with transaction.atomic():  # a 500 may leave PostgreSQL's transaction aborted
        response = client.generic(
            method, url, body.encode("utf-8"), content_type="application/json"
        )
        try:
            pending = Action.objects.get(pk=world.actions[0]).status
        except DatabaseError as exc:
            pending = f"unreadable: {exc}"
        transaction.set_rollback(True)
    raised = response.exc_info[1] if response.exc_info else None  # behind a 500
    problems = []
    if not 400 <= response.status_code < 500:
        problems.append(f"answered {response.status_code}: {raised!r}")
    if pending != Action.Status.PENDING:
        problems.append(f"the pending action is now {pending}")
    assert not problems, problems
    assert isinstance(response.json()["detail"], str)
