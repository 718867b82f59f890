"""Durable storage for the life of a message; see :mod:`whatsapp.store.base`."""

from __future__ import annotations

from .base import OPEN_STATES, InboxEntry, Job, Reply, Store, StoreUnavailable

__all__ = ["OPEN_STATES", "InboxEntry", "Job", "Reply", "Store", "StoreUnavailable", "open_store"]


def open_store(url: str) -> Store:
    """The store named by ``store.url``."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("redis://", "rediss://")):
        from .redis import RedisStore

        return RedisStore.from_url(url)
    raise ValueError(f"unsupported store.url scheme: {url.split(':', 1)[0]}")
