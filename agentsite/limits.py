"""A body-size guard in front of the ASGI app.

Django's ASGI handler spools any size of body to disk before a view runs, and DRF's
JSON parser then reads it whole: a client could make each web process hold gigabytes.
A declared Content-Length over the limit is refused before anything is read; a body
without one (chunked) is counted as it arrives and refused once it passes the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope

ASGIApp = Any

# The AG-UI endpoint refuses a body over 1 MiB with 400, as its contract says.
AGUI_PATH = re.compile(r"^/api/rooms/[^/]+/agui(/connect)?/?$")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0
        refused = False

        async def counting_receive() -> Any:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not refused:
                    refused = True
                    await self._refuse(scope, send)
                    # The app sees a client that went away and answers nothing.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, scope: Scope, send: ASGISendCallable) -> None:
        detail = f"The request body is larger than {self.max_bytes} bytes."
        # The API's and the hooks' answers are all JSON (`{detail}`); a delivery
        # past TRIGGER_MAX_BYTES usually meets this limit first (both 1 MiB).
        if str(scope.get("path", "")).startswith(("/api/", "/hooks/")):
            body, kind = json.dumps({"detail": detail}).encode(), b"application/json"
        else:
            body, kind = detail.encode(), b"text/plain; charset=utf-8"
        status = 400 if AGUI_PATH.match(str(scope.get("path", ""))) else 413
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
                "trailers": False,
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _content_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))  # type: ignore[call-overload]
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
