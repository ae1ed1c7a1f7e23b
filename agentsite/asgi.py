"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")
# Before Django builds its middleware chain: the instrumentation adds its own.
from agentsite import telemetry

telemetry.setup()
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chat.auth import TokenAuthMiddleware  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

from .handoff import StreamHandoff  # noqa: E402
from .limits import BodySizeLimit  # noqa: E402

application = ProtocolTypeRouter(
    {
        # StreamHandoff: the AG-UI streams are sent from the event loop once their
        # view is done, holding no thread and no database connection (handoff.py).
        "http": StreamHandoff(
            BodySizeLimit(django_asgi_app, settings.REQUEST_MAX_BYTES)
        ),
        # Not Channels' AllowedHostsOriginValidator: chat.connection checks Origin
        # once the user is known, since browsers (cookies) must send the origin of
        # the Host they connected to, and token clients (scripts) may send none.
        # (URLRouter's stub wants its own URLPattern subclass, which path() never
        # returns; see chat/routing.py.)
        "websocket": TokenAuthMiddleware(URLRouter(websocket_urlpatterns)),  # type: ignore[arg-type]
    }
)

# Everything imported so far lives as long as the process (Django, the apps, the
# enqueueing port and the Celery app that the first request would import). A full
# collection that scans them all paused every watcher ~100 ms at 500 watchers (`make
# bench`); frozen, the collector only walks what was made since.
import chat.enqueue  # noqa: E402, F401

gc.collect()
gc.freeze()
