"""`manage.py demo_setup`: the users and the room a first look at the app needs.

Idempotent: it creates what is missing and leaves what exists alone (it never
resets a password), so `make run` calls it on every start.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from chat.models import Action, Membership, Room, User
from chat.services import policy_create, room_create
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


class Command(BaseCommand):
    help = "Create the demo users (password 'demo') and the Demo room if missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="create them even with DEBUG off (known passwords!)",
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
