from typing import Any

from django.conf import settings
from django.http import HttpRequest


def demo_mode(request: HttpRequest) -> dict[str, Any]:
    """Pages show a notice while the local OpenAI/Linear stand-ins are in use."""
    return {
        "demo_mode": settings.DEMO_MODE,
        "demo_openai": not settings.OPENAI_API_KEY,
        "demo_linear": not settings.LINEAR_API_KEY,
    }
