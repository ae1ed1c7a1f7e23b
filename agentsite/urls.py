from django.contrib import admin
from django.urls import include, path

from chat import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("chat.api.urls")),
    path("", include("chat.urls")),
]

handler404 = "chat.api.errors.json_404_or_page"
