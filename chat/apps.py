from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Rooms and agent requests"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from .lockout import on_login_failed

        user_login_failed.connect(on_login_failed, dispatch_uid="chat.lockout")
