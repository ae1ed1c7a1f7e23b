"""The limits our figures are held against, measured in the same run.

- `python -m bench.limit relay --redis URL --channel NAME`: the plain relay, a tiny
  `websockets` server that subscribes to one Redis pub/sub channel and broadcasts
  every message to all its clients. Nothing can fan a Redis message out to
  WebSocket clients in Python much faster; it prints `relay listening on ws://...`.
- `uvicorn bench.limit:bare_app`: an ASGI app that accepts WebSockets and holds
  them, for uvicorn's own memory per idle connection.
- `publish(...)`: the relay's feed, at a fixed rate, each message `<k>@<ns> ` padded
  to a size, stamped right before it is published (like the model's tokens).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

import redis
import uvloop
from redis import asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def relay(redis_url: str, channel: str) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        pubsub = aioredis.from_url(redis_url).pubsub()
        await pubsub.subscribe(channel)
        print(f"relay listening on ws://127.0.0.1:{port}/", flush=True)
        async for message in pubsub.listen():
            if message["type"] == "message":
                broadcast(clients, message["data"].decode())


async def bare_app(scope: dict, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def publish(redis_url: str, channel: str, count: int, rate: float, size: int) -> float:
    """Publish `count` stamped messages at `rate` per second; return the real rate."""
    client = redis.Redis.from_url(redis_url)
    start = time.monotonic()
    for k in range(1, count + 1):
        delay = start + (k - 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        text = f"{k}@{time.time_ns()} "
        client.publish(channel, text.ljust(size, "x"))
    elapsed = time.monotonic() - start
    client.close()
    return (count - 1) / elapsed if elapsed > 0 else float(count)


def main() -> None:
    parser = argparse.ArgumentParser(description="The plain relay (the limit).")
    parser.add_argument("mode", choices=["relay"])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args()
    uvloop.run(relay(args.redis, args.channel))


if __name__ == "__main__":
    main()
