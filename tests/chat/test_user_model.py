"""The custom user model (`AUTH_USER_MODEL = "chat.User"`), and the refusal to
migrate a database made before it."""

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from chat.checks import database_predates_the_user_model
from chat.models import User


def test_the_user_model_is_ours():
    assert get_user_model() is User
    assert User._meta.db_table == "chat_user"


@pytest.mark.django_db
def test_a_database_made_before_it_is_refused_with_what_to_do():
    assert database_predates_the_user_model(None, databases=["default"]) == []
    with connection.cursor() as cursor:
        # What an old database still has: Django's own user table.
        cursor.execute("CREATE TABLE auth_user (id integer PRIMARY KEY)")
    (found,) = database_predates_the_user_model(None, databases=["default"])
    assert isinstance(found, Error) and found.id == "chat.E001"
    assert "delete it" in (found.hint or "")
    # `migrate` (what `make run` starts with) runs the database checks: it stops.
    with pytest.raises(SystemCheckError, match="chat.E001"):
        call_command("check", "--database", "default")


@pytest.mark.django_db
def test_the_admin_manages_users_of_the_model(admin_client):
    bob = User.objects.create_user("bob-admin", password="pw-123456789")
    page = admin_client.get(f"/admin/chat/user/{bob.pk}/change/")
    assert page.status_code == 200
    assert b"bob-admin" in page.content
    assert admin_client.get("/admin/auth/user/").status_code == 404
