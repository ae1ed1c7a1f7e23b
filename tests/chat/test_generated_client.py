"""A client generated from /api/schema by openapi-python-client, used as is.

What an integrator does: generate a client from the schema the server serves, import
it, and drive a whole flow (token, room, member, request, approval with edited
arguments, events) through it. No hand edits: a schema the generator misreads (form
bodies, optional fields the server always sends) fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from rest_framework.test import APIClient

from chat.models import Action, Request, Room, User
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures)
    fast_password_hashing,
    forget_throttle_counts,
)

PACKAGE = "agentsite_client"


def _generator() -> str | None:
    # Next to this interpreter first (a venv's bin/), then on PATH.
    here = str(Path(sys.executable).parent)
    return shutil.which(
        "openapi-python-client", path=os.pathsep.join([here, os.environ["PATH"]])
    )


pytestmark = [
    pytest.mark.skipif(
        _generator() is None,
        reason="openapi-python-client is not installed (pip install -e '.[test]')",
    ),
    # The generator runs as a process of its own, for seconds.
    pytest.mark.slow,
]


@pytest.fixture
def client_package(db, tmp_path: Path) -> Iterator[ModuleType]:
    """The client generated from the schema as served, importable."""
    pytest.importorskip("httpx", reason="the generated client needs httpx")
    schema = APIClient().get("/api/schema?format=json")
    assert schema.status_code == 200
    (tmp_path / "schema.json").write_text(json.dumps(schema.json()))
    (tmp_path / "config.yaml").write_text(
        f"package_name_override: {PACKAGE}\npost_hooks: []\n"
    )
    generator = _generator()
    assert generator is not None
    done = subprocess.run(
        [
            generator,
            "generate",
            "--path",
            "schema.json",
            "--config",
            "config.yaml",
            "--meta",
            "none",
            "--output-path",
            PACKAGE,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The generator warns about what it could not read; it must read everything.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture
def wsgi_app(db) -> Iterator[Any]:
    """Django's WSGI handler inside the test's transaction (see test_api_fuzz.py)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _modules(package: ModuleType) -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    ]


def test_every_generated_module_imports(client_package: ModuleType) -> None:
    names = _modules(client_package)
    assert f"{PACKAGE}.api.actions.actions_approve_create" in names
    for name in names:
        importlib.import_module(name)


def test_a_whole_flow_runs_through_the_generated_client(
    client_package: ModuleType, wsgi_app: Any, alice: User, bob: User
) -> None:
    import httpx

    def module(name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.{name}")

    for person in (alice, bob):
        person.set_password(f"{person.username}-pass")
        person.save(update_fields=["password"])
    models = module("models")
    transport = {"transport": httpx.WSGITransport(app=wsgi_app)}
    anonymous = module("client").Client(
        base_url="http://testserver", httpx_args=transport
    )
    token = module("api.auth.auth_token_create").sync(
        client=anonymous,
        body=models.TokenInRequest(username="alice", password="alice-pass"),
    )
    assert isinstance(token, models.TokenOut) and token.token
    client = module("client").AuthenticatedClient(
        base_url="http://testserver",
        token=token.token,
        prefix="Token",
        httpx_args=transport,
    )

    room = module("api.rooms.rooms_create").sync(
        client=client, body=models.RoomInRequest(name="Release crew")
    )
    assert isinstance(room, models.Room), room
    assert room.slug == "release-crew"
    member = module("api.rooms.rooms_members_create").sync(
        room.slug,
        client=client,
        body=models.MemberInRequest(
            username="bob", role=models.MemberInRoleEnum.MEMBER
        ),
    )
    assert isinstance(member, models.Member) and member.username == "bob"

    posted = module("api.rooms.rooms_requests_create").sync(
        room.slug,
        client=client,
        body=models.RequestInRequest(text="Delete ENG-3, please."),
    )
    assert isinstance(posted, models.Request), posted
    assert posted.status == models.RequestStatusEnum.QUEUED
    assert posted.error == ""  # required, so typed as a plain str

    # The agent proposes a call (its worker is not part of this test).
    Request.objects.filter(pk=posted.id).update(
        step=1, status=Request.Status.AWAITING_APPROVAL
    )
    proposed = Action.objects.create(
        request_id=posted.id,
        room=Room.objects.get(slug=room.slug),
        step=0,
        tool="delete_issue",
        tool_call_id="call_1",
        arguments={"id": "ENG-3"},
        requires_approval=True,
        status=Action.Status.PENDING,
    )
    listed = module("api.actions.actions_list").sync(
        client=client, status=models.ActionsListStatus.PENDING, room=room.slug
    )
    assert [a.id for a in listed] == [str(proposed.pk)]

    edited = models.ApproveInRequestArguments.from_dict({"id": "ENG-4"})
    approved = module("api.actions.actions_approve_create").sync(
        str(proposed.pk),
        client=client,
        body=models.ApproveInRequest(arguments=edited, reason="ENG-4 is the one"),
    )
    assert isinstance(approved, models.Action), approved
    assert approved.status == models.ActionStatusEnum.APPROVED
    assert approved.arguments == {"id": "ENG-4"}
    assert approved.decided_by == "alice" and approved.reason == "ENG-4 is the one"

    again = module("api.actions.actions_approve_create").sync_detailed(
        str(proposed.pk), client=client, body=models.ApproveInRequest()
    )
    assert again.status_code == 409
    assert isinstance(again.parsed, models.Error)
    assert "already approved" in again.parsed.detail

    page = module("api.rooms.rooms_events_retrieve").sync(
        room.slug, client=client, after=0
    )
    assert isinstance(page, models.EventPage), page
    kinds = [event.to_dict()["type"] for event in page.events]
    assert kinds[:2] == ["message", "request"] and "action" in kinds
    assert page.last_seq == len(page.events) and page.has_more is False

    detail = module("api.requests.requests_retrieve").sync(posted.id, client=client)
    assert isinstance(detail, models.RequestDetail)
    assert [m.content for m in detail.messages] == ["Delete ENG-3, please."]
