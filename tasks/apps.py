from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Agent"

    def ready(self) -> None:
        # The domain previews an approver's edited call through this registry; it
        # never imports the worker package itself.
        from chat.tools import register_previewer

        from .executors import preview_for_domain

        for pack in ("linear", "github"):
            register_previewer(pack, preview_for_domain)
