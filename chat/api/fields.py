"""Request fields that take JSON as it is sent: a number is not text."""

from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of turning them into text.

    DRF's CharField accepts `2.5` and stores "2.5"; the contract says a value of the
    wrong JSON type is a 400.
    """

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# What a person's text must hold: something besides whitespace (Python's `\S`, which
# the services' `strip()` agrees with).
NOT_BLANK = RegexValidator(r"\S", message="Must contain more than whitespace.")

# A single-line name (chat.text.single_line): something besides whitespace, and no
# control character, line or paragraph separator; said in the schema as a pattern.
_LINE = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
ONE_LINE_PATTERN = rf"^{_LINE}*[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]{_LINE}*$"
ONE_LINE = RegexValidator(
    ONE_LINE_PATTERN, message="One line of text, without control characters."
)


class MessageText(StrictCharField):
    """A chat message: 1 to AGENT_MAX_INPUT_CHARS characters, read when used.

    DRF builds a serializer's fields anew from these arguments each time, so the
    limit follows the setting (tests change it) into validation and the schema.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", settings.AGENT_MAX_INPUT_CHARS)
        super().__init__(
            min_length=1, trim_whitespace=False, validators=[NOT_BLANK], **kwargs
        )


# A slug asked for when creating a room: what `slugify` keeps as it is, apart from
# case, with at least one letter or digit (so it never slugifies to nothing).
SLUG_IN = RegexValidator(
    r"^[-_]*[a-zA-Z0-9][-a-zA-Z0-9_]*$",
    message="A slug has letters, digits, hyphens and underscores (one letter or "
    "digit at least).",
)


# Text that PostgreSQL can store: no NUL character. DRF refuses NUL in every
# CharField; this says so in the schema (a `pattern`), for fields without another.
NO_NUL = RegexValidator(r"^[^\x00]*$", message="Null characters are not allowed.")
