"""The worker process's stream engine: one event loop that carries every model stream.

A Celery task claims a step and builds its context (database work, on its own
thread), then hands the model call to this loop and returns: its slot is free while
the answer streams. Hundreds of streams then cost one thread that wakes when bytes
arrive, not a thread each queueing for the GIL for every chunk. What a stream must
not do on the loop (the database: recording the answer, releasing the lease) runs on
a few threads beside it (`in_thread`).

The loop lives in a daemon thread started on first use, in each process (after a
fork, in the child). Coroutines run in the context of the code that handed them
over, so logs keep the turn's ids and spans their trace.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import uvloop
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class Engine:
    """An asyncio loop in a thread of this process, and threads for blocking work."""

    def __init__(self) -> None:
        # uvloop (uvicorn's loop, installed with it): a wake-up per chunk read
        # costs a fraction of asyncio's own loop.
        self.loop = uvloop.new_event_loop()
        self.pid = os.getpid()
        self._threads = ThreadPoolExecutor(
            max_workers=settings.AGENT_ENGINE_THREADS, thread_name_prefix="engine-db"
        )
        self._room = threading.BoundedSemaphore(settings.AGENT_STREAMS_PER_PROCESS)
        self._idle = threading.Condition()
        self.in_flight = 0
        self._thread = threading.Thread(
            target=self._run, name="stream-engine", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Running[T]:
        """Run `coro` on the loop in a copy of the caller's context.

        Waits (the caller's thread, not the loop) while the process already carries
        AGENT_STREAMS_PER_PROCESS streams: that many is what one process is sized for.
        """
        self._room.acquire()
        with self._idle:
            self.in_flight += 1
        running: Running[T] = Running(self.loop)
        context = contextvars.copy_context()

        def start() -> None:
            task = self.loop.create_task(coro, context=context)
            running.started(task)
            task.add_done_callback(done)

        def done(task: asyncio.Task[T]) -> None:
            self._room.release()
            with self._idle:
                self.in_flight -= 1
                self._idle.notify_all()
            running.settle(task)

        self.loop.call_soon_threadsafe(start)
        return running

    async def in_thread(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run blocking `fn` (the database) off the loop, in the caller's context."""
        context = contextvars.copy_context()

        def call() -> T:
            try:
                return context.run(fn, *args, **kwargs)
            finally:
                # Back to the pool: a stream's thread holds no connection idle.
                connection.close()

        return await self.loop.run_in_executor(self._threads, call)

    def drain(self, timeout: float) -> bool:
        """Wait until no stream is in flight (a warm shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self.in_flight == 0, timeout)


class Running(Future[T]):
    """A stream handed to the loop: a future any thread may wait on or cancel."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._task: asyncio.Task[T] | None = None
        self._stop = False

    def started(self, task: asyncio.Task[T]) -> None:
        self._task = task
        if self._stop:
            task.cancel()

    def stop(self) -> None:
        """Cancel the coroutine (from any thread): its `await` raises at once."""
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self._stop = True
        if self._task is not None:
            self._task.cancel()

    def settle(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self.cancel()
        elif (exc := task.exception()) is not None:
            self.set_exception(exc)
        else:
            self.set_result(task.result())


_engine: Engine | None = None
_engine_lock = threading.Lock()


def engine() -> Engine:
    """The process's engine, started on first use (after a fork, in the child)."""
    global _engine
    with _engine_lock:
        if _engine is None or _engine.pid != os.getpid():
            _engine = Engine()
        return _engine


def drain(timeout: float) -> bool:
    """Wait until this process's engine, if it started, carries no stream."""
    running = _engine
    return running is None or running.pid != os.getpid() or running.drain(timeout)
