"""The typing indicator for every message a process is answering, from one timer thread and a few senders.

"typing…" is shown when a job starts and renewed while the agent works (WhatsApp hides it after about 25 s). A
thread per job for each of those made two more threads for every message, each started, woken and joined: with
hundreds of jobs at once, a measurable share of the process's CPU (docs/benchmarks.md). Here one timer thread
finds the renewals that are due, and the Graph calls run on a small pool that grows only when they pile up.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

RENEWAL = 20.0  # seconds between two "typing…" for a message still being answered
SENDERS = 32  # Graph calls for typing at once, per process


class Typing:
    """``show(message_id, typing)`` marks a message read and, with ``typing``, shows "typing…"; this decides when,
    and on which thread."""

    def __init__(self, show: Callable[[str, bool], None], renewal: float = RENEWAL) -> None:
        self._show = show
        self._renewal = renewal
        self._pid: int | None = None
        self._starting = threading.Lock()

    def _ready(self) -> None:
        """Threads do not survive a fork: each process makes its own on first use."""
        if self._pid == os.getpid():
            return
        with self._starting:
            if self._pid != os.getpid():
                self._start()

    def _start(self) -> None:
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="typing")
        self._changed = threading.Condition()
        self._due: list[tuple[float, int, str]] = []  # (when, n, message id), a heap
        self._kept: dict[str, int] = {}  # message id -> n of its live entry in the heap
        self._until: dict[str, float] = {}  # message id -> when its renewals end, stopped or not
        self._started: dict[str, int] = {}  # message id -> the token keep_up returned for its renewals
        self._count = 0
        threading.Thread(target=self._renew, name="typing-renewals", daemon=True).start()
        self._pid = os.getpid()

    def show_now(self, message_id: str, typing: bool = True) -> Future[None]:
        """Mark read and show "typing…" on a side thread; wait for the future before sending the reply."""
        self._ready()
        return self._senders.submit(self._show, message_id, typing)

    def keep_up(self, message_id: str, until: float = float("inf")) -> int:
        """Renew "typing…" every ``renewal`` seconds until :meth:`stop`, and never at or after ``until``
        (``time.monotonic()``): the attempt's deadline, after which its thread may be stuck and never stop it.
        Returns the token that stops these renewals, and not a later attempt's at the same message."""
        self._ready()
        with self._changed:
            self._count += 1
            self._kept[message_id] = self._count
            self._until[message_id] = until
            self._started[message_id] = self._count
            heapq.heappush(self._due, (time.monotonic() + self._renewal, self._count, message_id))
            if self._due[0][1] == self._count:
                self._changed.notify()
            return self._count

    def stop(self, message_id: str, token: int | None = None) -> None:
        """Stop renewing "typing…" for the message; with ``token``, only the renewals that keep_up started."""
        with self._changed:
            if token is None or self._started.get(message_id) == token:
                self._kept.pop(message_id, None)
                self._until.pop(message_id, None)
                self._started.pop(message_id, None)

    def _renew(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, n, message_id = heapq.heappop(self._due)
                    if self._kept.get(message_id) != n:
                        continue
                    if now >= self._until[message_id]:  # the attempt was given up; its thread may never stop it
                        del self._kept[message_id], self._until[message_id], self._started[message_id]
                    else:
                        self._count += 1
                        self._kept[message_id] = self._count
                        heapq.heappush(self._due, (now + self._renewal, self._count, message_id))
                        self._senders.submit(self._show, message_id, True)
                self._changed.wait(self._due[0][0] - now if self._due else None)
