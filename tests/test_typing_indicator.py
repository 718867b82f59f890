"""The "typing…" renewals of a job: never past its attempt's deadline, and stopped only by the attempt that began them.

An attempt given up at ``worker.job_timeout`` leaves a thread that may never return to stop its renewals; and when
it does return, a later attempt at the same message may be renewing "typing…" of its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from whatsapp.typing_indicator import Typing

RENEWAL = 0.02


class Shown:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._cond = threading.Condition()

    def __call__(self, message_id: str, typing: bool) -> None:
        with self._cond:
            self.counts[message_id] += 1
            self._cond.notify_all()

    def wait_for(self, message_id: str, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.counts[message_id] >= count, 10), dict(self.counts)


def test_typing_is_not_renewed_past_the_attempts_deadline():
    shown = Shown()
    typing = Typing(shown, renewal=RENEWAL)
    typing.keep_up("given-up", until=time.monotonic())  # its deadline is passed before the first renewal
    typing.keep_up("answering")  # due at the same moments
    shown.wait_for("answering", 3)
    typing.stop("answering")
    assert shown.counts["given-up"] == 0


def test_a_late_attempt_stopping_its_typing_leaves_the_next_attempts_running():
    shown = Shown()
    typing = Typing(shown, renewal=RENEWAL)
    stuck = typing.keep_up("m1")
    retry = typing.keep_up("m1")
    typing.stop("m1", stuck)  # the stuck thread returns after the retry began
    before = shown.counts["m1"]
    shown.wait_for("m1", before + 2)
    typing.stop("m1", retry)
