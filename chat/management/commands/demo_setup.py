"""`manage.py demo_setup`: the users and the room a first look at the app needs.

Idempotent: it creates what is missing and leaves what exists alone (it never
resets a password), so `make run` calls it on every start.

The Demo room has a Linear trigger (contract: "Triggers and schedules"). With
`--linear-standin` (`make run` passes it when it started the Linear stand-in) it is
registered with the stand-in, as `webhookCreate` registers a webhook with Linear,
on every start (the stand-in forgets it when it stops): an issue created through
the stand-in then comes back as a signed `Issue.create` delivery and a request "via
Linear trigger".
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from chat.models import Membership, Room, Trigger, User
from chat.services import can_decide, policy_create, room_create, trigger_create

PASSWORD = "demo"
# Each demo user's address (a reserved domain, RFC 2606): with the console mail
# backend of `make run` their mails, decision links included, are printed there.
EMAIL_DOMAIN = "example.com"
ROOM_SLUG, ROOM_NAME = "demo", "Demo room"
# username -> (superuser, role in the demo room)
USERS = {
    "demo": (True, Membership.Role.APPROVER),
    "alice": (False, Membership.Role.APPROVER),
    "carol": (False, Membership.Role.APPROVER),
    "bob": (False, Membership.Role.MEMBER),
}
# The demo room's approval policy: four eyes and a quorum on deletes, a grace period
# on updates, searches approval-free (PROTOCOL.md, "Approval policies").
POLICY = [
    {
        "tool": "delete_issue",
        "approvals_required": 2,
        "requester_may_approve": False,
    },
    {"tool": "update_issue", "delay": 15},
    {"tool": "search_issues", "mode": "auto"},
]
# The Demo room's trigger: a new Linear issue asks the agent to look at it. "Show"
# comes first, so the demo model reads the issue (a read: it runs at once) whatever
# its title says; nothing it posts creates an issue, so nothing loops.
TRIGGER = {
    "source": "linear",
    "name": "New Linear issues",
    "events": ["Issue.create"],
    "prompt": "Show {{ data.identifier }}: a new Linear issue in team "
    "{{ data.team.key }}, “{{ data.title }}”. Is anything missing from it?",
}
REGISTER = """mutation DemoWebhook($input: WebhookCreateInput!) {
  webhookCreate(input: $input) { success webhook { id } }
}"""


class Command(BaseCommand):
    help = "Create the demo users (password 'demo') and the Demo room if missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="create them even with DEBUG off (known passwords!)",
        )
        parser.add_argument(
            "--linear-standin",
            action="store_true",
            help="register the Demo room's Linear trigger with the Linear stand-in "
            "at LINEAR_API_URL (`make run` does when it started the stand-in)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            # A superuser with a published password must not reach production.
            self.stdout.write("DEBUG is off: no demo users created (--force to do it)")
            return
        with transaction.atomic():
            users = {
                name: self.ensure_user(name, superuser)
                for name, (superuser, _role) in USERS.items()
            }
            self.ensure_room(users)
            trigger = self.ensure_trigger(users["demo"])
        if trigger is not None and options["linear_standin"]:
            self.register(trigger)
        self.stdout.write(
            "Log in as demo / demo (superuser: the admin is at /admin/); "
            "alice and carol (approvers) and bob (member) use the password demo too."
        )

    def ensure_user(self, username: str, superuser: bool) -> User:
        """The user `username`, created with the demo password if missing."""
        model = get_user_model()
        user = model.objects.filter(username=username).first()
        email = f"{username}@{EMAIL_DOMAIN}"
        if user is not None:
            self.stdout.write(f"User {username} exists (password left as it is).")
            user.user_permissions.add(self.add_room())
            if not user.email:
                # Made before the demo users had addresses: without one, no mail.
                user.email = email
                user.save(update_fields=["email"])
                self.stdout.write(f"Gave {username} the address {email}.")
            return user
        user = model(
            username=username,
            email=email,
            is_staff=superuser,
            is_superuser=superuser,
        )
        user.set_password(PASSWORD)
        user.save()
        # Trying the demo includes making a room of one's own.
        user.user_permissions.add(self.add_room())
        kind = "superuser" if superuser else "user"
        self.stdout.write(
            f"Created {kind} {username} (password {PASSWORD}, mail to {email})."
        )
        return user

    def add_room(self) -> Permission:
        return Permission.objects.get(
            content_type__app_label="chat", codename="add_room"
        )

    def ensure_room(self, users: dict[str, User]) -> None:
        """The Demo room with its members, created only if the slug is free.

        An existing room is left alone, members included: someone may have
        changed them on purpose.
        """
        if Room.objects.filter(slug=ROOM_SLUG).exists():
            self.stdout.write(f"Room {ROOM_NAME!r} (/{ROOM_SLUG}) exists.")
            return
        # Makes its creator, demo, the first approver.
        room = room_create(user=users["demo"], name=ROOM_NAME, slug=ROOM_SLUG)
        for name, (_superuser, role) in USERS.items():
            Membership.objects.get_or_create(
                room=room, user=users[name], defaults={"role": role}
            )
        for rule in POLICY:
            policy_create(room=room, actor=users["demo"], data=rule)
        self.stdout.write(
            f"Created room {ROOM_NAME!r} (/{ROOM_SLUG}): demo, alice and carol "
            "approve, bob is a member; deletes need two approvals, not the "
            "requester's; updates wait 15 s for a retract; searches run at once."
        )

    def ensure_trigger(self, demo: User) -> Trigger | None:
        """The Demo room's Linear trigger: made with the room, or for a room made
        before triggers existed (one with none). Others are left alone."""
        room = Room.objects.filter(slug=ROOM_SLUG).first()
        if room is None:
            return None
        trigger = Trigger.objects.filter(
            room=room, source=Trigger.Source.LINEAR, name=TRIGGER["name"]
        ).first()
        if trigger is not None or Trigger.objects.filter(room=room).exists():
            return trigger
        if not can_decide(room=room, user=demo):
            return None  # someone changed who approves there: theirs to decide
        trigger = trigger_create(room_slug=ROOM_SLUG, user=demo, data=TRIGGER)
        self.stdout.write(
            f"Gave {ROOM_NAME!r} a Linear trigger: a new issue posts a request "
            "there, as the room's bot."
        )
        return trigger

    def register(self, trigger: Trigger) -> None:
        """Register the trigger's URL with the Linear stand-in (only asked for when
        `make run` started it), never with Linear: a real workspace's webhooks are
        made in Linear's settings (README, "Triggers")."""
        url = f"{settings.SITE_URL}/hooks/{trigger.pk}"
        hook = {
            "url": url,
            # The trigger's own secret, so the stand-in signs what it verifies.
            "secret": trigger.secret,
            "resourceTypes": ["Issue"],
            "allPublicTeams": True,
            "label": f"agentsite {ROOM_NAME}",
            # The same id for the same URL: a second run while the stand-in runs
            # adds no second webhook (it answers "already exists").
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, url)),
        }
        body = json.dumps({"query": REGISTER, "variables": {"input": hook}}).encode()
        request = urllib.request.Request(
            settings.LINEAR_API_URL,
            data=body,
            method="POST",
            # The stand-in wants a credential on the wire, like Linear; any will do.
            headers={"Content-Type": "application/json", "Authorization": "demo"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                raw = response.read()
        except urllib.error.HTTPError as refusal:
            raw = refusal.read()
        except OSError as error:
            self.stdout.write(
                f"The Linear stand-in at {settings.LINEAR_API_URL} did not answer "
                f"({error}): the demo trigger is not registered this time."
            )
            return
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {"errors": [raw[:200].decode("utf-8", "replace")]}
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors and "already exists" not in json.dumps(errors):
            self.stdout.write(f"The Linear stand-in refused the webhook: {errors}")
            return
        self.stdout.write(
            "Registered the Demo room's Linear trigger with the Linear stand-in: "
            f"an issue created through it is delivered to {url}."
        )
