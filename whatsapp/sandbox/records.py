"""What the sandbox remembers, in one SQLite file in the instance folder, shared by every worker process.

Gunicorn runs several processes, each with its own app: the simulator page may be served by one, the webhook by
another and the Graph call made by a third. So nothing lives in memory: the generated secrets, the simulated
customers, an append-only log of events per customer (inbound messages, webhook acknowledgements, Graph calls,
statuses) and the uploaded media are all rows here. A customer is keyed on its phone number, or, for a customer
known only by a username, on its business-scoped user id (``US.…``), as the service keys its sessions. WAL mode,
one connection per thread (and per process: a connection is never used across a fork).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..processes import pid_alive

#: How long a "typing…" indicator lasts without a reply, as on WhatsApp.
TYPING_SECONDS = 25.0
#: Events and media older than this are dropped at start-up (Meta keeps inbound media 7 days).
RETENTION_SECONDS = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shared (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    wa_id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, username TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    customer TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    wamid TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_customer ON events (customer, seq);
CREATE INDEX IF NOT EXISTS events_by_wamid ON events (wamid);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    filename TEXT,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class StoredMedia:
    """An uploaded file as the fake Graph serves it; ``sha256`` is hex, as the media lookup gives it."""

    id: str
    customer: str
    mime_type: str
    filename: str | None
    sha256: str
    data: bytes


class Records:
    """The sandbox's SQLite file; safe to share between threads (each gets its own connection)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(customers)")}
            if "username" not in columns:  # a sandbox.db from before username customers
                db.execute("ALTER TABLE customers ADD COLUMN username TEXT")

    # values every process agrees on -------------------------------------------------------------------------

    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The value stored under ``name``; the first process to ask creates it, every later one reads it."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO shared (name, value) VALUES (?, ?)", (name, make()))
            return db.execute("SELECT value FROM shared WHERE name = ?", (name,)).fetchone()[0]

    def claim_run(self, pid: int) -> bool:
        """True for the first process of the run led by ``pid`` to ask (one start-up line per run).

        Marks of runs whose leading process is gone are dropped first, so a reused pid starts afresh.
        """
        with self._connect() as db:
            for (name,) in db.execute("SELECT name FROM shared WHERE name LIKE 'run:%'").fetchall():
                other = int(name.removeprefix("run:"))
                if other != pid and not pid_alive(other):
                    db.execute("DELETE FROM shared WHERE name = ?", (name,))
            return (
                db.execute("INSERT OR IGNORE INTO shared (name, value) VALUES (?, '')", (f"run:{pid}",)).rowcount == 1
            )

    # customers -----------------------------------------------------------------------------------------------

    def add_customer(self, wa_id: str, name: str, *, username: str | None = None, keep_name: bool = False) -> None:
        """Create or rename a simulated customer (``keep_name`` only creates); ``wa_id`` is a business-scoped user
        id for a customer known by ``username`` alone."""
        conflict = "NOTHING" if keep_name else "UPDATE SET name = excluded.name"
        with self._connect() as db:
            db.execute(
                "INSERT INTO customers (wa_id, name, created, username) VALUES (?, ?, ?, ?) "
                f"ON CONFLICT (wa_id) DO {conflict}",
                (wa_id, name, time.time(), username),
            )

    def customers(self) -> list[dict[str, Any]]:
        """Every customer with the time of its last event, most recent first."""
        with self._connect() as db:
            rows = db.execute(
                """SELECT c.wa_id, c.name, c.created, MAX(e.at), c.username FROM customers c
                   LEFT JOIN events e ON e.customer = c.wa_id GROUP BY c.wa_id
                   ORDER BY COALESCE(MAX(e.at), c.created) DESC"""
            ).fetchall()
        return [{"wa_id": r[0], "name": r[1], "last_at": r[3] or r[2], "username": r[4]} for r in rows]

    def remove_customer(self, wa_id: str) -> bool:
        """Forget a customer, its conversation and its uploads; False when there was no such customer."""
        with self._connect() as db:
            db.execute("DELETE FROM events WHERE customer = ?", (wa_id,))
            db.execute("DELETE FROM media WHERE customer = ?", (wa_id,))
            return db.execute("DELETE FROM customers WHERE wa_id = ?", (wa_id,)).rowcount == 1

    def customer(self, wa_id: str) -> tuple[str, str | None] | None:
        """A customer's profile name and username (``None`` for a customer known by phone number)."""
        with self._connect() as db:
            row = db.execute("SELECT name, username FROM customers WHERE wa_id = ?", (wa_id,)).fetchone()
        return (row[0], row[1]) if row else None

    # events --------------------------------------------------------------------------------------------------

    def add_event(
        self, customer: str, kind: str, data: dict[str, Any], *, wamid: str | None = None, at: float | None = None
    ) -> int:
        """Append one event to a customer's log; returns its sequence number (the page's polling cursor)."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO events (customer, at, kind, wamid, data) VALUES (?, ?, ?, ?, ?)",
                (customer, time.time() if at is None else at, kind, wamid, json.dumps(data)),
            )
            return int(cursor.lastrowid or 0)

    def events(self, customer: str, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """A customer's events after the cursor ``after``, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT seq, at, kind, wamid, data FROM events WHERE customer = ? AND seq > ? ORDER BY seq LIMIT ?",
                (customer, after, limit),
            ).fetchall()
        return [{"seq": r[0], "at": r[1], "kind": r[2], "wamid": r[3], **json.loads(r[4])} for r in rows]

    def customer_of(self, wamid: str) -> str | None:
        """Whose conversation a message id belongs to (an inbound message or one we sent)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT customer FROM events WHERE wamid = ? AND kind IN ('inbound', 'send') LIMIT 1", (wamid,)
            ).fetchone()
        return row[0] if row else None

    def has_status(self, wamid: str, status: str) -> bool:
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM events WHERE wamid = ? AND kind = 'status' AND json_extract(data, '$.status') = ?",
                (wamid, status),
            ).fetchone()
        return row is not None

    def typing(self, customer: str, now: float | None = None) -> bool:
        """True from a mark-read with a typing indicator until the next reply to that customer, or 25 s."""
        now = time.time() if now is None else now
        with self._connect() as db:
            rows = db.execute(
                "SELECT kind, at, data FROM events WHERE customer = ? AND kind IN ('read', 'send') "
                "ORDER BY seq DESC LIMIT 20",
                (customer,),
            ).fetchall()
        for kind, at, data in rows:
            call = json.loads(data)
            if call.get("status") != 200:
                continue
            return kind == "read" and bool(call.get("typing")) and now - at < TYPING_SECONDS
        return False

    # media ---------------------------------------------------------------------------------------------------

    def put_media(self, media: StoredMedia) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO media (id, customer, mime_type, filename, sha256, data, created) VALUES (?,?,?,?,?,?,?)",
                (media.id, media.customer, media.mime_type, media.filename, media.sha256, media.data, time.time()),
            )

    def media(self, media_id: str) -> StoredMedia | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, customer, mime_type, filename, sha256, data FROM media WHERE id = ?", (media_id,)
            ).fetchone()
        return StoredMedia(row[0], row[1], row[2], row[3], row[4], bytes(row[5])) if row else None

    # housekeeping --------------------------------------------------------------------------------------------

    def prune(self, older_than: float = RETENTION_SECONDS) -> None:
        """Forget events and media older than the retention (customers and secrets stay)."""
        before = time.time() - older_than
        with self._connect() as db:
            db.execute("DELETE FROM events WHERE at < ?", (before,))
            db.execute("DELETE FROM media WHERE created < ?", (before,))

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection, in autocommit mode (``with`` commits nothing); a new one after a fork."""
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=15, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 15000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        return db
