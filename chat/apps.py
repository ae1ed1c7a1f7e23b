from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Rooms and agent requests"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed
        from django.db.models.signals import post_save, pre_save

        from chat.models import User

        from . import checks  # noqa: F401  (registers them)
        from .lockout import on_login_failed
        from .signals import after_user_save, before_user_save, on_user_saved

        user_login_failed.connect(on_login_failed, dispatch_uid="chat.lockout")
        # A password change revokes tokens and closes sockets, by any route.
        pre_save.connect(before_user_save, sender=User, dispatch_uid="chat.password")
        post_save.connect(after_user_save, sender=User, dispatch_uid="chat.password")
        # A deactivation drops the user's votes, by any route.
        post_save.connect(on_user_saved, sender=User, dispatch_uid="chat.user_saved")
