"""The SQLite store's group commit: writes that wait together are committed together, each still on its own."""

from __future__ import annotations

import sqlite3
import threading
import time

from whatsapp import StoreUnavailable
from whatsapp.store import InboxEntry
from whatsapp.store.sqlite import SQLiteStore


def entry(message_id: str, sender: str = "15550001") -> InboxEntry:
    return InboxEntry(
        id=message_id,
        sender=sender,
        timestamp=1_700_000_000,
        payload={"message": {"id": message_id}, "value": {}},
        received_at=time.time(),
    )


def at_once(calls: list) -> list:
    """Run every call on its own thread, released together; returns each result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait(5)
        try:
            outcomes[index] = calls[index]()
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_writes_made_at_once_are_all_recorded_and_a_bad_one_fails_alone(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")
    ids = [f"wamid.{n}" for n in range(40)]
    calls = [lambda message_id=message_id: store.record([entry(message_id, sender=message_id)]) for message_id in ids]
    calls.insert(17, lambda: store.record([entry("wamid.\ud800")]))  # a lone surrogate cannot be stored
    outcomes = at_once(calls)
    bad = outcomes.pop(17)
    assert isinstance(bad, ValueError)
    assert outcomes == [[True]] * 40
    reopened = SQLiteStore(tmp_path / "store.db")  # on disk, seen by another connection
    assert all(reopened.get(message_id) is not None for message_id in ids)
    assert reopened.stats().counts["received"] == 40


def test_claims_made_at_once_never_give_one_customer_two_claims(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")
    store.record([entry(f"wamid.{n}", sender=f"1555000{n % 5}") for n in range(20)])
    jobs = at_once([lambda n=n: store.claim(f"host:1:{n}", 60) for n in range(20)])
    claimed = [job for job in jobs if job is not None]
    assert sorted(job.sender for job in claimed) == [f"1555000{n}" for n in range(5)]  # the head of each customer
    assert store.renew_all({job.id: job.holder for job in claimed}, 60) == {job.id for job in claimed}


def test_renew_all_extends_only_the_claims_still_held(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")
    store.record([entry("wamid.a", sender="1"), entry("wamid.b", sender="2")])
    a, b = store.claim("host:1:0", 60), store.claim("host:1:1", 60)
    store.finish(b.id, b.holder, "done")
    assert store.renew_all({a.id: a.holder, b.id: b.holder, "wamid.unknown": "host:1:2"}, 60) == {a.id}
    assert store.renew_all({a.id: "someone:else:0"}, 60) == set()


def test_a_locked_store_fails_every_waiting_write_within_its_timeout_then_recovers(tmp_path):
    store = SQLiteStore(tmp_path / "store.db", write_timeout=0.3)
    lock = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    try:
        outcomes = at_once([lambda n=n: store.record([entry(f"wamid.{n}")]) for n in range(6)])
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    assert time.monotonic() - started < 0.3 * 6  # not one timeout after another
    assert store.record([entry("wamid.after")]) == [True]


def test_an_error_inside_a_write_is_the_callers_alone(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO sessions (sender, data, updated_at) VALUES ('x', '{}', 0)")
        raise RuntimeError("the write's own bug")

    outcomes = at_once(
        [
            lambda: store._apply(broken),
            lambda: store.record(
                [entry("wamid.kept")],
            ),
        ]
    )
    assert isinstance(outcomes[0], RuntimeError) and outcomes[1] == [True]
    assert store.session("x") == {}  # undone: its savepoint was rolled back
