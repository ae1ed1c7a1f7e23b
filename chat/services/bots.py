"""A room's bot: who posts what the room's triggers and schedules start
(contract: "Who posts them").

Not the trigger's creator: the creator did not write the text, would be barred from
voting on it by `requester_may_approve: false`, and would spend their own limits on
an outsider's behalf. The bot has no membership (so it is never listed in `members`
or `presence`, never votes, never approves), no usable password and no token.
"""

import secrets

from django.db import IntegrityError, transaction

from chat.models import Room, User

# Usernames are at most 150 characters; the slug is at most 60.
_SUFFIX = "-bot"


def room_bot(room: Room) -> User:
    """The room's bot, made on first use; two callers at once get the same one
    (the one-to-one `bot_room` is unique: the loser of the race reads the winner's)."""
    bot = User.objects.filter(bot_room=room).first()
    if bot is not None:
        return bot
    for attempt in range(5):
        username = f"{room.slug}{_SUFFIX}"
        if attempt:
            # A person already has the name: a distinct one, still readable.
            username = f"{room.slug}{_SUFFIX}-{secrets.token_hex(3)}"
        try:
            with transaction.atomic():
                bot = User(username=username, bot_room=room, is_active=True)
                bot.set_unusable_password()
                bot.save()
                return bot
        except IntegrityError:
            bot = User.objects.filter(bot_room=room).first()
            if bot is not None:
                return bot
    raise RuntimeError(f"could not name a bot for room {room.slug}")
