"""Running ``async def`` tools, instructions and context builders from the runtime's plain threads.

Every awaitable goes to one event loop on a daemon thread, shared by all runs of the process, so that an async
client an agent module keeps at module level (an ``httpx.AsyncClient``, say) always meets the loop it is bound to.
The loop starts on first use, and again in a forked child (gunicorn forks after importing the app).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def resolve(value: T | Awaitable[T]) -> T:
    """``value`` itself, or the result of awaiting it on the runtime's loop."""
    if not inspect.isawaitable(value):
        return value
    loop = _running_loop()
    if threading.current_thread() is _thread:
        raise RuntimeError("an async tool waited for another awaitable synchronously; await it instead")
    return asyncio.run_coroutine_threadsafe(_await(value), loop).result()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread, _pid
    with _lock:
        if _loop is None or _pid != os.getpid():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="agents-asyncio", daemon=True)
            _thread.start()
            _pid = os.getpid()
        return _loop
