"""Threads sized to the waiting work: one is started when a call finds none idle, and one idle too long stops.

A job spends nearly all its time waiting on the model and on Graph, so a process answers as many customers at once
as it has threads waiting. A fixed small pool made customers queue behind each other (16 model calls at a time on
the defaults, answers a minute late under a burst); a fixed large pool keeps hundreds of threads around for nothing.
The caller bounds the calls it submits (the worker submits one per free slot), so nothing queues here in numbers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class ElasticPool:
    """Runs submitted calls on threads named ``<name>-<n>``; at most ``limit`` threads, idle ones stop after
    ``idle_seconds`` (all but ``keep`` of them)."""

    def __init__(self, name: str, limit: int, *, keep: int = 0, idle_seconds: float = 60.0) -> None:
        self.name = name
        self.limit = limit
        self.keep = min(keep, limit)
        self.idle_seconds = idle_seconds
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # a call was submitted, or the pool is stopping
        self._finished = threading.Condition(lock)  # a call finished
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._threads = 0
        self._idle = 0
        self._busy = 0
        self._started = 0
        self._stopping = False

    @property
    def threads(self) -> int:
        return self._threads

    def warm(self) -> None:
        """Start the ``keep`` threads now, so that the first calls do not wait for a thread to start."""
        with self._work:
            while self._threads < self.keep:
                self._start_thread()

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        with self._work:
            self._calls.append((call, args))
            if self._idle >= len(self._calls) or self._threads >= self.limit:
                self._work.notify()
            else:
                self._start_thread()

    def join(self, timeout: float) -> bool:
        """Stop the threads once the calls submitted so far are done; False if some still run after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._work:
            self._stopping = True
            self._work.notify_all()
            while self._busy or self._calls:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._finished.wait(remaining)
        return True

    def _start_thread(self) -> None:
        self._threads += 1
        self._started += 1
        thread = threading.Thread(target=self._serve, name=f"{self.name}-{self._started}", daemon=True)
        thread.start()

    def _serve(self) -> None:
        while True:
            with self._work:
                while not self._calls:
                    if self._stopping:
                        self._threads -= 1
                        return
                    self._idle += 1
                    woken = self._work.wait(None if self._threads <= self.keep else self.idle_seconds)
                    self._idle -= 1
                    if not woken and not self._calls and self._threads > self.keep:
                        self._threads -= 1
                        return
                call, args = self._calls.popleft()
                self._busy += 1
            try:
                call(*args)
            finally:
                with self._work:
                    self._busy -= 1
                    if self._stopping:
                        self._finished.notify_all()
