"""Long streams that outlive their view, sent from the event loop.

Django's ASGI handler keeps a thread (and that thread's database connection) for
every request until its response is sent, so a streaming response open for hours
would hold both all along. A view that streams long instead hands the body, an async
iterator of bytes, to this middleware on its request's scope and returns at once:
its status and headers (with whatever Django's middleware added) go out as the
response's start, then the middleware sends the body from the event loop after the
handler is done, until the body ends or the client hangs up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable

# The scope key a view puts its body under (a list, so the view can fill it).
HANDOFF = "agentsite.handoff"


class StreamHandoff:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handed: list[AsyncIterator[bytes]] = []
        scope[HANDOFF] = handed
        start: dict[str, Any] = {}

        async def held_send(message: Any) -> None:
            if not handed:
                await send(message)
            elif message["type"] == "http.response.start":
                start.update(message)

        await self.app(scope, receive, held_send)
        if handed and start:
            await self._stream(start, handed[0], receive, send)

    async def _stream(
        self,
        start: dict[str, Any],
        body: AsyncIterator[bytes],
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        headers = [
            (k, v) for k, v in start["headers"] if k.lower() != b"content-length"
        ]
        await send({**start, "headers": headers})  # type: ignore[typeddict-item, arg-type]

        async def pump() -> None:
            async with aclosing(body) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    await send(
                        {"type": "http.response.body", "body": chunk, "more_body": True}
                    )
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def hung_up() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.create_task(pump()), asyncio.create_task(hung_up())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, OSError):
                await task
