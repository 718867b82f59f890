"""The store contract: what every store promises, run against SQLite and against a real ``redis-server``.

A store that passes these tests keeps the promises the service is built on: a duplicate delivery is recorded once,
a message is claimed by one holder at a time, one customer's messages go one at a time and oldest first, an
abandoned claim comes back, and what is kept (history, finished messages) stays bounded.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer
from whatsapp import StoreUnavailable
from whatsapp.privacy import tag
from whatsapp.store import Delivery, InboxEntry, Part, Store, open_store
from whatsapp.store.base import (
    HISTORY_KEEP,
    AttemptRecord,
    FailedMessage,
    Job,
    Reply,
    State,
    Stats,
    StoredMessage,
)
from whatsapp.store.redis import RedisStore
from whatsapp.store.sqlite import SQLiteStore

LONG = 60.0  # a lease that does not expire during a test


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SQLiteStore(tmp_path / "store.db")
    else:
        server = request.getfixturevalue("redis_server")
        redis.Redis.from_url(server.url).flushall()
        opened = RedisStore(server.url)
    yield opened
    opened.close()


def entry(message_id: str, sender: str = "15550001", ts: int = 1_700_000_000, received_at: float | None = None):
    return InboxEntry(
        id=message_id,
        sender=sender,
        timestamp=ts,
        payload={"message": {"id": message_id, "from": sender, "type": "text"}, "value": {"messages": []}},
        received_at=time.time() if received_at is None else received_at,
    )


def claim_all(store: Store, holder: str = "worker:1:0") -> list[str]:
    """Claim until nothing is claimable; the ids in claim order."""
    ids = []
    while (job := store.claim(holder, LONG)) is not None:
        ids.append(job.id)
    return ids


# received -------------------------------------------------------------------------------------------------------


def test_a_duplicate_delivery_is_recorded_once(store):
    assert store.record([entry("wamid.1")]) == [True]
    assert store.record([entry("wamid.1")]) == [False]
    assert store.record([entry("wamid.2"), entry("wamid.2"), entry("wamid.1")]) == [True, False, False]
    assert store.stats().counts["received"] == 2
    recorded = store.get("wamid.1")
    assert recorded.state == "received" and recorded.payload["message"]["id"] == "wamid.1"
    assert store.get("wamid.unknown") is None


def test_concurrent_duplicate_deliveries_create_the_message_once(store):
    results: list[bool] = []
    lock = threading.Lock()

    def deliver() -> None:
        created = store.record([entry("wamid.same")])
        with lock:
            results.extend(created)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


# claimed --------------------------------------------------------------------------------------------------------


def test_concurrent_claims_take_each_message_once_and_one_per_customer_at_a_time(store):
    senders = [f"1555000{n:02d}" for n in range(4)]  # fewer customers than threads: most claims find one busy
    expected = [f"wamid.{s}.{k}" for s in senders for k in range(15)]
    store.record([entry(f"wamid.{s}.{k}", sender=s, ts=1_700_000_000 + k) for s in senders for k in range(15)])
    claimed: list[str] = []
    finished: list[str] = []
    lost: list[str] = []  # finishes refused: the claim was taken away while held
    held: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)  # sender -> (from, to, id)
    ticks = itertools.count()  # one clock for claims beginning and returning and finishes beginning
    nothing_since = [-1]  # when the newest claim that found nothing claimable began
    changed = threading.Condition()
    deadline = time.monotonic() + 30

    def work(n: int) -> None:
        holder = f"worker:{n}:0"
        while time.monotonic() < deadline:
            with changed:
                if len(finished) == len(expected):
                    return
            begun = next(ticks)
            job = store.claim(holder, LONG)
            with changed:
                if job is None:
                    nothing_since[0] = max(nothing_since[0], begun)
                    changed.notify_all()
                else:
                    claimed_at = next(ticks)
            if job is None:
                time.sleep(0.002)
                continue
            # The job lasts until a claim begun after this one returned has found nothing claimable. Fewer customers
            # than threads, so with one claim per customer some threads always find nothing; a store that gave this
            # customer's next message to another thread meanwhile is caught holding two claims for one customer.
            with changed:
                changed.wait_for(lambda at=claimed_at: nothing_since[0] > at, timeout=5)
                finishing_at = next(ticks)
                claimed.append(job.id)
                held[job.sender].append((claimed_at, finishing_at, job.id))
            if not store.finish(job.id, holder, "done"):
                lost.append(job.id)
            with changed:
                finished.append(job.id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    overlaps = [
        (earlier[2], later[2])
        for spans in held.values()
        for earlier, later in itertools.pairwise(sorted(spans))
        if later[0] < earlier[1]  # claimed before the customer's earlier claim was finished
    ]
    assert overlaps == []
    assert lost == []
    assert sorted(claimed) == sorted(expected)  # every message once, none twice
    for sender in senders:  # and each customer's in order
        assert [i for i in claimed if f".{sender}." in i] == [f"wamid.{sender}.{k}" for k in range(15)]


def test_one_customers_messages_are_claimed_oldest_first_even_when_they_arrive_out_of_order(store):
    store.record([entry("wamid.b", ts=1_700_000_200), entry("wamid.c", ts=1_700_000_300)])
    store.record([entry("wamid.a", ts=1_700_000_100)])  # sent first, delivered last
    store.record([entry("wamid.d1", ts=1_700_000_400), entry("wamid.d2", ts=1_700_000_400)])  # same second
    order = []
    while (job := store.claim("worker:1:0", LONG)) is not None:
        order.append(job.id)
        assert store.finish(job.id, "worker:1:0", "done")
    assert order == ["wamid.a", "wamid.b", "wamid.c", "wamid.d1", "wamid.d2"]


def test_a_customer_has_at_most_one_claimed_message_while_others_go_ahead(store):
    store.record([entry("wamid.a1", ts=1), entry("wamid.a2", ts=2), entry("wamid.b1", sender="15550002", ts=3)])
    first = store.claim("worker:1:0", LONG)
    second = store.claim("worker:1:1", LONG)
    assert (first.id, second.id) == ("wamid.a1", "wamid.b1")
    assert store.claim("worker:1:2", LONG) is None  # a2 waits for a1
    assert store.stats().counts["claimed"] == 2
    assert store.finish("wamid.a1", "worker:1:0", "done")
    assert store.claim("worker:1:2", LONG).id == "wamid.a2"


def test_a_message_that_arrives_while_an_older_one_is_claimed_waits_for_it(store):
    store.record([entry("wamid.later", ts=1_700_000_200)])
    assert store.claim("worker:1:0", LONG).id == "wamid.later"
    store.record([entry("wamid.earlier", ts=1_700_000_100)])  # older, but the customer is busy
    assert store.claim("worker:1:1", LONG) is None
    assert store.finish("wamid.later", "worker:1:0", "done")
    assert store.claim("worker:1:1", LONG).id == "wamid.earlier"


def test_a_begun_answer_is_resumed_before_an_older_message_redelivered_meanwhile(store):
    store.record([entry("wamid.later", ts=1_700_000_200)])
    job = store.claim("worker:1:0", LONG)
    store.save_answer(job.id, job.holder, job.sender, "two parts", [{"role": "user", "content": "q"}])
    store.plan_replies(job.id, 1, job.sender, job.id, ["part 1", "part 2"])
    store.mark_sent(job.id, 1, 0, "wamid.sent.1")
    store.release(job.id, job.holder)  # its worker stopped between the two parts
    store.record([entry("wamid.earlier", ts=1_700_000_100)])  # older, redelivered after an outage
    resumed = store.claim("worker:1:1", LONG)
    assert (resumed.id, resumed.state) == ("wamid.later", "answered")  # part 2 follows part 1, nothing between
    assert store.finish(resumed.id, resumed.holder, "done")
    assert store.claim("worker:1:1", LONG).id == "wamid.earlier"


def test_a_claim_carries_the_message_and_counts_the_attempt(store):
    store.record([entry("wamid.1", sender="15550009", ts=1_700_000_009, received_at=1_700_000_010.5)])
    job = store.claim("host:42:3", LONG)
    assert (job.id, job.sender, job.timestamp) == ("wamid.1", "15550009", 1_700_000_009)
    assert job.received_at == 1_700_000_010.5
    assert job.payload["message"] == {"id": "wamid.1", "from": "15550009", "type": "text"}
    assert (job.state, job.holder, job.attempts, job.answer, job.reason) == ("claimed", "host:42:3", 1, None, None)
    assert store.get("wamid.1").holder == "host:42:3"


def test_an_expired_lease_is_reclaimed_by_another_holder(store):
    store.record([entry("wamid.1")])
    assert store.claim("dead:1:0", 0.3).id == "wamid.1"
    assert store.claim("alive:2:0", LONG) is None  # the lease is still live
    time.sleep(0.5)
    job = store.claim("alive:2:0", LONG)
    assert (job.id, job.attempts) == ("wamid.1", 2)
    assert store.renew("dead:1:0", ["wamid.1"], LONG) == set()  # the old holder cannot come back
    assert store.finish("wamid.1", "dead:1:0", "done") is False
    assert store.finish("wamid.1", "alive:2:0", "done") is True


def test_renewing_a_lease_keeps_the_claim_past_its_first_expiry(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", 0.4)
    for _ in range(4):
        time.sleep(0.2)
        assert store.renew("worker:1:0", ["wamid.1", "wamid.not-mine"], 0.4) == {"wamid.1"}
    assert store.claim("worker:2:0", LONG) is None
    assert store.renew("worker:2:0", ["wamid.1"], LONG) == set()


def test_a_late_renew_cannot_give_a_customer_two_live_claims(store):
    store.record([entry("wamid.second", ts=1_700_000_200)])
    store.claim("slow:1:0", 0.3)
    time.sleep(0.5)  # the slow holder's lease ran out...
    store.record([entry("wamid.first", ts=1_700_000_100)])  # ...and an older message of the customer arrived
    assert store.claim("worker:2:0", LONG).id == "wamid.first"
    assert store.renew("slow:1:0", ["wamid.second"], LONG) == set()
    assert store.get("wamid.second").holder is None
    assert store.claim("worker:3:0", LONG) is None  # still one claim for the customer
    assert store.finish("wamid.first", "worker:2:0", "done")
    assert store.claim("worker:3:0", LONG).id == "wamid.second"


def test_release_makes_a_message_claimable_at_once_and_can_refund_the_attempt(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    store.release("wamid.1", "somebody:else:0")  # not the holder: nothing happens
    assert store.claim("worker:2:0", LONG) is None
    store.release("wamid.1", "worker:1:0", refund_attempt=True)
    assert store.get("wamid.1").state == "received"
    job = store.claim("worker:2:0", LONG)
    assert job.attempts == 1  # the refunded attempt does not count
    store.release("wamid.1", "worker:2:0")
    assert store.claim("worker:3:0", LONG).attempts == 2


def test_retry_later_keeps_the_customer_waiting_for_the_delay_but_not_others(store):
    store.record([entry("wamid.a1", ts=1), entry("wamid.a2", ts=2), entry("wamid.b1", sender="15550002", ts=3)])
    store.claim("worker:1:0", LONG)
    store.retry_later("wamid.a1", "worker:1:0", "TimeoutError: slow model", 0.6)
    assert store.get("wamid.a1").reason == "TimeoutError: slow model"
    assert store.claim("worker:1:0", LONG).id == "wamid.b1"  # a2 may not overtake a1
    assert store.claim("worker:1:1", LONG) is None
    time.sleep(0.8)
    job = store.claim("worker:1:1", LONG)
    assert (job.id, job.attempts, job.reason) == ("wamid.a1", 2, "TimeoutError: slow model")


def test_release_holders_frees_the_claims_of_dead_holders_only(store):
    store.record([entry("wamid.a"), entry("wamid.b", sender="15550002")])
    store.claim("dead:1:0", LONG)
    store.claim("alive:2:0", LONG)
    asked: list[str] = []

    def is_dead(holder: str) -> bool:
        asked.append(holder)
        return holder.startswith("dead:")

    assert store.release_holders(is_dead) == ["wamid.a"]
    assert sorted(asked) == ["alive:2:0", "dead:1:0"]
    job = store.claim("alive:2:1", LONG)
    assert (job.id, job.attempts) == ("wamid.a", 2)
    assert store.get("wamid.b").holder == "alive:2:0"
    assert store.release_holders(lambda holder: False) == []


# answered ------------------------------------------------------------------------------------------------------


def test_a_saved_answer_survives_a_release_and_extends_the_history(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    store.save_answer("wamid.1", "worker:1:0", "15550001", "hello", turns)
    assert store.get("wamid.1").state == "answered"
    assert store.history("15550001") == turns
    assert store.history("15550002") == []
    store.release("wamid.1", "worker:1:0")
    job = store.claim("worker:2:0", LONG)
    assert (job.state, job.answer) == ("answered", "hello")  # the next attempt does not ask the model again
    assert store.stats().counts["answered"] == 1


def test_history_keeps_only_the_newest_history_keep_turns(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    turns = [{"role": "user", "content": f"turn {n}"} for n in range(HISTORY_KEEP + 25)]
    store.save_answer("wamid.1", "worker:1:0", "15550001", "ok", turns)
    kept = store.history("15550001")
    assert len(kept) == HISTORY_KEEP
    assert kept[0] == {"role": "user", "content": "turn 25"} and kept[-1] == turns[-1]
    store.clear_history("15550001")
    assert store.history("15550001") == []


def test_a_holder_that_lost_its_claim_cannot_save_an_answer(store):
    store.record([entry("wamid.1")])
    store.claim("slow:1:0", 0.3)
    time.sleep(0.5)
    store.claim("worker:2:0", LONG)
    store.save_answer("wamid.1", "slow:1:0", "15550001", "stale", [{"role": "user", "content": "q"}], {"agent": "x"})
    assert store.get("wamid.1").answer is None
    assert store.history("15550001") == []  # the new holder's turns will be the only ones
    assert store.session("15550001") == {}


def test_the_session_is_saved_with_the_answer_and_cleared_with_the_history(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    assert store.session("15550001") == {}
    store.save_answer("wamid.1", "worker:1:0", "15550001", "ok", [], {"agent": "billing"})
    assert store.session("15550001") == {"agent": "billing"}
    store.clear_history("15550001")
    assert store.session("15550001") == {}


def test_a_second_plan_of_the_same_slot_returns_the_first_plan_with_what_was_sent(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    plan = store.plan_replies("wamid.1", 1, "15550001", "wamid.1", ["part one", "part two"])
    assert [(r.slot, r.part, r.body, r.reply_to, r.wamid) for r in plan] == [
        (1, 0, "part one", "wamid.1", None),
        (1, 1, "part two", "wamid.1", None),
    ]
    store.mark_sent("wamid.1", 1, 0, "wamid.out.1")
    again = store.plan_replies("wamid.1", 1, "15550001", "wamid.1", ["a different answer"])
    assert [(r.body, r.wamid) for r in again] == [("part one", "wamid.out.1"), ("part two", None)]
    store.plan_replies("wamid.1", 0, "15550001", None, ["Got it"])
    replies = store.get("wamid.1").replies
    assert [(r.slot, r.part, r.recipient, r.body) for r in replies] == [
        (0, 0, "15550001", "Got it"),
        (1, 0, "15550001", "part one"),
        (1, 1, "15550001", "part two"),
    ]


def test_a_rich_reply_part_keeps_its_message_object_through_a_resume(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    buttons = {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Which size? ✨"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "s", "title": "Small"}}]},
        },
    }
    planned = ["Here you go", Part("Which size? ✨\n[Small]", buttons)]
    plan = store.plan_replies("wamid.1", 1, "US.13491208655302741918", "wamid.1", planned)
    assert [(r.body, r.message) for r in plan] == [("Here you go", None), ("Which size? ✨\n[Small]", buttons)]
    assert plan[0].payload() == {"type": "text", "text": {"preview_url": False, "body": "Here you go"}}
    assert plan[1].payload() == buttons
    store.mark_sent("wamid.1", 1, 0, "wamid.out.1")
    resumed = store.plan_replies("wamid.1", 1, "US.13491208655302741918", "wamid.1", ["something else"])
    assert [(r.wamid, r.recipient, r.payload()) for r in resumed] == [
        ("wamid.out.1", "US.13491208655302741918", plan[0].payload()),
        (None, "US.13491208655302741918", buttons),
    ]
    assert [r.message for r in store.get("wamid.1").replies] == [None, buttons]


def test_an_sqlite_store_made_before_rich_replies_gains_the_message_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE replies (message_id TEXT NOT NULL, slot INTEGER NOT NULL, part INTEGER NOT NULL,"
            " recipient TEXT NOT NULL, reply_to TEXT, body TEXT NOT NULL, wamid TEXT, sent_at REAL,"
            " PRIMARY KEY (message_id, slot, part))"
        )
        db.execute("INSERT INTO replies VALUES ('wamid.old', 1, 0, '15550001', NULL, 'planned before', NULL, NULL)")
    store = SQLiteStore(path)
    [old] = store.plan_replies("wamid.old", 1, "15550001", None, ["ignored"])
    assert (old.body, old.message) == ("planned before", None)
    [new] = store.plan_replies("wamid.new", 1, "15550001", None, [Part("[reacted 👍]", {"type": "reaction"})])
    assert new.message == {"type": "reaction"}


# done / failed -------------------------------------------------------------------------------------------------


def test_finish_by_a_holder_that_does_not_hold_the_message_returns_false(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    assert store.finish("wamid.1", "worker:9:9", "done") is False
    assert store.finish("wamid.1", "worker:1:0", "failed", "ValueError: no") is True
    assert store.finish("wamid.1", "worker:1:0", "done") is False  # finished already
    finished = store.get("wamid.1")
    assert (finished.state, finished.reason, finished.holder) == ("failed", "ValueError: no", None)
    with pytest.raises(ValueError):
        store.finish("wamid.1", "worker:1:0", "answered")


def test_finish_takes_done_or_failed_only_and_refuses_the_rest_without_a_change(store):
    store.record([entry("wamid.1")])
    job = store.claim("worker:1:0", LONG)
    for state in (State.ANSWERED, "received", "claimed", "finished", ""):
        with pytest.raises(ValueError, match="finish\\(\\) takes 'done' or 'failed'"):
            store.finish(job.id, job.holder, state)
    held = store.get(job.id)
    assert (held.state, held.holder) == (State.CLAIMED, job.holder)
    assert store.finish(job.id, job.holder, State.DONE)
    assert store.get(job.id).state is State.DONE


def test_requeue_puts_a_finished_message_back_with_a_fresh_budget(store):
    store.record([entry("wamid.1")])
    store.claim("worker:1:0", LONG)
    store.plan_replies("wamid.1", 1, "15550001", None, ["sent once"])
    assert store.requeue("wamid.1") is False  # still open
    store.finish("wamid.1", "worker:1:0", "failed", "boom")
    assert store.requeue("wamid.1") is True
    again = store.get("wamid.1")
    assert (again.state, again.attempts, again.reason, again.replies) == ("received", 0, None, ())
    assert store.stats().counts["failed"] == 0
    job = store.claim("worker:2:0", LONG)
    assert (job.id, job.attempts) == ("wamid.1", 1)
    assert store.requeue("wamid.unknown") is False


# operations ----------------------------------------------------------------------------------------------------


def test_rate_position_counts_metas_timestamps_clamped_to_arrival(store):
    now = time.time()
    backlog = [entry(f"wamid.b{n}", ts=int(now) - 300 + 15 * n, received_at=now) for n in range(20)]  # 4 a minute
    store.record(backlog)
    assert [store.rate_position(e.id, 60) for e in backlog] == [1, 2, 3, 4] + [4] * 16
    future = entry("wamid.future", sender="15550002", ts=int(now) + 3600, received_at=now)
    store.record([entry("wamid.before", sender="15550002", ts=int(now) - 30, received_at=now - 30), future])
    assert store.rate_position("wamid.future", 60) == 2  # a timestamp in the future counts as the arrival
    assert store.rate_position("wamid.unknown", 60) == 0


def test_one_seconds_messages_of_one_sender_count_in_arrival_order(store):
    now = time.time()
    burst = [entry(f"wamid.s{n}", ts=int(now), received_at=now) for n in range(8)]
    store.record(burst)
    store.record([entry("wamid.other", sender="15550002", ts=int(now), received_at=now)])
    assert [store.rate_position(e.id, 60) for e in burst] == list(range(1, 9))
    assert store.rate_position("wamid.other", 60) == 1


def test_get_describes_a_message_in_each_state_with_typed_fields(store):
    before = time.time()
    store.record(
        [
            entry("wamid.1", sender="15550009", ts=1_700_000_009, received_at=1_700_000_010.5),
            entry("wamid.2", sender="15550002", ts=1_700_000_050),
            entry("wamid.3", sender="15550003", ts=1_700_000_100),
        ]
    )
    received = store.get("wamid.1")
    assert isinstance(received, StoredMessage) and received.state is State.RECEIVED
    assert (received.id, received.sender, received.timestamp) == ("wamid.1", "15550009", 1_700_000_009)
    assert received.received_at == 1_700_000_010.5
    assert received.payload == entry("wamid.1", sender="15550009").payload
    assert (received.holder, received.attempts, received.answer, received.reason) == (None, 0, None, None)
    assert (received.lease_until, received.not_before, received.replies) == (0.0, 0.0, ())
    assert before - 1 <= received.updated_at <= time.time() + 1
    assert received.seq < store.get("wamid.2").seq < store.get("wamid.3").seq  # arrival order

    job = store.claim("host:42:3", LONG)
    assert isinstance(job, Job) and (job.id, job.state) == ("wamid.1", State.CLAIMED) and job.state is State.CLAIMED
    claimed = store.get("wamid.1")
    assert [getattr(claimed, f.name) for f in dataclasses.fields(Job)] == list(dataclasses.astuple(job))
    assert (claimed.holder, claimed.attempts, claimed.seq) == ("host:42:3", 1, received.seq)
    assert time.time() + LONG - 10 < claimed.lease_until <= time.time() + LONG + 1

    store.save_answer(job.id, job.holder, job.sender, "two parts", [{"role": "user", "content": "q"}])
    store.plan_replies(job.id, 1, job.sender, job.id, ["part 1", Part("[Small]", {"type": "interactive"})])
    store.plan_replies(job.id, 0, job.sender, None, ["Got it"])
    store.mark_sent(job.id, 1, 0, "wamid.out.1")
    answered = store.get("wamid.1")
    assert (answered.state, answered.holder, answered.answer) == (State.ANSWERED, job.holder, "two parts")
    assert answered.replies == (
        Reply("wamid.1", 0, 0, "15550009", None, "Got it", None),
        Reply("wamid.1", 1, 0, "15550009", "wamid.1", "part 1", "wamid.out.1"),
        Reply("wamid.1", 1, 1, "15550009", "wamid.1", "[Small]", None, {"type": "interactive"}),
    )
    assert store.finish(job.id, job.holder, State.DONE)
    done = store.get("wamid.1")
    assert (done.state, done.holder, done.lease_until, done.attempts) == (State.DONE, None, 0.0, 1)
    assert (done.answer, done.reason, done.replies) == ("two parts", None, answered.replies)
    assert answered.updated_at <= done.updated_at <= time.time() + 1

    failing = store.claim("worker:2:0", LONG)
    assert failing.id == "wamid.2" and store.finish(failing.id, failing.holder, State.FAILED, "GraphAPIError: 131047")
    failed = store.get("wamid.2")
    assert (failed.state, failed.holder, failed.attempts) == (State.FAILED, None, 1)
    assert (failed.answer, failed.reason, failed.replies) == (None, "GraphAPIError: 131047", ())

    retried = store.claim("worker:3:0", LONG)
    assert retried.id == "wamid.3"
    store.retry_later(retried.id, retried.holder, "TimeoutError: slow model", 30)
    waiting = store.get("wamid.3")
    assert (waiting.state, waiting.holder, waiting.lease_until, waiting.attempts) == (State.RECEIVED, None, 0.0, 1)
    assert waiting.reason == "TimeoutError: slow model"
    assert time.time() + 20 < waiting.not_before <= time.time() + 31


def test_stats_counts_messages_by_state_and_the_oldest_open_age(store):
    empty = store.stats()
    assert empty == Stats(dict.fromkeys(State, 0), 0.0) and empty.open == 0
    assert empty.as_dict() == {  # what /healthz shows
        "messages": {"received": 0, "claimed": 0, "answered": 0, "done": 0, "failed": 0},
        "oldest_open_age_seconds": 0.0,
    }
    now = time.time()
    store.record([entry(f"wamid.{n}", sender=f"1555000{n}", received_at=now - 10 + n) for n in range(5)])
    for n, outcome in enumerate(["done", "failed", "answered", "claimed"]):
        job = store.claim(f"worker:1:{n}", LONG)
        if outcome in ("done", "failed"):
            store.finish(job.id, job.holder, outcome)
        elif outcome == "answered":
            store.save_answer(job.id, job.holder, job.sender, "ok", [])
    stats = store.stats()
    assert list(stats.counts) == list(State)  # every state, in the order of the life of a message
    assert stats.counts == {"received": 1, "claimed": 1, "answered": 1, "done": 1, "failed": 1}
    assert stats.open == 3
    assert 8 <= stats.oldest_open_age_seconds < 12  # wamid.2, received 8 seconds ago
    assert stats.as_dict() == {
        "messages": {"received": 1, "claimed": 1, "answered": 1, "done": 1, "failed": 1},
        "oldest_open_age_seconds": stats.oldest_open_age_seconds,
    }


def test_prune_deletes_only_finished_messages_older_than_the_cutoff(store):
    store.record([entry("wamid.done"), entry("wamid.failed", sender="15550002"), entry("wamid.open", sender="3")])
    for holder in ("worker:1:0", "worker:1:1"):
        job = store.claim(holder, LONG)
        store.plan_replies(job.id, 1, job.sender, None, ["bye"])
        store.finish(job.id, holder, "done" if job.id == "wamid.done" else "failed")
    assert store.prune(time.time() - 3600) == 0  # finished just now: within retention
    assert store.get("wamid.done") is not None
    assert store.prune(time.time() + 1) == 2
    assert store.get("wamid.done") is None and store.get("wamid.failed") is None
    assert store.get("wamid.open").state == "received"  # open messages are never pruned
    assert store.stats().counts == {"received": 1, "claimed": 0, "answered": 0, "done": 0, "failed": 0}
    assert store.record([entry("wamid.done")]) == [True]  # past retention an id is forgotten


def test_media_is_kept_until_retention_prunes_it(store):
    store.save_media("media-1", "image/jpeg", b"\xff\xd8\xff\x00 bytes")
    assert store.media("media-1") == ("image/jpeg", b"\xff\xd8\xff\x00 bytes")
    assert store.media("media-2") is None
    store.prune(time.time() - 3600)
    assert store.media("media-1") is not None
    store.prune(time.time() + 1)
    assert store.media("media-1") is None


# delivery statuses and attempts --------------------------------------------------------------------------------


def sent_part(store: Store, message_id: str = "wamid.1", wamid: str = "wamid.out.1") -> None:
    """A message claimed and answered with one part that Graph accepted as ``wamid``."""
    store.record([entry(message_id)])
    job = store.claim("worker:1:0", LONG)
    store.plan_replies(job.id, 1, job.sender, job.id, ["Hello"])
    store.mark_sent(job.id, 1, 0, wamid)


def test_a_part_keeps_its_furthest_delivery_status_whatever_the_order_they_arrive_in(store):
    sent_part(store)
    store.record_deliveries([Delivery("wamid.out.1", "read", 1_700_000_003, "15550001")])
    store.record_deliveries([Delivery("wamid.out.1", "delivered", 1_700_000_002), Delivery("wamid.out.1", "sent", 1)])
    assert store.deliveries(["wamid.out.1", "wamid.unknown"]) == {
        "wamid.out.1": Delivery("wamid.out.1", "read", 1_700_000_003, "15550001")
    }
    store.record_deliveries([Delivery("wamid.out.1", "read", 1_700_000_009)])  # a duplicate delivery
    assert store.deliveries(["wamid.out.1"])["wamid.out.1"].timestamp == 1_700_000_003
    assert store.deliveries([]) == {}


def test_a_failed_delivery_keeps_metas_error_and_is_listed_with_the_message_it_answered(store):
    sent_part(store)
    failed = Delivery("wamid.out.1", "failed", 1_700_000_005, "15550001", 131047, "Re-engagement message")
    store.record_deliveries([Delivery("wamid.out.1", "delivered", 1_700_000_001), failed])
    store.record_deliveries([Delivery("wamid.out.1", "read", 1_700_000_006)])  # failed is final
    assert store.deliveries(["wamid.out.1"])["wamid.out.1"] == failed
    store.record_deliveries([Delivery("wamid.elsewhere", "failed", 1_700_000_007, "15550002", 131026, "Undeliverable")])
    listed = store.failed_deliveries(10)
    assert [(d.wamid, d.message_id, d.error_code) for d in listed] == [
        ("wamid.elsewhere", None, 131026),  # newest first; sent by someone else, so no message of ours
        ("wamid.out.1", "wamid.1", 131047),
    ]
    assert [d.wamid for d in store.failed_deliveries(1)] == ["wamid.elsewhere"]


def test_a_status_that_arrives_before_its_part_is_marked_sent_is_kept(store):
    store.record_deliveries([Delivery("wamid.out.1", "sent", 1_700_000_001)])
    sent_part(store)
    assert store.deliveries(["wamid.out.1"])["wamid.out.1"].status == "sent"


def test_attempts_are_kept_in_order_and_an_attempt_can_be_recorded_again(store):
    store.record([entry("wamid.1")])
    assert store.attempts("wamid.1") == []
    second = AttemptRecord(2, "worker:2:0", 1_700_000_020.5, state=State.DONE, outcome="done")
    first = AttemptRecord(1, "worker:1:0", 1_700_000_010.25, 0.5, State.RECEIVED, outcome="retry", reason="HTTP 503")
    store.record_attempt("wamid.1", second)
    store.record_attempt("wamid.1", first)
    sent = dataclasses.replace(second, agent="Support", model_seconds=1.5, sends=1, first_sent_at=1_700_000_021.0)
    store.record_attempt("wamid.1", sent)
    recorded = store.attempts("wamid.1")
    assert recorded == [first, sent]
    assert all(type(record.state) is State for record in recorded)


def test_failed_lists_the_latest_failed_messages_with_their_reasons(store):
    store.record([entry(f"wamid.{n}", sender=f"1555000{n}") for n in range(3)])
    for n in range(3):
        job = store.claim("worker:1:0", LONG)
        store.finish(job.id, job.holder, "done" if n == 1 else "failed", f"reason {n}")
        time.sleep(0.01)  # distinct finish times
    listed = store.failed(10)
    assert listed == [
        FailedMessage("wamid.2", "15550002", "reason 2", store.get("wamid.2").updated_at),
        FailedMessage("wamid.0", "15550000", "reason 0", store.get("wamid.0").updated_at),
    ]
    assert listed[0].finished_at >= listed[1].finished_at > time.time() - 60
    assert store.failed(1) == listed[:1]


def test_prune_forgets_statuses_and_attempts_past_retention(store):
    sent_part(store)
    store.record_attempt("wamid.1", AttemptRecord(1, "worker:1:0", time.time(), outcome="done"))
    store.record_deliveries([Delivery("wamid.out.1", "failed", 1_700_000_005, "15550001", 131026, "Undeliverable")])
    store.finish("wamid.1", "worker:1:0", "done")
    store.prune(time.time() - 3600)
    assert store.deliveries(["wamid.out.1"]) and store.attempts("wamid.1") and store.failed_deliveries(10)
    store.prune(time.time() + 1)
    assert store.deliveries(["wamid.out.1"]) == {}
    assert store.attempts("wamid.1") == [] and store.failed_deliveries(10) == []


def test_requeue_starts_the_attempts_over(store):
    store.record([entry("wamid.1")])
    job = store.claim("worker:1:0", LONG)
    store.record_attempt("wamid.1", AttemptRecord(1, job.holder, time.time(), outcome="failed"))
    store.finish(job.id, job.holder, "failed", "boom")
    store.requeue("wamid.1")
    assert store.attempts("wamid.1") == []


def operators_view(store: Store) -> tuple:
    """One history played on ``store``, and every record an operator reads of it (``show``, ``failed``), with the
    times the store itself takes (when a message finished, leases) set aside: they differ from one run to the next."""
    received_at = 1_700_000_000.5
    store.record([entry("wamid.1", received_at=received_at), entry("wamid.2", "15550002", received_at=received_at)])
    first = store.claim("worker:1:0", LONG)
    store.plan_replies(first.id, 1, first.sender, first.id, ["Hello", Part("Pick one", {"type": "interactive"})])
    store.mark_sent(first.id, 1, 0, "wamid.out.1")
    store.mark_sent(first.id, 1, 1, "wamid.out.2")
    store.record_attempt(first.id, AttemptRecord(1, first.holder, 1_700_000_002.5, 0.25, State.DONE, "Support", 1.5))
    store.finish(first.id, first.holder, "done")
    second = store.claim("worker:1:1", LONG)
    store.record_attempt(second.id, AttemptRecord(1, second.holder, 1_700_000_003.0, outcome="failed", reason="boom"))
    store.finish(second.id, second.holder, "failed", "boom")
    store.record_deliveries(
        [
            Delivery("wamid.out.1", "read", 1_700_000_004, "15550001"),
            Delivery("wamid.out.2", "failed", 1_700_000_005, "15550001", 131047, "Re-engagement message"),
            Delivery("wamid.elsewhere", "failed", 1_700_000_006, "15550003", 131026, "Undeliverable"),
        ]
    )
    at = {"updated_at": 0.0, "lease_until": 0.0, "not_before": 0.0}
    return (
        [dataclasses.replace(store.get(message_id), **at) for message_id in ("wamid.1", "wamid.2")],
        [store.attempts(message_id) for message_id in ("wamid.1", "wamid.2")],
        [dataclasses.replace(failed, finished_at=0.0) for failed in store.failed(10)],
        store.deliveries(["wamid.out.1", "wamid.out.2", "wamid.elsewhere"]),
        sorted(store.failed_deliveries(10), key=lambda delivery: delivery.wamid),  # the same second: any order
    )


def test_both_stores_give_equal_typed_records_for_the_same_history(tmp_path, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    sqlite_store, redis_store = SQLiteStore(tmp_path / "store.db"), RedisStore(redis_server.url)
    try:
        in_sqlite, in_redis = operators_view(sqlite_store), operators_view(redis_store)
    finally:
        sqlite_store.close()
        redis_store.close()
    assert in_redis == in_sqlite
    messages, attempts, failed, deliveries, undelivered = in_sqlite
    assert [message.state for message in messages] == [State.DONE, State.FAILED]
    assert [len(message.replies) for message in messages] == [2, 0]
    assert [[record.outcome for record in records] for records in attempts] == [[None], ["failed"]]
    assert failed == [FailedMessage("wamid.2", "15550002", "boom", 0.0)]
    assert sorted(deliveries) == ["wamid.elsewhere", "wamid.out.1", "wamid.out.2"]
    assert [(d.wamid, d.message_id) for d in undelivered] == [("wamid.elsewhere", None), ("wamid.out.2", "wamid.1")]


# Redis only: expiry, outages, scale ---------------------------------------------------------------------------


@pytest.fixture
def redis_store(redis_server) -> Iterator[RedisStore]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    opened = RedisStore(redis_server.url)
    yield opened
    opened.close()
    client.close()


def test_redis_open_messages_never_expire_and_finished_ones_do(redis_server, redis_store):
    client = redis.Redis.from_url(redis_server.url)
    redis_store.record([entry("wamid.1")])
    job = redis_store.claim("worker:1:0", LONG)
    redis_store.plan_replies(job.id, 1, job.sender, None, ["hi"])
    redis_store.save_answer(job.id, job.holder, job.sender, "hi", [{"role": "user", "content": "q"}])
    assert client.ttl("whatsapp:m:wamid.1") == -1  # open: kept until it is answered
    assert 0 < client.ttl("whatsapp:h:15550001") <= 30 * 86400
    redis_store.finish(job.id, job.holder, "done")
    assert 7 * 86400 < client.ttl("whatsapp:m:wamid.1") <= 8 * 86400
    assert 7 * 86400 < client.ttl("whatsapp:r:wamid.1") <= 8 * 86400
    client.close()


def test_redis_finished_messages_are_kept_for_the_retention_setting(redis_server):
    store = open_store(redis_server.url, retention_days=14)
    client = redis.Redis.from_url(redis_server.url)
    store.record([entry("wamid.2")])
    job = store.claim("worker:1:0", LONG)
    store.finish(job.id, job.holder, "done")
    assert 14 * 86400 < client.ttl("whatsapp:m:wamid.2") <= 15 * 86400 + 1
    client.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used: unlike wall time, not stretched by a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_redis_claims_stay_fast_with_thousands_of_open_messages(redis_server, redis_store):
    now = time.time()
    redis_store.record(
        [entry(f"wamid.{n}", sender=f"1555{n % 2000:06d}", ts=1_700_000_000 + n, received_at=now) for n in range(6000)]
    )
    server_cpu = cpu_seconds(redis_server.process.pid)
    claimed = []
    for n in range(500):
        job = redis_store.claim(f"worker:1:{n}", LONG)
        claimed.append(job.id)
        if n % 2:
            redis_store.finish(job.id, job.holder, "done")
    server_cpu = cpu_seconds(redis_server.process.pid) - server_cpu
    assert len(set(claimed)) == 500
    assert claimed[:3] == ["wamid.0", "wamid.1", "wamid.2"]  # oldest heads first
    print(f"500 claims and 250 finishes took {server_cpu:.3f}s of the server's CPU")
    assert server_cpu < 1.0, f"500 claims and 250 finishes took {server_cpu:.2f}s of the server's CPU"


def test_redis_unavailable_raises_store_unavailable_and_recovers_by_itself():
    with RedisServer() as server:
        opened = RedisStore(server.url)
        opened.record([entry("wamid.before")])
        server.stop()
        for call in (
            lambda: opened.record([entry("wamid.during")]),
            lambda: opened.claim("worker:1:0", LONG),
            opened.stats,
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                call()
            assert time.monotonic() - started < 3  # a quick 503, not a hung webhook
        server.start()
        assert opened.record([entry("wamid.after")]) == [True]  # the same store, no restart
        assert opened.record([entry("wamid.before")]) == [False]  # what was recorded before is still there
        assert opened.stats().counts["received"] == 2
        opened.close()


def test_redis_store_is_chosen_by_url_and_keeps_instances_apart_by_prefix(redis_server, redis_store):

    opened = open_store(redis_server.url)
    assert isinstance(opened, RedisStore)
    other = RedisStore(redis_server.url, prefix="other-service:")
    opened.record([entry("wamid.1")])
    assert other.record([entry("wamid.1")]) == [True]
    assert collections.Counter(s.claim("worker:1:0", LONG).id for s in (opened, other)) == {"wamid.1": 2}
    opened.close()
    other.close()


def test_redis_url_chooses_redis_when_store_url_is_not_set(tmp_path):
    from whatsapp.config import load_settings

    live = {  # a live deployment: the sandbox never runs on Redis
        "AK_WHATSAPP__ACCESS_TOKEN": "token",
        "AK_WHATSAPP__VERIFY_TOKEN": "verify",
        "AK_WHATSAPP__APP_SECRET": "secret",
        "AK_WHATSAPP__PHONE_NUMBER_ID": "106540352242922",
    }
    heroku = load_settings(
        {**live, "REDIS_URL": "rediss://:secret@redis.example:6380"}, dotenv_path=None, instance_path=tmp_path
    )
    assert heroku.store.url == "rediss://:secret@redis.example:6380"
    explicit = load_settings(
        {"REDIS_URL": "redis://elsewhere:6379", "AK_STORE__URL": "sqlite:///x.db"}, dotenv_path=None
    )
    assert explicit.store.url == "sqlite:///x.db"
    default = load_settings({}, dotenv_path=None, instance_path=tmp_path)
    assert default.store.url.startswith("sqlite:///")


def test_resolve_finds_a_message_by_the_tag_logs_show_in_any_state(store):
    store.record([entry("wamid.done"), entry("wamid.open", sender="15550002")])
    job = store.claim("worker:1:0", LONG)
    assert job.id == "wamid.done" and store.finish(job.id, job.holder, "done")
    for message_id in ("wamid.open", "wamid.done"):
        assert store.resolve(tag(message_id)) == message_id
        assert store.resolve(message_id) == message_id
    assert store.resolve("m-0000000000") == "m-0000000000"
    assert sorted(store.message_ids()) == ["wamid.done", "wamid.open"]


@pytest.fixture(params=["sqlite", "redis"])
def forgetful_store(request, tmp_path) -> Iterator[Store]:
    """A store that forgets a conversation nobody continued for one second (30 days in production)."""
    if request.param == "sqlite":
        opened: Store = SQLiteStore(tmp_path / "store.db", history_ttl=1.0)
    else:
        server = request.getfixturevalue("redis_server")
        redis.Redis.from_url(server.url).flushall()
        opened = RedisStore(server.url, history_ttl=1.0)
    yield opened
    opened.close()


def test_a_conversation_nobody_continued_within_the_history_ttl_is_forgotten(forgetful_store):
    store = forgetful_store
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    store.record([entry("wamid.old", sender="15550001")])
    store.claim("worker:1:0", LONG)
    store.save_answer("wamid.old", "worker:1:0", "15550001", "hello", turns, {"agent": "billing"})
    deadline = time.monotonic() + 10
    while store.history("15550001") or store.session("15550001"):  # prune runs hourly; Redis keys expire
        assert time.monotonic() < deadline, "the idle conversation is still kept"
        store.prune(time.time() - 86400)
        time.sleep(0.1)
    store.record([entry("wamid.new", sender="15550002")])
    store.claim("worker:1:1", LONG)
    store.save_answer("wamid.new", "worker:1:1", "15550002", "hello", turns, {"agent": "billing"})
    store.prune(time.time() - 86400)
    assert store.history("15550002") == turns and store.session("15550002") == {"agent": "billing"}
