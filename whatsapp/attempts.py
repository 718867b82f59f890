"""What one attempt at a message did and how long each step took.

The worker opens an :class:`Attempt` when it starts a claimed message and keeps its record in the store when the
attempt ends (``flask whatsapp show`` reads it back); the handler fills in the steps as they happen (the agent and the
model's time, each part Graph accepted). It travels in a context variable, so that a handler subclass needs to know
nothing of it. An attempt whose process dies is never kept: ``show`` says so.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import replace

from .store import AttemptRecord, State


class Attempt:
    """An attempt while it runs. What it did so far is :attr:`record`, the frozen :class:`AttemptRecord` the store
    keeps; each step replaces it, so that a record taken at any moment (the deadline's) never changes under its
    reader."""

    def __init__(
        self, number: int, holder: str, claimed_at: float, since_received: float = 0.0, state: State = State.CLAIMED
    ) -> None:
        self.record = AttemptRecord(number, holder, claimed_at, since_received, state)

    def _step(self, **changes: object) -> None:
        self.record = replace(self.record, **changes)

    def found_sent(self) -> None:
        """An earlier attempt had sent a part of this one's reply: it is not sent again."""
        self._step(resumed=True)

    def asked(self, agent: str, model_seconds: float) -> None:
        """The model was asked; ``agent`` answered."""
        self._step(agent=agent, model_seconds=round(model_seconds, 6))

    def answered(self) -> None:
        """The answer is stored: a later attempt sends it without asking the model again."""
        self._step(state=State.ANSWERED)

    def sent(self, started: float) -> None:
        """A part was accepted by Graph; ``started`` is when its call began (``time.monotonic()``)."""
        now = time.time()
        self._step(
            sends=self.record.sends + 1,
            send_seconds=round(self.record.send_seconds + time.monotonic() - started, 6),
            first_sent_at=self.record.first_sent_at or now,
        )

    def end(self, outcome: str, reason: str | None = None) -> None:
        self.record = self.ended(outcome, reason)

    def ended(self, outcome: str, reason: str | None = None) -> AttemptRecord:
        """The record of this attempt ended now with ``outcome``, leaving the attempt itself as it is."""
        state = _STATE_AFTER.get(outcome, self.record.state)
        return replace(self.record, ended_at=time.time(), outcome=outcome, reason=reason, state=state)

    def timings(self) -> dict[str, float]:
        """The seconds so far, for a log line."""
        record = self.record
        seconds = {"since_received": record.since_received}
        if record.model_seconds is not None:
            seconds["model"] = record.model_seconds
        if record.sends:
            seconds["sends"] = record.send_seconds
        seconds["attempt"] = round((record.ended_at or time.time()) - record.claimed_at, 6)
        return seconds


_STATE_AFTER = {"done": State.DONE, "failed": State.FAILED, "retry": State.RECEIVED}

#: The attempt the current worker thread is running (None outside a job).
current_attempt: ContextVar[Attempt | None] = ContextVar("current_attempt", default=None)
