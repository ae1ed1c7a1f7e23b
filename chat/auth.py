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


class _TokenAuth:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        header = (
            dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin1")
        )
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "token" and key.strip():
            # A token replaces the session: scripts have no cookies, and a bad
            # token must not fall back to whatever cookie rides along.
            scope = dict(
                scope, user=await _user_for_token(key.strip()), auth_method="token"
            )
        else:
            scope = dict(scope, auth_method="session")
        return await self.app(scope, receive, send)


def TokenAuthMiddleware(app):
    return AuthMiddlewareStack(_TokenAuth(app))
