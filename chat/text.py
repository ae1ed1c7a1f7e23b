"""Rules for text that comes from people and models."""


def storable(text: str) -> bool:
    """Text every database can store: no NUL, no lone surrogate (invalid UTF-8)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
