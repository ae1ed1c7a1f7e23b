"""Run a coroutine at once, and pay for a task only if it has to wait.

Handing a frame to a socket with room in its buffer completes without suspending.
A task per frame per watcher, the usual way to keep one slow socket from holding up
the others, costs more than the send itself and feeds the garbage collector. Python
3.12's eager tasks do what this does; 3.11 has no such thing.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any] | None:
    """Step `coro` until it first waits: None if it finished (its exceptions raise
    here); otherwise a coroutine that finishes it, to await or run as a task."""
    try:
        blocked_on = coro.send(None)
    except StopIteration:
        return None
    return _finish(coro, blocked_on)


async def _finish(coro: Coroutine[Any, Any, Any], blocked_on: Any) -> Any:
    try:
        if blocked_on is None:
            await asyncio.sleep(0)  # a bare yield: go on at the next turn
        else:
            # What a task does with the future a coroutine waits on: wait for it,
            # then resume the coroutine, which reads its result (or exception).
            blocked_on._asyncio_future_blocking = False
            await asyncio.wait([blocked_on])
    except BaseException:
        coro.close()
        raise
    return await coro
