"""The store interface: the durable inbox, the reply log and conversation history.

The store is the single source of truth for the life of a message: ``received`` (recorded, keyed by its WhatsApp
message id, so a duplicate delivery stops here) -> ``claimed`` (one worker holds a lease on it; a customer has at most
one claimed message) -> ``answered`` (the answer is stored and its parts are being sent, each recorded with the wamid
Graph returned) -> ``done``; or ``failed`` with the reason.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from ..privacy import is_tag, tag


class State(StrEnum):
    """Where a message is in its life. A ``str`` enum, as rq's ``JobStatus``: stores keep, and logs and JSON show,
    these very strings."""

    RECEIVED = "received"
    CLAIMED = "claimed"
    ANSWERED = "answered"
    DONE = "done"
    FAILED = "failed"


#: A message in these states is still to be answered (or its answer still to be sent): never pruned, never expired.
OPEN_STATES = (State.RECEIVED, State.CLAIMED, State.ANSWERED)
#: The states :meth:`Store.finish` ends a message in; kept until retention prunes it.
FINISHED_STATES = (State.DONE, State.FAILED)

#: Conversation turns kept per sender, in every store; the agent trims further to its token budget.
HISTORY_KEEP = 400

#: A conversation nobody continued for this long (seconds) is forgotten, history and session, in every store.
HISTORY_TTL = 30 * 86400.0

#: How far a reply part got, as Meta's status webhooks report it. Statuses can arrive out of order (a ``read`` before
#: its ``delivered``), so a part keeps the furthest one; ``failed`` is final whatever came before.
DELIVERY_RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}


def sent_at(timestamp: int, received_at: float) -> float:
    """When a message counts as sent for the rate limit: Meta's timestamp, but never later than its arrival (a
    timestamp in the future cannot move a message out of the window) and the arrival when Meta's is missing (0)."""
    return min(timestamp, received_at) if timestamp > 0 else received_at


@dataclass(frozen=True)
class InboxEntry:
    """A message as the webhook records it."""

    id: str
    sender: str
    timestamp: int
    payload: dict[str, Any]  # {"message": raw message dict, "value": trimmed change value}
    received_at: float  # unix seconds, when the webhook took it


@dataclass(frozen=True)
class Job(InboxEntry):
    """A claimed message: the holder may work on it until its lease ends."""

    state: State
    holder: str
    attempts: int  # including this one
    answer: str | None
    reason: str | None  # why the previous attempt failed, if it did

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """The job a store's row of a claimed message describes (see :func:`_progress`)."""
        return cls(**_progress(row))


@dataclass(frozen=True)
class StoredMessage(InboxEntry):
    """A message as the store keeps it, in any state: what ``get()`` returns, for replay and inspection."""

    state: State
    holder: str | None  # the claim's holder (its lease may have run out); None once released or finished
    attempts: int  # attempts begun (a refunded one does not count)
    answer: str | None  # once answered: the agent's answer, which a later attempt sends without asking again
    reason: str | None  # why the last attempt failed, or why the message did
    seq: int  # arrival order, the tie-break of equal Meta timestamps
    lease_until: float  # unix seconds; 0 when nobody holds it
    not_before: float  # unix seconds; claimable again from then on after a transient failure
    updated_at: float  # unix seconds of the last change (for a finished message: when it finished)
    replies: tuple[Reply, ...]  # every planned part, by slot then part

    @classmethod
    def from_row(cls, row: Mapping[str, Any], replies: Iterable[Reply]) -> StoredMessage:
        """The message a store's row describes, with its reply log."""
        return cls(
            **_progress(row),
            seq=int(row["seq"]),
            lease_until=float(row["lease_until"]),
            not_before=float(row["not_before"]),
            updated_at=float(row["updated_at"]),
            replies=tuple(sorted(replies, key=lambda reply: (reply.slot, reply.part))),
        )


def _progress(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a :class:`Job` and a :class:`StoredMessage` share, from a store's row of the message.

    SQLite's columns and Redis's hash fields have the same names (``ts`` is Meta's timestamp); Redis gives them as
    text, hence the conversions, and leaves out what is unset (``holder``, ``answer``, ``reason``).
    """
    return {
        "id": row["id"],
        "sender": row["sender"],
        "timestamp": int(row["ts"]),
        "payload": json.loads(row["payload"]),
        "received_at": float(row["received_at"]),
        "state": State(row["state"]),
        "holder": row.get("holder"),
        "attempts": int(row["attempts"]),
        "answer": row.get("answer"),
        "reason": row.get("reason"),
    }


@dataclass(frozen=True)
class Reply:
    """One part of one reply to a message, planned before it is sent."""

    message_id: str
    slot: int  # the n-th reply of the job (acknowledgement, answer, apology...)
    part: int
    recipient: str
    reply_to: str | None
    body: str  # a text part's text, or what a person reads of a rich reply (buttons, an image...)
    wamid: str | None  # set once Graph accepted the part
    message: dict[str, Any] | None = None  # a rich reply's Graph message object; None for a text part

    def payload(self) -> dict[str, Any]:
        """The message object to send: the rich reply as planned, or the text part."""
        if self.message is not None:
            return self.message
        return {"type": "text", "text": {"preview_url": False, "body": self.body}}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Reply:
        """The part a store's row describes: ``message_id``, ``slot``, ``part``, ``recipient``, ``reply_to``,
        ``body``, ``wamid`` (None or absent until sent) and ``message``, a rich reply's message object, or its JSON
        text as SQLite keeps it (None or absent for a text part)."""
        message = row.get("message") or None
        return cls(
            message_id=row["message_id"],
            slot=int(row["slot"]),
            part=int(row["part"]),
            recipient=row["recipient"],
            reply_to=row["reply_to"],
            body=row["body"],
            wamid=row.get("wamid"),
            message=json.loads(message) if isinstance(message, str) else message,
        )


@dataclass(frozen=True)
class Part:
    """A rich reply part to plan: what a person reads of it, and the Graph message object (``{"type": ...}``)."""

    body: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Stats:
    """How many messages are in each state, and how long the oldest open one has waited: for /healthz, /metrics
    and ``doctor``."""

    counts: Mapping[State, int]  # every state, in the order of the life of a message
    oldest_open_age_seconds: float  # 0 when nothing is open

    @classmethod
    def of(cls, counts: Mapping[str, int], oldest_open_received_at: float | None) -> Stats:
        """The stats of a store that counted ``counts`` (a state it has none of may be missing) and whose oldest
        open message arrived at ``oldest_open_received_at`` (unix seconds; None or 0 when nothing is open)."""
        age = round(time.time() - oldest_open_received_at, 3) if oldest_open_received_at else 0.0
        return cls({state: counts.get(state, 0) for state in State}, age)

    @property
    def open(self) -> int:
        """Messages not finished yet: the queue's depth as /healthz shows it."""
        return sum(self.counts[state] for state in OPEN_STATES)

    def as_dict(self) -> dict[str, Any]:
        """The JSON /healthz shows: ``{"messages": {state: count}, "oldest_open_age_seconds": age}``."""
        return {
            "messages": {state.value: count for state, count in self.counts.items()},
            "oldest_open_age_seconds": self.oldest_open_age_seconds,
        }


@dataclass(frozen=True)
class Delivery:
    """The latest status Meta reported for a message we sent (a reply part), keyed by the wamid Graph returned."""

    wamid: str
    status: str  # sent, delivered, read, played, failed
    timestamp: int  # Meta's, unix seconds
    recipient: str | None = None
    error_code: int | None = None  # on failed: 131047 re-engagement, 131026 undeliverable...
    error_title: str | None = None
    message_id: str | None = None  # the inbound message this part answered, when the reply log knows the wamid

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Delivery:
        """The status a store's row describes: ``wamid``, ``status``, ``ts`` (Meta's timestamp), ``recipient``,
        ``error_code``, ``error_title`` and, when the reply log was asked, ``message_id`` (absent or None if not)."""
        return cls(
            wamid=row["wamid"],
            status=row["status"],
            timestamp=int(row["ts"]),
            recipient=row["recipient"],
            error_code=row["error_code"],
            error_title=row["error_title"],
            message_id=row.get("message_id"),
        )


@dataclass(frozen=True)
class FailedMessage:
    """A message that finished ``failed``, as ``flask whatsapp failed`` lists it."""

    id: str
    sender: str
    reason: str | None
    finished_at: float  # unix seconds

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FailedMessage:
        """The failed message a store's row describes: ``id``, ``sender``, ``reason`` and ``updated_at`` (for a
        finished message, when it finished)."""
        return cls(row["id"], row["sender"], row.get("reason"), float(row["updated_at"]))


@dataclass(frozen=True)
class AttemptRecord:
    """What one attempt at a message did, as the store keeps it: :class:`whatsapp.attempts.Attempt` once it ended
    (or was cut short by its deadline), for ``flask whatsapp show``."""

    number: int  # 1 for the first attempt at a message
    holder: str  # host:pid:thread, as in the claim
    claimed_at: float  # unix seconds
    since_received: float = 0.0  # seconds from the webhook receiving the message to this claim
    state: State = State.CLAIMED  # the message's state as this attempt left it (received again on a retry)
    agent: str | None = None  # the agent that answered, when the model was asked
    model_seconds: float | None = None
    sends: int = 0  # reply parts Graph accepted in this attempt
    send_seconds: float = 0.0  # time spent in those Graph calls
    first_sent_at: float | None = None  # unix seconds, when Graph accepted this attempt's first part
    resumed: bool = False  # found parts that an earlier attempt had sent (and did not send them again)
    ended_at: float | None = None
    outcome: str | None = None  # done, retry (transient failure), failed, lost (another worker took the claim)
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data, as the store keeps it and ``show --json`` prints it."""
        return asdict(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> AttemptRecord:
        """The record a store kept as JSON text. A field it does not know (written by a later version) is left out,
        one it lacks (an earlier version's) takes its default."""
        known = {field.name for field in fields(cls)}
        data = {name: value for name, value in json.loads(text).items() if name in known}
        return cls(**{**data, "state": State(data.get("state", State.CLAIMED))})


class Store(ABC):
    """What every store (SQLite, Redis) must do; tests/test_store_contract.py holds the contract tests."""

    # received
    @abstractmethod
    def record(self, entries: Sequence[InboxEntry]) -> list[bool]:
        """Record messages durably; True for each one that is new, False for a duplicate delivery."""

    # claimed
    @abstractmethod
    def claim(self, holder: str, lease_seconds: float) -> Job | None:
        """Claim the oldest message whose customer has nothing claimed and nothing older open."""

    def renew(self, holder: str, message_ids: Sequence[str], lease_seconds: float) -> set[str]:
        """Extend the leases ``holder`` still has; returns the ids it still holds."""
        return self.renew_all(dict.fromkeys(message_ids, holder), lease_seconds)

    @abstractmethod
    def renew_all(self, claims: Mapping[str, str], lease_seconds: float) -> set[str]:
        """Extend the leases of every claim in ``claims`` (message id -> holder) in one write, as a process renews
        all its running jobs at once; returns the ids whose holder still holds them."""

    @abstractmethod
    def release(self, message_id: str, holder: str, *, refund_attempt: bool = False) -> None:
        """Give a claimed message back so that any worker may take it at once."""

    @abstractmethod
    def release_holders(self, is_dead: Callable[[str], bool]) -> list[str]:
        """Release the claims of holders that ``is_dead`` says no longer exist; returns the message ids."""

    @abstractmethod
    def retry_later(self, message_id: str, holder: str, reason: str, delay: float) -> None:
        """Release a claim after a transient failure; the message is claimable again after ``delay`` seconds."""

    # answered
    def save_answer(
        self,
        message_id: str,
        holder: str,
        sender: str,
        answer: str,
        turns: Sequence[dict],
        session: dict[str, Any] | None = None,
    ) -> None:
        """Store the agent's answer, append its turns to the sender's history (keeping the newest
        :data:`HISTORY_KEEP`) and replace the sender's session (who is handling the customer after a handoff) when
        one is given, in one transaction. A holder that lost its claim changes nothing."""
        items = [json.dumps(turn) for turn in turns]
        self._save_answer(message_id, holder, sender, answer, items, None if session is None else json.dumps(session))

    @abstractmethod
    def _save_answer(
        self, message_id: str, holder: str, sender: str, answer: str, turns: list[str], session: str | None
    ) -> None:
        """:meth:`save_answer` with the turns and the session as JSON text, as every store keeps them."""

    @abstractmethod
    def plan_replies(
        self, message_id: str, slot: int, recipient: str, reply_to: str | None, bodies: Sequence[str | Part]
    ) -> list[Reply]:
        """Record the parts of a reply before sending; if the slot was planned already, return that plan.

        A part is a text (sent as a text message) or a :class:`Part` (a rich reply, its message object kept as JSON).
        """

    @abstractmethod
    def mark_sent(self, message_id: str, slot: int, part: int, wamid: str) -> None:
        """Record that Graph accepted a part."""

    # done / failed
    def finish(self, message_id: str, holder: str, state: State, reason: str | None = None) -> bool:
        """Mark a claimed message ``done`` or ``failed`` (keeping the reason when one is given); False if ``holder``
        no longer held it. Any other state is a bug of the caller: :class:`ValueError`."""
        if state not in FINISHED_STATES:
            raise ValueError(f"finish() takes 'done' or 'failed', not {state!r}")
        return self._finish(message_id, holder, State(state), reason)

    @abstractmethod
    def _finish(self, message_id: str, holder: str, state: State, reason: str | None) -> bool:
        """:meth:`finish` with ``state`` checked."""

    # history
    @abstractmethod
    def history(self, sender: str) -> list[dict]:
        """The sender's conversation turns, oldest first."""

    @abstractmethod
    def session(self, sender: str) -> dict[str, Any]:
        """The sender's session (empty when there is none)."""

    @abstractmethod
    def clear_history(self, sender: str) -> None:
        """Forget the sender's history and session: the conversation starts over."""

    # media
    @abstractmethod
    def save_media(self, media_id: str, mime_type: str, data: bytes) -> None:
        """Keep an attachment's bytes (Meta's download URLs expire) until retention prunes them."""

    @abstractmethod
    def media(self, media_id: str) -> tuple[str, bytes] | None:
        """An attachment's MIME type and bytes, or None once pruned."""

    # operations
    @abstractmethod
    def get(self, message_id: str) -> StoredMessage | None:
        """The message as stored, with its reply log (for replay and inspection); None when it is not stored."""

    @abstractmethod
    def requeue(self, message_id: str) -> bool:
        """Put a done or failed message back to ``received`` so that it is processed again."""

    @abstractmethod
    def rate_position(self, message_id: str, window: float) -> int:
        """Where a message stands among its sender's messages sent in the ``window`` seconds up to it (1: the first).

        "Sent" is :func:`sent_at`: Meta's timestamp, so a backlog Meta redelivers at once after an outage counts as
        the customer wrote it, not as one burst; messages sent in the same second count in arrival order, so one POST
        carrying many messages of one sender gives each its own place. 0 for a message that is not stored.
        """

    @abstractmethod
    def stats(self) -> Stats:
        """Counts by state and the age of the oldest open message, for /healthz."""

    @abstractmethod
    def prune(self, older_than: float) -> int:
        """Delete finished messages (and their replies) and media last updated before ``older_than``."""

    # delivery statuses and attempts, for operators ----------------------------------------------------------------

    @abstractmethod
    def record_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Keep each wamid's furthest status (see :data:`DELIVERY_RANK`) until retention prunes it."""

    @abstractmethod
    def deliveries(self, wamids: Sequence[str]) -> dict[str, Delivery]:
        """The latest status of each of these wamids that has one."""

    @abstractmethod
    def failed_deliveries(self, limit: int) -> list[Delivery]:
        """The latest ``failed`` statuses, newest first, with the message each part answered when known."""

    def record_attempt(self, message_id: str, attempt: AttemptRecord) -> None:
        """Keep what an attempt at a message did (holder, timings, outcome); replaces an earlier record of the same
        attempt (its ``number``)."""
        self._record_attempt(message_id, attempt.number, json.dumps(attempt.as_dict()))

    @abstractmethod
    def _record_attempt(self, message_id: str, number: int, data: str) -> None:
        """:meth:`record_attempt` with the record as JSON text, as every store keeps it."""

    def attempts(self, message_id: str) -> list[AttemptRecord]:
        """The recorded attempts at a message, first first; an attempt whose worker died has no record."""
        return [AttemptRecord.from_json(data) for data in self._attempts(message_id)]

    @abstractmethod
    def _attempts(self, message_id: str) -> list[str | bytes]:
        """The JSON text of the recorded attempts at a message, in the order of their numbers."""

    @abstractmethod
    def failed(self, limit: int) -> list[FailedMessage]:
        """The latest failed messages, newest first."""

    @abstractmethod
    def message_ids(self) -> Iterable[str]:
        """Every stored message's id, in no particular order: a scan, for the command line, never the hot path."""

    def resolve(self, name: str) -> str:
        """The id of the message ``name`` names: an id as it is, or the tag logs show for it (``privacy.tag``).

        Logs never show an id (it holds the customer's number), so an operator copies the tag from a log line and
        the command line finds the id here. No index is kept for it: recording a message costs nothing more, and a
        lookup scans the ids kept within retention. A name that matches nothing comes back as it is.
        """
        if not is_tag(name) or self.get(name) is not None:
            return name
        return next((message_id for message_id in self.message_ids() if tag(message_id) == name), name)

    @abstractmethod
    def warm_up(self) -> None:
        """Open connections now, before the first webhook needs one."""

    @abstractmethod
    def close(self) -> None: ...
