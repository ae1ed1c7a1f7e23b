"""`manage.py demo_setup`: the demo users have addresses, so the approvers of the
Demo room are mailed (printed on the console by `make run`) when an action waits."""

import pytest
from django.core.management import call_command

from chat import services
from chat.models import Delivery, Room, User
from tests.chat.test_api import pending_action


@pytest.fixture
def demo_debug(settings):
    settings.DEBUG = True


def test_every_demo_user_has_an_address(db, demo_debug):
    call_command("demo_setup")
    # People only: a room's bot (made with its first trigger) has no address.
    people = User.objects.filter(bot_room=None)
    addresses = dict(people.values_list("username", "email"))
    assert addresses == {
        "demo": "demo@example.com",
        "alice": "alice@example.com",
        "carol": "carol@example.com",
        "bob": "bob@example.com",
    }


def test_a_demo_user_made_before_addresses_gets_one_and_others_keep_theirs(
    db, demo_debug
):
    User.objects.create_user("alice", password="kept")
    User.objects.create_user("carol", email="carol@work.example")
    call_command("demo_setup")
    alice = User.objects.get(username="alice")
    assert alice.email == "alice@example.com"
    assert alice.check_password("kept")
    assert User.objects.get(username="carol").email == "carol@work.example"


def test_a_delete_asked_by_bob_mails_the_demo_rooms_approvers(
    db, demo_debug, django_capture_on_commit_callbacks
):
    call_command("demo_setup")
    room = Room.objects.get(slug="demo")
    bob = User.objects.get(username="bob")
    with django_capture_on_commit_callbacks(execute=False):
        action = pending_action(room, bob)
        services.action_notify(action, services.action_emit(action))
    mailed = Delivery.objects.filter(channel="email").values_list("to", flat=True)
    assert sorted(mailed) == [
        "alice@example.com",
        "carol@example.com",
        "demo@example.com",
    ]


def test_the_demo_rooms_comments_are_alices_and_escalate_to_carol_after_a_minute(
    db, demo_debug
):
    call_command("demo_setup")
    room = Room.objects.get(slug="demo")
    [rule] = room.policy_rules.filter(tool="add_comment")
    assert (rule.mode, rule.approvers) == ("ask", ["alice"])
    assert (rule.escalate_after, rule.escalate_to) == (60, ["carol"])
    # One approval, the requester's allowed, no delay: a comment may be granted.
    assert (rule.approvals_required, rule.requester_may_approve, rule.delay) == (
        1,
        True,
        0,
    )


def test_make_run_registers_the_demo_trigger_with_the_linear_standin(
    db, demo_debug, settings
):
    import threading

    from chat.models import Trigger
    from standins.linear_server import SUBSET_PATH, LinearStandin, load_schema

    linear = LinearStandin(("127.0.0.1", 0), schema=load_schema(str(SUBSET_PATH)))
    threading.Thread(target=linear.serve_forever, daemon=True).start()
    settings.LINEAR_API_URL = linear.url
    try:
        call_command("demo_setup", "--linear-standin-webhook")
        call_command("demo_setup", "--linear-standin-webhook")  # every start
    finally:
        linear.shutdown()
        linear.server_close()
    (trigger,) = Trigger.objects.all()
    assert trigger.room.slug == "demo" and trigger.source == "linear"
    hooks = list(linear.store.webhooks.values())
    # Once: a second run while the stand-in runs would otherwise post each issue
    # twice.
    assert [h["url"] for h in hooks] == [f"{settings.SITE_URL}/hooks/{trigger.pk}"]
    assert hooks[0]["secret"] == trigger.secret
    # Its prompt reads the new issue first (a read, which runs at once), whatever
    # the issue says: the demo model takes the first command it finds.
    assert trigger.prompt.startswith("Show {{ data.identifier }}")
    assert trigger.events == ["Issue.create"]
