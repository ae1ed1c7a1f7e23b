"""The room page's policy panel offers only the tools of the room's packs, in a real
browser against a real web process."""

import pytest
from playwright.sync_api import expect

from chat import services
from tests.browser.test_policies import open_as
from tests.plugins.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_policy_panel_offers_only_the_rooms_packs(
    stack: Stack, room, alice, contexts
) -> None:
    services.room_update(room=room, actor=alice, packs=["github"])
    page = open_as(contexts, stack.web(), room, "alice")
    panel = page.locator("#policy")
    panel.locator("summary").click()
    tool = panel.get_by_label("Tool")
    expect(tool).to_contain_text("github_create_issue")
    expect(tool.locator("option", has_text="delete_issue")).to_have_count(0)
