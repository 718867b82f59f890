"""What one attempt at a message did and how long each step took.

The worker opens an :class:`Attempt` when it starts a claimed message and keeps it in the store when the attempt
ends (``flask whatsapp show`` reads it back); the handler fills in the steps as they happen (the agent and the model's
time, each part Graph accepted). It travels in a context variable, so that a handler subclass needs to know nothing
of it. An attempt whose process dies is never kept: ``show`` says so.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from .store import State


@dataclass
class Attempt:
    number: int  # 1 for the first attempt at a message
    holder: str  # host:pid:thread, as in the claim
    claimed_at: float  # unix seconds
    since_received: float = 0.0  # seconds from the webhook receiving the message to this claim
    state: State = State.CLAIMED  # the message's state as this attempt leaves it (received again on a retry)
    agent: str | None = None  # the agent that answered, when the model was asked
    model_seconds: float | None = None
    sends: int = 0  # reply parts Graph accepted in this attempt
    send_seconds: float = 0.0  # time spent in those Graph calls
    first_sent_at: float | None = None  # unix seconds, when Graph accepted this attempt's first part
    resumed: bool = False  # found parts that an earlier attempt had sent (and did not send them again)
    ended_at: float | None = None
    outcome: str | None = None  # done, retry (transient failure), failed, lost (another worker took the claim)
    reason: str | None = None

    def sent(self, started: float) -> None:
        """A part was accepted by Graph; ``started`` is when its call began (``time.monotonic()``)."""
        now = time.time()
        self.sends += 1
        self.send_seconds = round(self.send_seconds + time.monotonic() - started, 6)
        if self.first_sent_at is None:
            self.first_sent_at = now

    def end(self, outcome: str, reason: str | None = None) -> None:
        self.ended_at = time.time()
        self.outcome = outcome
        self.reason = reason
        self.state = _STATE_AFTER.get(outcome, self.state)

    def timings(self) -> dict[str, float]:
        """The seconds so far, for a log line."""
        seconds = {"since_received": self.since_received}
        if self.model_seconds is not None:
            seconds["model"] = self.model_seconds
        if self.sends:
            seconds["sends"] = self.send_seconds
        seconds["attempt"] = round((self.ended_at or time.time()) - self.claimed_at, 6)
        return seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_STATE_AFTER = {"done": State.DONE, "failed": State.FAILED, "retry": State.RECEIVED}

#: The attempt the current worker thread is running (None outside a job).
current_attempt: ContextVar[Attempt | None] = ContextVar("current_attempt", default=None)
