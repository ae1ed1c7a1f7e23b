"""`python -m bench.setup_db SLUG...`: migrate, then the people, rooms and tokens.

Migrating and the setup share one process, so Django starts once. Prints
`{"approver": token, "watcher": token, "room:<slug>": token...}`; the approver
creates every room (so it may decide actions), the watcher is a member of each, and
each concurrent-turns room `c-N` has a member of its own (`bench-c-N`), so K turns
are K people, as in production, not one person's K requests; `bench-burst` is a
member of every fairness room `f-N` (token `burst`).
"""

from __future__ import annotations

import json
import os
import sys

import django


def main(slugs: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from chat.models import Membership
    from chat.services import member_add, room_create, token_issue

    call_command("migrate", interactive=False, verbosity=0)
    users = get_user_model().objects
    approver = users.create_user("bench-approver", password="bench-password")
    users.create_user("bench-watcher", password="bench-password")
    burst = users.create(username="bench-burst")
    tokens = {
        "approver": token_issue(user=approver)[1],
        "watcher": token_issue(user=users.get(username="bench-watcher"))[1],
        "burst": token_issue(user=burst)[1],
    }
    for slug in slugs:
        room = room_create(user=approver, name=slug, slug=slug)
        member_add(
            room=room,
            actor=approver,
            username="bench-watcher",
            role=Membership.Role.MEMBER,
        )
        if slug.startswith("c-") and slug[2:].isdigit():
            # No password: hashing hundreds would take minutes; a token suffices.
            person = users.create(username=f"bench-{slug}")
            member_add(
                room=room,
                actor=approver,
                username=person.username,
                role=Membership.Role.MEMBER,
            )
            tokens[f"room:{slug}"] = token_issue(user=person)[1]
        if slug.startswith("f-"):
            member_add(
                room=room,
                actor=approver,
                username=burst.username,
                role=Membership.Role.MEMBER,
            )
    print(json.dumps(tokens))


if __name__ == "__main__":
    main(sys.argv[1:])
