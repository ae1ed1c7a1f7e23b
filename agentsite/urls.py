from django.contrib import admin
from django.urls import include, path

from chat import hooks, views
from chat.admin.operations import operations_view

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path(
        "admin/operations/",
        admin.site.admin_view(operations_view),
        name="operations",
    ),
    path("admin/", admin.site.urls),
    # Before Django's own: reset only where mail goes out (chat.views.password_reset).
    path("accounts/password_reset/", views.password_reset, name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("chat.api.urls")),
    # Triggers' deliveries: signed by their senders, no session, not in the API doc.
    path("hooks/<str:trigger_id>", hooks.hook, name="hook"),
    path("", include("chat.urls")),
]

handler404 = "chat.api.errors.json_404_or_page"
