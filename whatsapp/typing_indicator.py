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
from dataclasses import dataclass

RENEWAL = 20.0  # seconds between two "typing…" for a message still being answered
SENDERS = 32  # Graph calls for typing at once, per process


@dataclass
class _Renewals:
    """One message's renewals, from :meth:`Typing.keep_up` until they are stopped or end."""

    token: int  # what keep_up returned: it stops these renewals, and not a later attempt's at the same message
    entry: int  # n of their live entry in the heap
    until: float  # time.monotonic() at which they end, stopped or not


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
        self._kept: dict[str, _Renewals] = {}  # message id -> its renewals
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
            self._kept[message_id] = _Renewals(token=self._count, entry=self._count, until=until)
            heapq.heappush(self._due, (time.monotonic() + self._renewal, self._count, message_id))
            if self._due[0][1] == self._count:
                self._changed.notify()
            return self._count

    def stop(self, message_id: str, token: int | None = None) -> None:
        """Stop renewing "typing…" for the message; with ``token``, only the renewals that keep_up started."""
        with self._changed:
            kept = self._kept.get(message_id)
            if kept is not None and (token is None or kept.token == token):
                del self._kept[message_id]

    def _renew(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, n, message_id = heapq.heappop(self._due)
                    kept = self._kept.get(message_id)
                    if kept is None or kept.entry != n:
                        continue
                    if now >= kept.until:  # the attempt was given up; its thread may never stop it
                        del self._kept[message_id]
                    else:
                        self._count += 1
                        kept.entry = self._count
                        heapq.heappush(self._due, (now + self._renewal, self._count, message_id))
                        self._senders.submit(self._show, message_id, True)
                self._changed.wait(self._due[0][0] - now if self._due else None)
