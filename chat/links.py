"""The signed link of an action's decision page (`decide_url`)."""

from django.conf import settings
from django.core import signing
from django.urls import reverse

from chat.models import Action

_SALT = "chat.decide"


def decide_token(action_id: object) -> str:
    return signing.Signer(salt=_SALT).sign(str(action_id))


def decide_url(action: Action) -> str:
    """The absolute link to the page where an eligible user decides `action`.

    Signed so that ids cannot be walked; the link alone grants nothing: the page
    asks for a login and checks the vote like every other interface.
    """
    path = reverse("decide", kwargs={"token": decide_token(action.pk)})
    return f"{settings.SITE_URL}{path}"


def action_id_from(token: str) -> str | None:
    try:
        return signing.Signer(salt=_SALT).unsign(token)
    except signing.BadSignature:
        return None
