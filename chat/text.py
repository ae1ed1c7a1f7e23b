"""Rules for text that comes from people and models."""

import unicodedata


def storable(text: str) -> bool:
    """Text every database can store: no NUL, no lone surrogate (invalid UTF-8)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def single_line(text: str) -> bool:
    """Text fit for a name shown on one line (a room's, a mail's subject): no control
    character (C0, DEL, C1: a newline breaks a mail header) and no line or paragraph
    separator."""
    return not any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)


def one_line(text: str) -> str:
    """`text` with every character `single_line` refuses made a space."""
    return "".join(
        " " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char
        for char in text
    )
