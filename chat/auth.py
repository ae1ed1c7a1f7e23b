"""WebSocket authentication by `Authorization: Token <key>`, beside the session."""

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from chat.models import ApiToken, User

# An ASGI 3 application; this middleware hands it the scope as a dict plus `user`.
ASGIApp = Callable[[Any, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, against hashed, expiring tokens."""

    def authenticate_credentials(self, key: str) -> tuple[User, ApiToken]:
        from chat.services import token_authenticate

        token = token_authenticate(key=key)
        if token is None:
            raise AuthenticationFailed("Invalid, expired or revoked token.")
        return token.user, token


@database_sync_to_async
def _user_for_token(key: str) -> User | AnonymousUser:
    from chat.services import token_authenticate

    token = token_authenticate(key=key)
    if token is None:
        return AnonymousUser()
    user: User = token.user
    return user


class TokenAuthMiddleware:
    """`Authorization: Token` for scripts; otherwise Channels' session stack.

    A token socket skips the cookie and session middleware altogether: it has no use
    for them, and they cost memory per connection and work on every frame sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The stub's return type also admits ASGI 2 apps; Channels' stack is ASGI 3.
        self.session_app = cast(ASGIApp, AuthMiddlewareStack(app))

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        header = (
            dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin1")
        )
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "token" and key.strip():
            # A token replaces the session: a bad token must not fall back to
            # whatever cookie rides along.
            user = await _user_for_token(key.strip())
            scope = dict(scope, user=user, auth_method="token")
            return await self.app(scope, receive, send)
        scope = dict(scope, auth_method="session")
        return await self.session_app(scope, receive, send)
