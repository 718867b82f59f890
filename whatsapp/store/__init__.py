"""Durable storage for the life of a message; see :mod:`whatsapp.store.base`."""

from __future__ import annotations

from ..errors import StoreUnavailable
from .base import (
    DELIVERY_RANK,
    FINISHED_STATES,
    HISTORY_KEEP,
    OPEN_STATES,
    AttemptRecord,
    Delivery,
    FailedMessage,
    InboxEntry,
    Job,
    Part,
    Reply,
    State,
    Stats,
    Store,
    StoredMessage,
)

__all__ = [
    "DELIVERY_RANK",
    "FINISHED_STATES",
    "HISTORY_KEEP",
    "OPEN_STATES",
    "AttemptRecord",
    "Delivery",
    "FailedMessage",
    "InboxEntry",
    "Job",
    "Part",
    "Reply",
    "State",
    "Stats",
    "Store",
    "StoreUnavailable",
    "StoredMessage",
    "open_store",
]


def open_store(url: str, retention_days: float = 7.0) -> Store:
    """The store named by ``store.url``; finished messages and media are kept ``retention_days``."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("redis://", "rediss://")):
        from .redis import RedisStore

        return RedisStore(url, retention_seconds=retention_days * 86400)
    raise ValueError(f"unsupported store.url scheme: {url.split(':', 1)[0]}")
