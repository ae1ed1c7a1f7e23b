"""API tokens: issued at login, looked up by digest, expired or revoked."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from chat.errors import Forbidden
from chat.models import ApiToken, User


def _digest(key: str) -> str:
    # The key is 256 random bits: a fast hash suffices (no dictionary to guess).
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def token_issue(*, user: User) -> tuple[ApiToken, str]:
    """A new token for `user` and its key, which is shown this once only."""
    if user.is_bot:
        raise Forbidden("A room's bot cannot hold a token.")
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        digest=_digest(key),
        prefix=key[:8],
        expires_at=timezone.now() + timedelta(days=settings.API_TOKEN_DAYS),
    )
    return token, key


def token_authenticate(*, key: str) -> ApiToken | None:
    """The live token with this key (its user active), else None."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=_digest(key), expires_at__gt=timezone.now())
        .first()
    )
    if token is None or not token.user.is_active or token.user.is_bot:
        return None
    return token


def token_revoke(*, user: User, token: ApiToken | None) -> int:
    """Revoke `token`, or every token of `user` when None; how many went."""
    tokens = ApiToken.objects.filter(user=user)
    if token is not None:
        tokens = tokens.filter(pk=token.pk)
    deleted, _ = tokens.delete()
    return deleted
