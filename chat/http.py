"""Request types for views behind a login, so their `request.user` is a `User`.

`login_required` and DRF's `IsAuthenticated` guarantee a signed-in user, but the
stubs cannot know that; views annotate their request with these instead of
narrowing `User | AnonymousUser` by hand. Annotations only: at run time the
request objects are Django's and DRF's own.
"""

from typing import TYPE_CHECKING

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework.request import Request

from chat.models import User


class AuthenticatedHttpRequest(HttpRequest):
    user: User


if TYPE_CHECKING:

    class AuthenticatedRequest(Request):
        @property
        def user(self) -> User: ...
        @user.setter
        def user(self, value: User | AnonymousUser) -> None: ...

else:
    AuthenticatedRequest = Request
