"""A room's webhooks, set by its approvers (contract: "Reaching approvers")."""

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.errors import Forbidden, Invalid, NotFound
from chat.models import Room, User, Webhook
from chat.text import storable
from chat.webhooks import new_secret, secret_check, url_check

from .access import can_decide, id_or_none, room_get_for_member


def _room_for_approver(slug: str, user: User) -> Room:
    room = room_get_for_member(slug=slug, user=user)
    if not can_decide(room=room, user=user):
        raise Forbidden("Only approvers of this room may manage its webhooks.")
    return room


def webhook_list(*, room_slug: str, user: User) -> list[Webhook]:
    return list(Webhook.objects.filter(room=_room_for_approver(room_slug, user)))


def webhook_create(
    *,
    room_slug: str,
    user: User,
    url: object,
    secret: object = None,
    events: object = None,
    format: object = None,
) -> Webhook:
    """Add a webhook; its URL must not reach a private address (see url_check).

    A secret is generated when none is given (`whsec_` + base64 of 32 bytes); it is
    shown in this answer only.
    """
    room = _room_for_approver(room_slug, user)
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise Invalid("url must be a URL of at most 2000 characters.")
    url_check(url)
    hook = Webhook(room=room, url=url, created_by=user)
    if secret is not None:
        hook.secret = _clean_secret(secret)
    if events is not None:
        hook.events = _clean_events(events)
    if format is not None:
        if format not in Webhook.Format.values:
            raise Invalid(f"format must be one of {', '.join(Webhook.Format.values)}.")
        hook.format = str(format)
    hook.save()
    return hook


def _clean_secret(secret: object) -> str:
    # storable: PostgreSQL cannot hold NUL or broken Unicode (a 500 otherwise).
    if (
        not isinstance(secret, str)
        or not 16 <= len(secret) <= 200
        or not storable(secret)
    ):
        raise Invalid("secret must be text of 16 to 200 characters.")
    secret_check(secret)
    return secret


ROTATION_OVERLAP = 24 * 3600
ROTATION_OVERLAP_MAX = 7 * 24 * 3600


def webhook_rotate(
    *,
    room_slug: str,
    user: User,
    webhook_id: str,
    secret: object = None,
    overlap: object = None,
) -> Webhook:
    """Give a webhook a new secret (the one given, or a generated one); the secret it
    replaces keeps signing alongside it for `overlap` seconds (default a day, 0 to
    stop at once), so that a receiver can switch without missing a delivery.

    Only two secrets sign at a time: rotating again during a window drops the oldest.
    """
    room = _room_for_approver(room_slug, user)
    new = new_secret() if secret is None else _clean_secret(secret)
    if overlap is None:
        overlap = ROTATION_OVERLAP
    if (
        isinstance(overlap, bool)
        or not isinstance(overlap, int)
        or not 0 <= overlap <= ROTATION_OVERLAP_MAX
    ):
        raise Invalid(
            "overlap must be a whole number of seconds "
            f"from 0 to {ROTATION_OVERLAP_MAX}."
        )
    with transaction.atomic():
        hook = (
            Webhook.objects.select_for_update()
            .filter(room=room, pk=id_or_none(webhook_id))  # type: ignore[misc]
            .first()
        )
        if hook is None:
            raise NotFound("No such webhook.")
        if overlap:
            hook.previous_secret = hook.secret
            hook.previous_secret_until = timezone.now() + timedelta(seconds=overlap)
        else:
            hook.previous_secret, hook.previous_secret_until = "", None
        hook.secret = new
        hook.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
    return hook


def _clean_events(events: Any) -> list[str]:
    if (
        not isinstance(events, list)
        or not events
        or any(event not in Webhook.EVENTS for event in events)
    ):
        raise Invalid(
            "events must be a non-empty list of " + ", ".join(Webhook.EVENTS) + "."
        )
    return sorted(set(events), key=Webhook.EVENTS.index)


def webhook_delete(*, room_slug: str, user: User, webhook_id: str) -> None:
    room = _room_for_approver(room_slug, user)
    deleted, _ = Webhook.objects.filter(room=room, pk=id_or_none(webhook_id)).delete()  # type: ignore[misc]
    if not deleted:
        raise NotFound("No such webhook.")
