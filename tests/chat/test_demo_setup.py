"""`manage.py demo_setup`: the demo users have addresses, so the approvers of the
Demo room are mailed (printed on the console by `make run`) when an action waits; the
Demo room has a Linear trigger."""

import pytest
from django.core.management import call_command

from chat import services
from chat.models import Delivery, Room, Trigger, User
from tests.chat.test_api import pending_action


@pytest.fixture
def demo_debug(settings):
    settings.DEBUG = True


def test_every_demo_user_has_an_address(db, demo_debug):
    call_command("demo_setup")
    # People only: the Demo room's bot (made with its trigger) has no address.
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


def test_the_demo_room_gets_one_linear_trigger_posted_by_its_bot(db, demo_debug):
    call_command("demo_setup")
    call_command("demo_setup")
    room = Room.objects.get(slug="demo")
    [trigger] = Trigger.objects.filter(room=room)
    assert (trigger.source, trigger.events) == ("linear", ["Issue.create"])
    assert trigger.enabled and trigger.created_by.username == "demo"
    assert services.room_bot(room).username == "demo-bot"
    # Its prompt reads the new issue (a read, which runs at once), whatever the
    # issue's title says: the demo model takes the first command it finds.
    assert trigger.prompt.startswith("Show {{ data.identifier }}")


def test_a_demo_room_whose_triggers_were_changed_is_left_alone(db, demo_debug):
    call_command("demo_setup")
    room = Room.objects.get(slug="demo")
    Trigger.objects.filter(room=room).update(name="Mine now", enabled=False)
    call_command("demo_setup")
    assert list(Trigger.objects.values_list("name", "enabled")) == [("Mine now", False)]
