"""System checks run by `migrate` (and `check --database default`)."""

from collections.abc import Iterable
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import DatabaseError, connections


@register(Tags.database)
def database_predates_the_user_model(
    app_configs: Iterable[AppConfig] | None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """A database made before `AUTH_USER_MODEL = "chat.User"` holds its users in
    `auth_user` and records chat's old migrations as applied: migrating it would
    leave it without a user table. Refused, saying what to do."""
    found: list[CheckMessage] = []
    for alias in databases or ():
        try:
            tables = set(connections[alias].introspection.table_names())
        except DatabaseError:
            continue  # not reachable: other checks and migrate itself say so
        if "auth_user" in tables:
            found.append(
                Error(
                    f"The database {alias!r} was made before agentsite had its own "
                    "user model (chat.User): its users are in auth_user, which "
                    "agentsite no longer reads, and chat's migration history was "
                    "replaced.",
                    hint=(
                        "A development database: delete it (rm db.sqlite3, or drop "
                        "and create the PostgreSQL database); `make run` makes a new "
                        "one with the demo users. A database whose data you need: "
                        "see the README's migration note on the custom user model."
                    ),
                    id="chat.E001",
                )
            )
    return found
