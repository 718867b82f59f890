"""SQLite store: the embedded default, safe across gunicorn worker processes and threads.

WAL journal, writes in ``BEGIN IMMEDIATE`` transactions so that claims from several processes are serialised by
SQLite's own lock. ``synchronous=FULL``: a message is on disk before the webhook's 200, and every step of a job is
on disk before the next one starts.

Group commit: a process writes through one connection, and the writes that threads ask for while a transaction
commits are run together in the next one, each in its own savepoint, with one fsync for all of them. Each caller
still returns only once its own write is on disk. Under load the worker's hundreds of jobs would otherwise queue
one fsync'd transaction at a time (six per answered message), and the webhook behind them. The webhook's writes go
first: they are taken into the next transaction before any other write.
Reads use a small pool of connections shared by every thread (a connection per thread would cost each of hundreds
of threads its own page cache), opened before the service accepts requests.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailable
from ..private_files import private_database
from . import base  # the interface this store implements: its names read base.Job, base.State...

READERS = 4  # read connections kept open per process (reads are short: more would only hold page caches)
BATCH_LIMIT = 64  # writes per group commit: bounds how long a webhook write can wait behind one

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_OPEN = "(" + ", ".join(f"'{state}'" for state in base.OPEN_STATES) + ")"
_FINISHED = "(" + ", ".join(f"'{state}'" for state in base.FINISHED_STATES) + ")"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    ts INTEGER NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'received',
    holder TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    answer TEXT,
    reason TEXT,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_open ON inbox (sender, ts, seq) WHERE state IN {_OPEN};
CREATE INDEX IF NOT EXISTS inbox_open_order ON inbox (ts, seq) WHERE state IN {_OPEN};
CREATE INDEX IF NOT EXISTS inbox_finished ON inbox (updated_at) WHERE state IN {_FINISHED};
CREATE INDEX IF NOT EXISTS inbox_sender_received ON inbox (sender, received_at);
CREATE TABLE IF NOT EXISTS replies (
    message_id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    part INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    reply_to TEXT,
    body TEXT NOT NULL,
    wamid TEXT,
    sent_at REAL,
    message TEXT,
    PRIMARY KEY (message_id, slot, part)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    item TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_sender ON history (sender, id);
CREATE TABLE IF NOT EXISTS sessions (
    sender TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    mime_type TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at REAL NOT NULL
);
"""

# What operators read (`flask whatsapp show`, `failed`): delivery statuses by wamid, and one row per attempt.
# Statuses are keyed by wamid, not by reply part, so a status that arrives before its part is marked sent is kept.
_OPERATIONS_SCHEMA = """
CREATE INDEX IF NOT EXISTS replies_wamid ON replies (wamid) WHERE wamid IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    wamid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    rank INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    recipient TEXT,
    error_code INTEGER,
    error_title TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_updated ON deliveries (updated_at);
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries (updated_at) WHERE status = 'failed';
CREATE TABLE IF NOT EXISTS attempts (
    message_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (message_id, number)
);
"""

# base.sent_at in SQL: Meta's timestamp, never later than the arrival, the arrival when Meta's is missing.
_SENT = "MIN(CASE WHEN ts > 0 THEN ts ELSE received_at END, received_at)"

_INSERT = "INSERT OR IGNORE INTO inbox (id, sender, ts, payload, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"

# The head of each customer's queue, when nobody holds a live lease on that customer's messages. A message whose
# answer has begun (``answered``) heads its customer's queue: an older one redelivered meanwhile waits until every
# part of it is sent, so one customer's replies never interleave.
# Walked in (ts, seq) order, it stops at the first claimable head instead of sorting the whole backlog; the
# subqueries must use the open-messages index (left alone, the planner picks one holding every finished message).
_CLAIMABLE = f"""
SELECT i.seq, i.sender FROM inbox i INDEXED BY inbox_open_order
WHERE i.state IN {_OPEN}
  AND (i.holder IS NULL OR i.lease_until < :now)
  AND i.not_before <= :now
  AND NOT EXISTS (
      SELECT 1 FROM inbox j INDEXED BY inbox_open WHERE j.sender = i.sender AND j.state IN {_OPEN}
        AND ((j.state = 'answered') > (i.state = 'answered')
             OR ((j.state = 'answered') = (i.state = 'answered')
                 AND (j.ts < i.ts OR (j.ts = i.ts AND j.seq < i.seq)))))
  AND NOT EXISTS (
      SELECT 1 FROM inbox k INDEXED BY inbox_open WHERE k.sender = i.sender AND k.state IN {_OPEN}
        AND k.holder IS NOT NULL AND k.lease_until >= :now)
ORDER BY i.ts, i.seq
LIMIT 1
"""


def _locked() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Write:
    """A write waiting for a group commit: ``apply(db)`` runs inside the transaction. ``apply`` None: the thread
    wants the writer connection to itself (``_write()``). Its thread sleeps on ``wake`` until the write is done or
    the thread is handed the committer's role; only that one thread is woken, never every waiting writer."""

    apply: Callable[[sqlite3.Connection], Any] | None
    urgent: bool
    wake: threading.Lock = field(default_factory=_locked)
    taken: bool = False  # in a transaction being committed
    done: bool = False
    lead: bool = False  # this thread commits next
    result: Any = None
    error: BaseException | None = None


class SQLiteStore(base.Store):
    def __init__(self, path: str | Path, *, write_timeout: float = 2.0, history_ttl: float = base.HISTORY_TTL) -> None:
        self.path = str(path)
        self.history_ttl = history_ttl
        self._write_timeout = write_timeout
        self._forget_connections()
        # A connection must never cross a fork (gunicorn --preload): the child opens its own.
        os.register_at_fork(after_in_child=self._forget_connections)
        if self.path != ":memory:":
            private_database(self.path)
        try:
            db = self._writer()
            db.executescript(_SCHEMA + _OPERATIONS_SCHEMA)
            self._add_missing_columns(db)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"SQLite store {self.path}: {error}") from error

    @staticmethod
    def _add_missing_columns(db: sqlite3.Connection) -> None:
        """A store made by an earlier version lacks replies.message (rich replies); add it, NULL meaning text."""
        columns = {row["name"] for row in db.execute("PRAGMA table_info(replies)")}
        if "message" not in columns:
            try:
                db.execute("ALTER TABLE replies ADD COLUMN message TEXT")
            except sqlite3.OperationalError as error:  # another process added it first
                if "duplicate column" not in str(error):
                    raise

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
        return cls(url.removeprefix("sqlite:///"))

    # connections -------------------------------------------------------------------------------------------------

    def _forget_connections(self) -> None:
        self._writer_db: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._mutex = threading.Lock()  # guards the queue of writes and the committer's role
        self._queue: list[_Write] = []
        self._committing = False

    def warm_up(self) -> None:
        """Open the writer and the read connections now, before the first webhook needs them."""
        self._wait_turn(_Write(None, urgent=False))
        try:
            self._writer()
            readers = [self._borrow_reader() for _ in range(READERS)]
            for db in readers:
                self._return_reader(db)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"SQLite store {self.path}: {error}") from error
        finally:
            self._hand_over()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self._write_timeout, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        self._use_wal(db)
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _use_wal(self, db: sqlite3.Connection) -> None:
        """Switch to WAL; on a new file that fails at once, with no busy wait, while another process switches it
        too (two gunicorn workers booting on a fresh store), so it is retried until ``write_timeout``."""
        deadline = time.monotonic() + self._write_timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode not in _BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    def _borrow_reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._readers:
                return self._readers.pop()
        return self._open()

    def _return_reader(self, db: sqlite3.Connection) -> None:
        with self._readers_lock:
            if len(self._readers) < READERS:
                self._readers.append(db)
                return
        db.close()

    # writes ------------------------------------------------------------------------------------------------------

    def _writer(self) -> sqlite3.Connection:
        if self._writer_db is None:
            self._writer_db = self._open()
        return self._writer_db

    def _wait_turn(self, write: _Write) -> bool:
        """Queue ``write``; True when this thread is to commit (it leads), False once another thread committed it.

        A write still queued after ``write_timeout`` is withdrawn and :class:`StoreUnavailable` raised: this
        process's writers are stuck. One already in a transaction waits for it (bounded by ``BEGIN``'s own wait).
        """
        with self._mutex:
            if not self._committing:
                self._committing = True
                if write.apply is not None:
                    self._queue.append(write)
                return True
            self._queue.append(write)
        if not write.wake.acquire(timeout=self._write_timeout):
            with self._mutex:
                if not (write.done or write.lead or write.taken):
                    self._queue.remove(write)
                    raise StoreUnavailable(f"SQLite store {self.path}: this process's writers are stuck behind a lock")
            write.wake.acquire()
        return write.lead and not write.done

    def _hand_over(self) -> None:
        """The committer is done: wake the next waiting write's thread to commit (a webhook's first), if any."""
        with self._mutex:
            if not self._queue:
                self._committing = False
                return
            following = next((write for write in self._queue if write.urgent), self._queue[0])
            if following.apply is None:
                self._queue.remove(following)
            following.lead = True
            following.wake.release()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction of its own; any SQLite failure becomes :class:`StoreUnavailable`.

        This process's writers queue without sleeping; against other processes ``BEGIN IMMEDIATE`` is retried
        every millisecond or two until ``write_timeout``. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20,
        25 ms... between tries, so a lock held for half a millisecond cost a waiting webhook tens of them.
        """
        self._wait_turn(_Write(None, urgent=False))
        try:
            try:
                db = self._writer()
                self._begin(db)
            except sqlite3.Error as error:
                raise StoreUnavailable(f"SQLite store {self.path}: {error}") from error
            try:
                yield db
                db.execute("COMMIT")
            except BaseException as error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise StoreUnavailable(f"SQLite store {self.path}: {error}") from error
                raise
        finally:
            self._hand_over()

    def _apply(self, apply: Callable[[sqlite3.Connection], Any], *, urgent: bool = False) -> Any:
        """Run ``apply(db)`` in a write transaction shared with whatever other writes are waiting (group commit).

        Returns its result once the transaction is committed. ``urgent`` writes (the webhook's) are committed
        before any waiting write that is not.
        """
        write = _Write(apply, urgent)
        if self._wait_turn(write):
            try:
                while not write.done:
                    self._commit()
            finally:
                self._hand_over()
        if write.error is not None:
            raise write.error
        return write.result

    def _take_batch(self) -> list[_Write]:
        """The writes to commit now, the webhook's first."""
        with self._mutex:
            waiting = [write for write in self._queue if write.apply is not None]
            batch = sorted(waiting, key=lambda write: not write.urgent)[:BATCH_LIMIT]
            taken = set(map(id, batch))
            self._queue = [write for write in self._queue if id(write) not in taken]
            for write in batch:
                write.taken = True
        return batch

    def _commit(self) -> None:
        """One transaction for the writes waiting, one savepoint per write: a write that raises is undone alone (its
        caller gets the error); a failure of the transaction itself (locked, disk full) fails every write in it.

        The batch is taken once SQLite's lock is held, so the writes that arrived while another process committed
        (its fsync: a few milliseconds on a busy disk) go into this transaction instead of waiting for the next one:
        a quarter fewer commits per answered message under the benchmark's load (docs/benchmarks.md).
        """
        try:
            db = self._writer()
            self._begin(db)
        except sqlite3.Error as error:
            self._finish_batch(self._take_batch(), error)
            return
        batch = self._take_batch()
        try:
            for write in batch:
                db.execute("SAVEPOINT write")
                try:
                    write.result = write.apply(db)  # type: ignore[misc]  # batches hold writes with apply only
                except Exception as error:
                    if isinstance(error, sqlite3.Error) and not db.in_transaction:
                        raise  # SQLite rolled the whole transaction back (disk full, I/O error)
                    db.execute("ROLLBACK TO write")
                    write.error = _unavailable(self.path, error) if isinstance(error, sqlite3.Error) else error
                db.execute("RELEASE write")
            db.execute("COMMIT")
        except sqlite3.Error as error:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._finish_batch(batch, error)
            return
        self._finish_batch(batch, None)

    def _finish_batch(self, batch: list[_Write], error: sqlite3.Error | None) -> None:
        failure = None if error is None else _unavailable(self.path, error)
        for write in batch:
            if failure is not None:
                write.result, write.error = None, failure
            write.done = True
            write.wake.release()

    def _begin(self, db: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self._write_timeout
        pause = 0.0001
        db.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as error:
                    if error.sqlite_errorcode not in _BUSY or time.monotonic() + pause > deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, 0.002)
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(self._write_timeout * 1000)}")

    def _read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        try:
            db = self._borrow_reader()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"SQLite store {self.path}: {error}") from error
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"SQLite store {self.path}: {error}") from error
        finally:
            self._return_reader(db)

    # received ----------------------------------------------------------------------------------------------------

    def record(self, entries: Sequence[base.InboxEntry]) -> list[bool]:
        now = time.time()
        rows = [
            (entry.id, entry.sender, entry.timestamp, json.dumps(entry.payload), entry.received_at, now)
            for entry in entries
        ]

        def insert(db: sqlite3.Connection) -> list[bool]:
            return [db.execute(_INSERT, row).rowcount == 1 for row in rows]

        return self._apply(insert, urgent=True)

    # claimed -----------------------------------------------------------------------------------------------------

    def claim(self, holder: str, lease_seconds: float) -> base.Job | None:
        def claim(db: sqlite3.Connection) -> sqlite3.Row | None:
            now = time.time()
            row = db.execute(_CLAIMABLE, {"now": now}).fetchone()
            if row is None:
                return None
            # An expired claim on another message of this customer ends here: its holder must not renew it later
            # and give the customer two live claims.
            db.execute(
                "UPDATE inbox SET state = CASE state WHEN 'claimed' THEN 'received' ELSE state END, holder = NULL,"
                " lease_until = 0, updated_at = ? WHERE sender = ? AND seq != ? AND holder IS NOT NULL"
                f" AND state IN {_OPEN}",
                (now, row["sender"], row["seq"]),
            )
            db.execute(
                "UPDATE inbox SET state = CASE state WHEN 'received' THEN 'claimed' ELSE state END,"
                " holder = ?, lease_until = ?, attempts = attempts + 1, updated_at = ? WHERE seq = ?",
                (holder, now + lease_seconds, now, row["seq"]),
            )
            return db.execute("SELECT * FROM inbox WHERE seq = ?", (row["seq"],)).fetchone()

        claimed = self._apply(claim)
        return None if claimed is None else base.Job.from_row(dict(claimed))

    def renew_all(self, claims: Mapping[str, str], lease_seconds: float) -> set[str]:
        if not claims:
            return set()
        pairs = list(claims.items())

        def renew(db: sqlite3.Connection) -> set[str]:
            until = time.time() + lease_seconds
            held = set()
            for message_id, holder in pairs:
                cursor = db.execute(
                    f"UPDATE inbox SET lease_until = ? WHERE id = ? AND holder = ? AND state IN {_OPEN}",
                    (until, message_id, holder),
                )
                if cursor.rowcount:
                    held.add(message_id)
            return held

        return self._apply(renew)

    def release(self, message_id: str, holder: str, *, refund_attempt: bool = False) -> None:
        def release(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE inbox SET state = CASE state WHEN 'claimed' THEN 'received' ELSE state END,"
                " holder = NULL, lease_until = 0, attempts = attempts - ?, updated_at = ?"
                f" WHERE id = ? AND holder = ? AND state IN {_OPEN}",
                (1 if refund_attempt else 0, time.time(), message_id, holder),
            )

        self._apply(release)

    def release_holders(self, is_dead: Callable[[str], bool]) -> list[str]:
        rows = self._read(f"SELECT id, holder FROM inbox WHERE holder IS NOT NULL AND state IN {_OPEN}")
        released = []
        for row in rows:
            if is_dead(row["holder"]):
                self.release(row["id"], row["holder"])
                released.append(row["id"])
        return released

    def retry_later(self, message_id: str, holder: str, reason: str, delay: float) -> None:
        def retry_later(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute(
                "UPDATE inbox SET state = CASE state WHEN 'claimed' THEN 'received' ELSE state END,"
                " holder = NULL, lease_until = 0, not_before = ?, reason = ?, updated_at = ?"
                f" WHERE id = ? AND holder = ? AND state IN {_OPEN}",
                (now + delay, reason, now, message_id, holder),
            )

        self._apply(retry_later)

    # answered ----------------------------------------------------------------------------------------------------

    def _save_answer(
        self, message_id: str, holder: str, sender: str, answer: str, turns: list[str], session: str | None
    ) -> None:
        def save(db: sqlite3.Connection) -> None:
            now = time.time()
            held = f"SELECT 1 FROM inbox WHERE id = ? AND holder = ? AND state IN {_OPEN}"
            if db.execute(held, (message_id, holder)).fetchone() is None:
                return  # the claim was lost: the new holder's answer, turns and session are the ones to keep
            if session is not None:
                db.execute(
                    "INSERT INTO sessions (sender, data, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (sender) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                    (sender, session, now),
                )
            db.execute(
                "UPDATE inbox SET state = 'answered', answer = ?, updated_at = ? WHERE id = ? AND holder = ?",
                (answer, now, message_id, holder),
            )
            db.executemany(
                "INSERT INTO history (sender, item, created_at) VALUES (?, ?, ?)",
                [(sender, turn, now) for turn in turns],
            )
            db.execute(
                "DELETE FROM history WHERE sender = ? AND id <= "
                "(SELECT id FROM history WHERE sender = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (sender, sender, base.HISTORY_KEEP),
            )

        self._apply(save)

    def plan_replies(
        self, message_id: str, slot: int, recipient: str, reply_to: str | None, bodies: Sequence[str | base.Part]
    ) -> list[base.Reply]:
        def plan(db: sqlite3.Connection) -> list[sqlite3.Row]:
            exists = db.execute(
                "SELECT 1 FROM replies WHERE message_id = ? AND slot = ? LIMIT 1", (message_id, slot)
            ).fetchone()
            if not exists:
                db.executemany(
                    "INSERT INTO replies (message_id, slot, part, recipient, reply_to, body, message)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(message_id, slot, n, recipient, reply_to, *_planned(body)) for n, body in enumerate(bodies)],
                )
            return db.execute(
                "SELECT * FROM replies WHERE message_id = ? AND slot = ? ORDER BY part", (message_id, slot)
            ).fetchall()

        return [base.Reply.from_row(dict(row)) for row in self._apply(plan)]

    def mark_sent(self, message_id: str, slot: int, part: int, wamid: str) -> None:
        def mark(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE replies SET wamid = ?, sent_at = ? WHERE message_id = ? AND slot = ? AND part = ?",
                (wamid, time.time(), message_id, slot, part),
            )

        self._apply(mark)

    # done / failed -----------------------------------------------------------------------------------------------

    def _finish(self, message_id: str, holder: str, state: base.State, reason: str | None) -> bool:
        def finish(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE inbox SET state = ?, reason = COALESCE(?, reason), holder = NULL, lease_until = 0,"
                f" updated_at = ? WHERE id = ? AND holder = ? AND state IN {_OPEN}",
                (state, reason, time.time(), message_id, holder),
            )
            return cursor.rowcount == 1

        return self._apply(finish)

    # history -----------------------------------------------------------------------------------------------------

    def history(self, sender: str) -> list[dict]:
        rows = self._read("SELECT item FROM history WHERE sender = ? ORDER BY id", (sender,))
        return [json.loads(row["item"]) for row in rows]

    def session(self, sender: str) -> dict[str, Any]:
        rows = self._read("SELECT data FROM sessions WHERE sender = ?", (sender,))
        return json.loads(rows[0]["data"]) if rows else {}

    def clear_history(self, sender: str) -> None:
        def clear(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM history WHERE sender = ?", (sender,))
            db.execute("DELETE FROM sessions WHERE sender = ?", (sender,))

        self._apply(clear)

    # media -------------------------------------------------------------------------------------------------------

    def save_media(self, media_id: str, mime_type: str, data: bytes) -> None:
        def save(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO media (id, mime_type, data, created_at) VALUES (?, ?, ?, ?)",
                (media_id, mime_type, data, time.time()),
            )

        self._apply(save)

    def media(self, media_id: str) -> tuple[str, bytes] | None:
        rows = self._read("SELECT mime_type, data FROM media WHERE id = ?", (media_id,))
        return (rows[0]["mime_type"], bytes(rows[0]["data"])) if rows else None

    # operations --------------------------------------------------------------------------------------------------

    def get(self, message_id: str) -> base.StoredMessage | None:
        rows = self._read("SELECT * FROM inbox WHERE id = ?", (message_id,))
        if not rows:
            return None
        replies = self._read("SELECT * FROM replies WHERE message_id = ?", (message_id,))
        return base.StoredMessage.from_row(dict(rows[0]), [base.Reply.from_row(dict(reply)) for reply in replies])

    def requeue(self, message_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE inbox SET state = 'received', holder = NULL, lease_until = 0, attempts = 0, not_before = 0,"
                f" answer = NULL, reason = NULL, updated_at = ? WHERE id = ? AND state IN {_FINISHED}",
                (time.time(), message_id),
            )
            if cursor.rowcount:
                db.execute("DELETE FROM replies WHERE message_id = ?", (message_id,))
                db.execute("DELETE FROM attempts WHERE message_id = ?", (message_id,))
        return cursor.rowcount == 1

    def rate_position(self, message_id: str, window: float) -> int:
        rows = self._read("SELECT sender, ts, received_at, seq FROM inbox WHERE id = ?", (message_id,))
        if not rows:
            return 0
        me = rows[0]
        mine = base.sent_at(me["ts"], me["received_at"])
        # A message sent after the window's start arrived after it too: received_at narrows the scan to the window.
        rows = self._read(
            f"SELECT COUNT(*) AS n FROM inbox WHERE sender = :sender AND received_at > :since AND {_SENT} > :since"
            f" AND ({_SENT} < :mine OR ({_SENT} = :mine AND seq <= :seq))",
            {"sender": me["sender"], "since": mine - window, "mine": mine, "seq": me["seq"]},
        )
        return rows[0]["n"]

    def stats(self) -> base.Stats:
        counts = {row["state"]: row["n"] for row in self._read("SELECT state, COUNT(*) AS n FROM inbox GROUP BY state")}
        oldest = self._read(f"SELECT MIN(received_at) AS t FROM inbox WHERE state IN {_OPEN}")[0]["t"]
        return base.Stats.of(counts, oldest)

    def prune(self, older_than: float) -> int:
        with self._write() as db:
            db.execute(
                "DELETE FROM replies WHERE message_id IN"
                f" (SELECT id FROM inbox WHERE state IN {_FINISHED} AND updated_at < ?)",
                (older_than,),
            )
            db.execute(
                "DELETE FROM attempts WHERE message_id IN"
                f" (SELECT id FROM inbox WHERE state IN {_FINISHED} AND updated_at < ?)",
                (older_than,),
            )
            cursor = db.execute(f"DELETE FROM inbox WHERE state IN {_FINISHED} AND updated_at < ?", (older_than,))
            db.execute("DELETE FROM deliveries WHERE updated_at < ?", (older_than,))
            db.execute("DELETE FROM media WHERE created_at < ?", (older_than,))
            # Conversations nobody continued within history_ttl, as Redis lets their keys expire: whole, not turn
            # by turn, so a conversation still going keeps its oldest turns.
            forgotten = time.time() - self.history_ttl
            db.execute(
                "DELETE FROM history WHERE sender IN"
                " (SELECT sender FROM history GROUP BY sender HAVING MAX(created_at) < ?)",
                (forgotten,),
            )
            db.execute("DELETE FROM sessions WHERE updated_at < ?", (forgotten,))
        return cursor.rowcount

    # delivery statuses and attempts ------------------------------------------------------------------------------

    def record_deliveries(self, deliveries: Sequence[base.Delivery]) -> None:
        if not deliveries:
            return
        now = time.time()
        rows = [
            (
                d.wamid,
                d.status,
                base.DELIVERY_RANK.get(d.status, 0),
                d.timestamp,
                d.recipient,
                d.error_code,
                d.error_title,
                now,
            )
            for d in deliveries
        ]

        def record(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO deliveries (wamid, status, rank, ts, recipient, error_code, error_title, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (wamid) DO UPDATE SET status = excluded.status,"
                " rank = excluded.rank, ts = excluded.ts, recipient = excluded.recipient,"
                " error_code = excluded.error_code, error_title = excluded.error_title,"
                " updated_at = excluded.updated_at"
                " WHERE excluded.rank > deliveries.rank",
                rows,
            )

        self._apply(record, urgent=True)  # the webhook's

    def deliveries(self, wamids: Sequence[str]) -> dict[str, base.Delivery]:
        if not wamids:
            return {}
        marks = ",".join("?" * len(wamids))
        rows = self._read(f"SELECT * FROM deliveries WHERE wamid IN ({marks})", tuple(wamids))
        return {row["wamid"]: base.Delivery.from_row(dict(row)) for row in rows}

    def failed_deliveries(self, limit: int) -> list[base.Delivery]:
        rows = self._read(
            "SELECT d.*, (SELECT r.message_id FROM replies r WHERE r.wamid = d.wamid LIMIT 1) AS message_id"
            " FROM deliveries d INDEXED BY deliveries_failed WHERE d.status = 'failed'"
            " ORDER BY d.updated_at DESC LIMIT ?",
            (limit,),
        )
        return [base.Delivery.from_row(dict(row)) for row in rows]

    def _record_attempt(self, message_id: str, number: int, data: str) -> None:
        def record(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO attempts (message_id, number, data) VALUES (?, ?, ?)",
                (message_id, number, data),
            )

        self._apply(record)

    def _attempts(self, message_id: str) -> list[str | bytes]:
        rows = self._read("SELECT data FROM attempts WHERE message_id = ? ORDER BY number", (message_id,))
        return [row["data"] for row in rows]

    def failed(self, limit: int) -> list[base.FailedMessage]:
        rows = self._read(
            "SELECT id, sender, reason, updated_at FROM inbox INDEXED BY inbox_finished"
            f" WHERE state IN {_FINISHED} AND state = 'failed'"
            " ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [base.FailedMessage.from_row(dict(row)) for row in rows]

    def message_ids(self) -> list[str]:
        return [row["id"] for row in self._read("SELECT id FROM inbox")]

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for db in readers:
            db.close()
        if self._writer_db is not None:
            self._wait_turn(_Write(None, urgent=False))
            try:
                if self._writer_db is not None:
                    self._writer_db.close()
                    self._writer_db = None
            finally:
                self._hand_over()


def _unavailable(path: str, error: sqlite3.Error) -> StoreUnavailable:
    unavailable = StoreUnavailable(f"SQLite store {path}: {error}")
    unavailable.__cause__ = error
    return unavailable


def _planned(part: str | base.Part) -> tuple[str, str | None]:
    """The body and message columns of a planned part (message NULL for text)."""
    if isinstance(part, base.Part):
        return part.body, json.dumps(part.message, ensure_ascii=False)
    return part, None
