"""Model signals, for the rules no single caller can enforce.

A password changes through Django's forms, the admin, a reset link or a shell's
`set_password()` and `save()`; only a save hook sees them all. The receivers only
tell a change from other saves and call the service (chat/services/accounts.py).
"""

from typing import Any

from chat.models import User
from chat.services.accounts import password_changed, password_replaced

# Set on the instance between pre_save and post_save.
_REPLACED = "_agentsite_password_replaced"


def before_user_save(
    sender: type[User],
    instance: User,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **_: Any,
) -> None:
    # A signal, not a view or a form hook: it is the only place that also sees a
    # shell's save(). Saves that leave the password out (last_login at each login)
    # cost nothing; others one read of the stored hash.
    replaced = False
    if not raw and instance.pk is not None:
        if update_fields is None or "password" in update_fields:
            stored = (
                sender._default_manager.filter(pk=instance.pk)
                .values_list("password", flat=True)
                .first()
            )
            replaced = stored is not None and password_replaced(
                user=instance, stored=stored
            )
    setattr(instance, _REPLACED, replaced)


def after_user_save(sender: type[User], instance: User, **_: Any) -> None:
    if getattr(instance, _REPLACED, False):
        setattr(instance, _REPLACED, False)
        password_changed(user=instance)


# Fields whose change may take away a user's say: the only fields the signal reacts
# to when a save names its fields (a login saves `last_login` alone).
_SAY_FIELDS = {"is_active", "is_superuser"}


def on_user_saved(
    sender: type[User],
    instance: User,
    created: bool = False,
    update_fields: frozenset[str] | None = None,
    **_: Any,
) -> None:
    """A deactivation by any route (the admin, a form, `save()` in a shell) drops
    the user's votes; the rule itself lives in the service."""
    if created or (update_fields is not None and not _SAY_FIELDS & set(update_fields)):
        return
    from chat.services import user_saved

    user_saved(instance)
