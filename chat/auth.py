"""WebSocket authentication by `Authorization: Token <key>`, beside the session."""

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _user_for_token(key: str):
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware:
    """`Authorization: Token` for scripts; otherwise Channels' session stack.

    A token socket skips the cookie and session middleware altogether: it has no use
    for them, and they cost memory per connection and work on every frame sent.
    """

    def __init__(self, app) -> None:
        self.app = app
        self.session_app = AuthMiddlewareStack(app)

    async def __call__(self, scope, receive, send):
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
