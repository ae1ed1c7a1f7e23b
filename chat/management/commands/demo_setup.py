"""`manage.py demo_setup`: the users and the room a first look at the app needs.

Idempotent: it creates what is missing and leaves what exists alone (it never
resets a password), so `make run` calls it on every start.
"""

from __future__ import annotations

import uuid
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from chat.errors import AppError
from chat.models import Action, Membership, Room, Trigger, User
from chat.services import policy_create, room_create, trigger_create
from chat.services.rooms import member_audit

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
# on updates, searches approval-free (PROTOCOL.md, "Approval policies"); comments
# are alice's to approve, and carol's too once one waited a minute (PROTOCOL.md,
# "Governance"). Comments are also what a grant suits: one approval, no delay.
POLICY = [
    {
        "tool": "delete_issue",
        "approvals_required": 2,
        "requester_may_approve": False,
    },
    {"tool": "update_issue", "delay": 15},
    {"tool": "search_issues", "mode": "auto"},
    {
        "tool": "add_comment",
        "approvers": ["alice"],
        "escalate_after": 60,
        "escalate_to": ["carol"],
    },
]

# Fired by the Linear stand-in when an issue is created through it (`make run`).
DEMO_TRIGGER = {
    "source": "linear",
    "name": "New Linear issues",
    "events": ["Issue.create"],
    # "Show" comes first: the demo model reads the issue (a read, which runs at once)
    # whatever its title or description says, as it takes the first command it
    # finds; a real model gets the same words.
    "prompt": (
        "Show {{ data.identifier }}: a new Linear issue in team {{ data.team.key }}, "
        "“{{ data.title }}”. Is anything missing from it? Change nothing."
    ),
}


class Command(BaseCommand):
    help = "Create the demo users (password 'demo') and the Demo room if missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="create them even with DEBUG off (known passwords!)",
        )
        parser.add_argument(
            "--linear-standin-webhook",
            action="store_true",
            help="give the Demo room a Linear trigger and register it with the "
            "Linear stand-in at LINEAR_API_URL (webhookCreate); `make run` does",
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
            room = self.ensure_room(users)
        if options["linear_standin_webhook"] and room is not None:
            self.register_demo_trigger(room, users["demo"])
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

    def ensure_room(self, users: dict[str, User]) -> Room | None:
        """The Demo room with its members, created only if the slug is free.

        An existing room is left alone, members included: someone may have
        changed them on purpose.
        """
        if (existing := Room.objects.filter(slug=ROOM_SLUG).first()) is not None:
            self.stdout.write(f"Room {ROOM_NAME!r} (/{ROOM_SLUG}) exists.")
            return existing
        # Makes its creator, demo, the first approver.
        demo, system = users["demo"], Action.Via.SYSTEM
        room = room_create(user=demo, name=ROOM_NAME, slug=ROOM_SLUG, via=system)
        for name, (_superuser, role) in USERS.items():
            with transaction.atomic():
                membership, made = Membership.objects.get_or_create(
                    room=room, user=users[name], defaults={"role": role}
                )
                if made:
                    member_audit(
                        membership, kind="member.added", actor=demo, via=system
                    )
        for rule in POLICY:
            policy_create(room=room, actor=demo, data=rule, via=system)
        self.stdout.write(
            f"Created room {ROOM_NAME!r} (/{ROOM_SLUG}): demo, alice and carol "
            "approve, bob is a member; deletes need two approvals, not the "
            "requester's; updates wait 15 s for a retract; searches run at once; "
            "comments are alice's, escalating to carol after a minute."
        )
        return room

    def register_demo_trigger(self, room: Room, demo: User) -> None:
        """The Demo room's Linear trigger (made once), registered with the Linear
        stand-in, which keeps webhooks in memory: so on every start."""
        trigger = Trigger.objects.filter(room=room, name=DEMO_TRIGGER["name"]).first()
        if trigger is None:
            try:
                trigger = trigger_create(
                    room_slug=room.slug, user=demo, data=DEMO_TRIGGER
                )
            except AppError as error:  # demo no longer approves there, 20 triggers
                self.stdout.write(f"No demo trigger: {error.detail}")
                return
        url = f"{settings.SITE_URL}/hooks/{trigger.pk}"
        query = (
            "mutation($input: WebhookCreateInput!) "
            "{ webhookCreate(input: $input) { success } }"
        )
        variables = {
            "input": {
                "url": url,
                "secret": trigger.secret,
                "resourceTypes": ["Issue"],
                "label": "agentsite demo",
                # The same id for the same URL: a second run while the stand-in
                # still runs adds no second webhook (so no second request per
                # issue); the stand-in answers that it exists.
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, url)),
            }
        }
        try:
            answer = requests.post(
                settings.LINEAR_API_URL,
                json={"query": query, "variables": variables},
                headers={"Authorization": settings.LINEAR_API_KEY or "lin_api_demo"},
                timeout=10,
            )
            answer.raise_for_status()
            errors = answer.json().get("errors")
            if errors and "already exists" not in str(errors):
                raise ValueError(errors)
        except (requests.RequestException, ValueError) as error:
            self.stdout.write(f"Could not register the demo trigger: {error}")
            return
        self.stdout.write(
            f"The Demo room's trigger {DEMO_TRIGGER['name']!r} is registered with "
            "the Linear stand-in: an issue created there posts a request."
        )
