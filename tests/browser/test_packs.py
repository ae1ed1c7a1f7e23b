"""The tool packs in the room page: each card names its pack, and a pack left out of
a turn is said in the timeline."""

import pytest
from playwright.sync_api import expect

from chat.models import McpListing
from stack.procs import free_port
from tests.browser.conftest import log_in, open_room, screenshot
from tests.browser.test_room_page import ask, the_card
from tests.plugins.stack import mcp_servers, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_cards_name_their_pack_and_a_server_that_is_down_is_said(
    stack, room, contexts, github_standin, mcp_standin
):
    ghost = {"name": "ghost", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    servers = mcp_servers({"name": "notes", "url": mcp_standin.url}, ghost)
    base = stack.web(AGENT_MCP_SERVERS=servers)
    stack.worker(AGENT_MCP_SERVERS=servers)
    wait_for(lambda: McpListing.objects.filter(server="notes").exists(), timeout=20)
    alice = open_room(log_in(contexts(), base, "alice"), base, room.slug)

    ask(alice, "add a note titled Standup: ship the packs")
    card = the_card(alice, "pending", "notes__add_note")
    expect(card.locator(".action__pack")).to_have_text("mcp")
    notice = alice.locator(".msg--notice")
    expect(notice).to_have_count(1)
    expect(notice).to_contain_text("ghost cannot be reached")
    screenshot(alice, "room-packs-mcp-pending.png")
    card.get_by_role("button", name="Approve", exact=True).click()
    the_card(alice, "succeeded", "notes__add_note")

    ask(alice, "close github issue #2")
    card = the_card(alice, "pending", "github_update_issue")
    expect(card.locator(".action__pack")).to_have_text("github")
    expect(card).to_contain_text("Flaky CI on main")
