from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

LOCAL = {"127.0.0.1", "localhost", "::1"}


def demo_mode(request: HttpRequest) -> dict[str, Any]:
    """Pages show a notice while local stand-ins answer for the paid services."""
    standins = []
    if not settings.OPENAI_API_KEY:
        standins.append("OpenAI")
    if not settings.LINEAR_API_KEY:
        standins.append("Linear")
    if settings.GITHUB_TOKEN and urlsplit(settings.GITHUB_API_URL).hostname in LOCAL:
        standins.append("GitHub")
    names = ", ".join(standins[:-1]) + (" and " if len(standins) > 1 else "")
    return {
        "demo_mode": settings.DEMO_MODE,
        "demo_standins": names + (standins[-1] if standins else ""),
    }
