from typing import Any

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Rooms and agent requests"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_login_failed
        from django.db.models.signals import post_save

        from .lockout import on_login_failed

        user_login_failed.connect(on_login_failed, dispatch_uid="chat.lockout")
        post_save.connect(
            on_user_saved, sender=get_user_model(), dispatch_uid="chat.user_saved"
        )


# Fields whose change may take away a user's say: the only fields the signal reacts
# to when a save names its fields (a login saves `last_login` alone).
_SAY_FIELDS = {"is_active", "is_superuser"}


def on_user_saved(
    sender: Any, instance: Any, created: bool, update_fields: Any, **kwargs: Any
) -> None:
    """A deactivation by any route (the admin, a form, `save()` in a shell) drops
    the user's votes; the rule itself lives in the service."""
    if created or (update_fields is not None and not _SAY_FIELDS & set(update_fields)):
        return
    from chat.services import user_saved

    user_saved(instance)
