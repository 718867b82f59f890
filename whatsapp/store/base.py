"""The store interface: the durable inbox, the reply log and conversation history.

The store is the single source of truth for the life of a message: ``received`` (recorded, keyed by its WhatsApp
message id, so a duplicate delivery stops here) -> ``claimed`` (one worker holds a lease on it; a customer has at most
one claimed message) -> ``answered`` (the answer is stored and its parts are being sent, each recorded with the wamid
Graph returned) -> ``done``; or ``failed`` with the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..privacy import is_tag, tag

OPEN_STATES = ("received", "claimed", "answered")

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
class Job:
    """A claimed message: the holder may work on it until ``lease_until``."""

    id: str
    sender: str
    timestamp: int
    payload: dict[str, Any]
    received_at: float
    state: str
    holder: str
    attempts: int  # including this one
    answer: str | None
    reason: str | None  # why the previous attempt failed, if it did


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


@dataclass(frozen=True)
class Part:
    """A rich reply part to plan: what a person reads of it, and the Graph message object (``{"type": ...}``)."""

    body: str
    message: dict[str, Any]


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

    @abstractmethod
    def renew(self, holder: str, message_ids: Sequence[str], lease_seconds: float) -> set[str]:
        """Extend the leases ``holder`` still has; returns the ids it still holds."""

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
    @abstractmethod
    def save_answer(
        self,
        message_id: str,
        holder: str,
        sender: str,
        answer: str,
        turns: Sequence[dict],
        session: dict[str, Any] | None = None,
    ) -> None:
        """Store the agent's answer, append its turns to the sender's history and replace the sender's session
        (who is handling the customer after a handoff) when one is given, in one transaction."""

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
    @abstractmethod
    def finish(self, message_id: str, holder: str, state: str, reason: str | None = None) -> bool:
        """Mark a claimed message ``done`` or ``failed``; False if ``holder`` no longer held it."""

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
    def get(self, message_id: str) -> dict[str, Any] | None:
        """One inbox row as a dict (for replay and inspection)."""

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
    def stats(self) -> dict[str, Any]:
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

    @abstractmethod
    def record_attempt(self, message_id: str, number: int, attempt: dict[str, Any]) -> None:
        """Keep what the ``number``-th attempt at a message did (holder, timings, outcome); replaces an earlier
        record of the same attempt."""

    @abstractmethod
    def attempts(self, message_id: str) -> list[dict[str, Any]]:
        """The recorded attempts at a message, first first; an attempt whose worker died has no record."""

    @abstractmethod
    def failed(self, limit: int) -> list[dict[str, Any]]:
        """The latest failed messages, newest first: ``id``, ``sender``, ``reason``, ``finished_at``."""

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
