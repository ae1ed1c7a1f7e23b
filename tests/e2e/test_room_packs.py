"""A room's packs across processes: the worker offers the model only the room's
packs, and an MCP server the room does not use is neither waited for nor reported
when it is down."""

from collections.abc import Iterator

import pytest

from chat import services, tools
from chat.models import Action, Request, RoomEvent
from stack.procs import free_port
from tests.e2e.test_packs import notes_worker
from tests.plugins.stack import reached

pytestmark = pytest.mark.e2e


@pytest.fixture
def notes(mcp_standin, settings) -> Iterator[dict]:
    server = {"name": "notes", "url": mcp_standin.url, "trust_annotations": True}
    settings.AGENT_MCP_SERVERS = [server]
    tools.forget_listings()
    yield server
    tools.forget_listings()


def test_a_server_outside_the_rooms_packs_is_not_offered_nor_reported_down(
    stack, room, alice, bob, notes, mcp_standin, openai_standin, settings
):
    ghost = {"name": "ghost", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    settings.AGENT_MCP_SERVERS = [notes, ghost]
    services.room_update(room=room, actor=alice, packs=["linear", "mcp:notes"])
    notes_worker(stack, notes, ghost)
    request = services.request_start(
        room=room, user=bob, text="search notes for standup"
    )
    reached(request, Request.Status.COMPLETED, timeout=40)

    assert Action.objects.get(request=request).status == "succeeded"
    assert not RoomEvent.objects.filter(room=room, type="notice").exists()
    offered = openai_standin.control("requests")["requests"][0]["body"]["tools"]
    names = {t["function"]["name"] for t in offered}
    assert "notes__search_notes" in names and "delete_issue" in names
    assert not any(name.startswith(("ghost__", "github_")) for name in names)
