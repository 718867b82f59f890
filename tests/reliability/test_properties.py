"""Property: whatever the interleaving of deliveries, duplicates, crashes and restarts, every recorded message is
answered exactly once, in per-customer order.

In-process and deterministic: the real ``SQLiteStore``, ``Worker`` and handler, driven one step at a time through
the worker's public ``run_once`` and ``release_dead_holders``, with a Graph client and a model that record what they
were asked. A "process" is a ``Worker`` with a made-up pid; it crashes by raising :class:`SimulatedCrash` at a chosen
point of a job (nothing after that line runs, as with ``kill -9``), after which its pid is reported dead and its
claims are left for another worker's sweep. A claim held across other steps is a ``run_once`` on its own thread,
paused right after the store handed it the message; only one thread ever moves at a time.
"""

from __future__ import annotations

import itertools
import os
import queue
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import openai
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from whatsapp import GraphAPIError
from whatsapp.agents_runtime import Agent, RunContextWrapper, RunResult
from whatsapp.config import Settings, WhatsAppSettings, WorkerSettings
from whatsapp.handler import APOLOGY, AgentWhatsAppRequestHandler
from whatsapp.store import InboxEntry, Job
from whatsapp.store.sqlite import SQLiteStore
from whatsapp.testing import webhooks as wh
from whatsapp.worker import Worker

SENDERS = ("4915112345678", "447700900123", "16315551234")
MAX_ATTEMPTS = 2  # small, so that some messages use up their budget and fail
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # a RAM disk keeps synchronous=FULL cheap


class SimulatedCrash(BaseException):
    """The process dies here. Not an ``Exception``, so no handler or worker code catches it."""


@dataclass(frozen=True)
class Fault:
    kind: str  # "crash" or "error"
    point: str  # "model" (before it answers), "answered" (after, before the answer is saved), "send"
    nth: int = 0  # which call at that point, within one job


@dataclass
class Sent:
    to: str
    body: str
    reply_to: str | None


@dataclass
class World:
    """Everything the fakes saw, and the faults to inject into the job being run."""

    store: SQLiteStore
    sent: list[Sent] = field(default_factory=list)
    fault: Fault | None = None
    calls: Counter = field(default_factory=Counter)
    tags: dict[str, str] = field(default_factory=dict)  # message text (its tag) -> message id
    violations: list[str] = field(default_factory=list)
    errors_injected: set[str] = field(default_factory=set)  # message ids that met an injected error
    disrupted: Counter = field(default_factory=Counter)  # message id -> claims that ended in a fault or a crash
    current: str | None = None
    finished: Counter = field(default_factory=Counter)  # (message id, state) -> successful finish() calls

    def inject(self, point: str) -> None:
        nth = self.calls[point]
        self.calls[point] += 1
        fault = self.fault
        if fault is None or (fault.point, fault.nth) != (point, nth):
            return
        self.fault = None
        self.disrupted[self.current] += 1
        if fault.kind == "crash":
            raise SimulatedCrash(point)
        self.errors_injected.add(self.current or "?")
        if point == "send":
            raise GraphAPIError("(#131000) Something went wrong", status=500, code=131000)
        raise openai.APIConnectionError(request=None)  # type: ignore[arg-type]  # only stored


class RecordingClient:
    def __init__(self, world: World) -> None:
        self.world = world

    def send_message(self, to: str, message: dict, reply_to: str | None = None) -> str:
        self.world.inject("send")
        self.world.sent.append(Sent(to, message["text"]["body"], reply_to))
        return f"wamid.sent.{len(self.world.sent)}"

    def mark_read(self, message_id: str, typing: bool = False) -> None:
        pass


class RecordingModel:
    """Answers message ``m7`` with the words ``m7w000 m7w001 ...``: long ones need two parts."""

    def __init__(self, world: World) -> None:
        self.world = world

    def run(self, agent: Any, input: list[dict], context: Any) -> RunResult:
        content = input[-1]["content"]
        tag, _, size = str(content).partition(" ")
        message_id = self.world.tags[tag]
        if self.world.store.get(message_id).answer is not None:
            self.world.violations.append(f"the model was asked again for {message_id}, whose answer was stored")
        self.world.inject("model")
        text = answer(tag, long=size == "long")
        self.world.inject("answered")
        answer_item = {"role": "assistant", "content": text}
        return RunResult(input, [answer_item], text, agent, RunContextWrapper(context))


def answer(tag: str, long: bool) -> str:
    return " ".join(f"{tag}w{n:03d}" for n in range(700 if long else 3))


class SimulatedWorker(Worker):
    """A worker "process" run step by step by the test: a made-up pid, its threads never started."""

    def __init__(self, store: SQLiteStore, handler: AgentWhatsAppRequestHandler, pid: int) -> None:
        super().__init__(store, handler, WorkerSettings(threads=2, max_attempts=MAX_ATTEMPTS, retry_delay=0.0))
        self.pid = pid

    def holder(self, slot: int) -> str:
        return f"{self.host}:{self.pid}:{slot}"


STEP_TIMEOUT = 30.0  # a paused claim's thread answers in microseconds; this only turns a hang into a failure


@dataclass
class HeldClaim:
    """A ``run_once`` on its own thread, paused right after its claim until the test says run (with a fault) or die."""

    worker: SimulatedWorker
    slot: int
    holding: threading.local  # where the claim in the store finds the held claim of its thread
    job: Job | None = None
    crashed_at: str | None = None
    paused: threading.Event = field(default_factory=threading.Event)  # claimed (or found nothing), or finished
    orders: queue.Queue = field(default_factory=queue.Queue)  # a Fault or None to run, "die" to crash
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run_once, daemon=True)
        self.thread.start()
        assert self.paused.wait(STEP_TIMEOUT), "a held claim's thread never reached its claim"

    def _run_once(self) -> None:
        self.holding.claim = self
        try:
            self.worker.run_once(self.slot)
        except SimulatedCrash as crash:
            self.crashed_at = str(crash)
        finally:
            self.paused.set()

    def finish(self) -> None:
        assert self.thread is not None
        self.thread.join(STEP_TIMEOUT)
        assert not self.thread.is_alive(), f"a held claim's thread never finished {self.job and self.job.id}"


# the operations ---------------------------------------------------------------------------------------------------

faults = st.none() | st.builds(
    Fault, st.sampled_from(["crash", "error"]), st.sampled_from(["model", "answered", "send"]), st.integers(0, 1)
)
ARGUMENTS = {
    "deliver": (st.integers(0, len(SENDERS) - 1), st.integers(-2, 2), st.booleans()),  # sender, timestamp skew, long
    "redeliver": (st.integers(0, 100),),
    "work": (st.integers(0, 10), faults),  # claim and run at once: the common case
    "claim": (st.integers(0, 10),),
    "run": (st.integers(0, 10), faults),
    "crash": (st.integers(0, 10),),
    "restart": (),
    "sweep": (st.integers(0, 10),),
}
WEIGHTS = {"deliver": 4, "redeliver": 1, "work": 4, "claim": 2, "run": 2, "crash": 1, "restart": 1, "sweep": 1}


@st.composite
def operation(draw: st.DrawFn) -> tuple:
    name = draw(st.sampled_from([name for name, weight in WEIGHTS.items() for _ in range(weight)]))
    return (name, *(draw(argument) for argument in ARGUMENTS[name]))


operations = st.lists(operation(), min_size=15, max_size=80)


class Simulation:
    def __init__(self, store: SQLiteStore, world: World) -> None:
        self.store = store
        self.world = world
        handler_settings = Settings(whatsapp=WhatsAppSettings(rate_limit_per_minute=10**6, typing_indicator=False))
        self.handler = AgentWhatsAppRequestHandler(
            settings=handler_settings,
            store=store,
            client=RecordingClient(world),  # type: ignore[arg-type]
            runner=RecordingModel(world),  # type: ignore[arg-type]
            agents={"general": Agent(name="general")},
            transcribe=lambda audio, filename, mime_type: "",
        )
        self.pids = itertools.count(4_000_001)
        self.dead: set[int] = set()
        self.workers: list[SimulatedWorker] = []
        self.claimed: list[HeldClaim] = []
        self.holding = threading.local()
        self.last_claimed: Job | None = None
        self.entries: list[InboxEntry] = []
        self.clock = itertools.count(1_700_000_000, 3)
        self.original_claim = store.claim
        store.claim = self.claim_in_store  # type: ignore[method-assign]
        self.restart()
        self.restart()

    def claim_in_store(self, holder: str, lease_seconds: float) -> Job | None:
        """Every claim goes through here: check the order, then pause if this claim is to be held."""
        job = self.original_claim(holder, lease_seconds)
        if job is None:
            return None
        self.check_claim(job)
        self.last_claimed = job
        held: HeldClaim | None = getattr(self.holding, "claim", None)
        if held is not None:
            held.job = job
            held.paused.set()
            order = held.orders.get()
            if order == "die":
                raise SimulatedCrash("claimed")
            self.world.fault = order
        self.world.calls, self.world.current = Counter(), job.id
        return job

    # steps

    def deliver(self, sender: int, ts_delta: int, long: bool) -> None:
        tag = f"m{len(self.entries)}"
        message = wh.text_message(f"{tag} long" if long else tag, sender=SENDERS[sender])
        message["timestamp"] = str(next(self.clock) + ts_delta)
        value = wh.webhook(message)["entry"][0]["changes"][0]["value"]
        entry = InboxEntry(
            id=message["id"],
            sender=message["from"],
            timestamp=int(message["timestamp"]),
            payload={"message": message, "value": value},
            received_at=time.time(),
        )
        assert self.store.record([entry]) == [True]
        self.entries.append(entry)
        self.world.tags[tag] = entry.id

    def redeliver(self, index: int) -> None:
        if self.entries:
            assert self.store.record([self.entries[index % len(self.entries)]]) == [False]

    def work(self, index: int, fault: Fault | None) -> None:
        slot = self.free_slot(index)
        if slot is None:
            return
        worker, slot = slot
        self.world.fault, self.last_claimed = fault, None
        try:
            worker.run_once(slot)
        except SimulatedCrash as crash:
            event(f"a worker crashed at {crash}")
            self.crash_worker(worker)
        finally:
            self.world.fault = self.world.current = None
        self.note_resumed()

    def claim(self, index: int) -> None:
        slot = self.free_slot(index)
        if slot is None:
            return
        held = HeldClaim(*slot, self.holding)
        self.last_claimed = None
        held.start()
        if held.job is None:  # nothing claimable: run_once returned at once
            held.finish()
            return
        self.note_resumed()
        self.claimed.append(held)

    def run(self, index: int, fault: Fault | None) -> None:
        if not self.claimed:
            return
        held = self.claimed.pop(index % len(self.claimed))
        held.orders.put(fault)
        try:
            held.finish()
        finally:
            self.world.fault = self.world.current = None
        if held.crashed_at is not None:
            event(f"a worker crashed at {held.crashed_at}")
            self.crash_worker(held.worker)

    def crash(self, index: int) -> None:
        if self.workers:
            self.crash_worker(self.workers[index % len(self.workers)])

    def restart(self) -> None:
        self.workers.append(SimulatedWorker(self.store, self.handler, next(self.pids)))

    def sweep(self, index: int) -> None:
        if self.workers:
            self.workers[index % len(self.workers)].release_dead_holders()

    def crash_worker(self, worker: SimulatedWorker) -> None:
        self.dead.add(worker.pid)
        self.workers = [w for w in self.workers if w is not worker]
        for held in [held for held in self.claimed if held.worker is worker]:
            assert held.job is not None
            self.world.disrupted[held.job.id] += 1  # claimed, never run: that attempt is spent
            held.orders.put("die")
            held.finish()
        self.claimed = [held for held in self.claimed if held.worker is not worker]

    def abandon(self) -> None:
        """End the threads of claims still held when an example stops early (a failed assertion)."""
        for held in self.claimed:
            held.orders.put("die")
            held.finish()
        self.claimed = []

    # helpers

    def free_slot(self, index: int) -> tuple[SimulatedWorker, int] | None:
        if not self.workers:
            return None
        worker = self.workers[index % len(self.workers)]
        busy = {held.slot for held in self.claimed if held.worker is worker}
        free = [slot for slot in range(worker.settings.threads) if slot not in busy]
        return (worker, free[0]) if free else None

    def note_resumed(self) -> None:
        if self.last_claimed is not None and self.last_claimed.answer is not None:
            event("a job resumed with its answer stored")

    def drain(self) -> None:
        """Finish what live workers hold, then let a fresh worker sweep and work until nothing is left."""
        while self.claimed:
            self.run(0, None)
        self.restart()
        self.sweep(-1)
        for _ in range(10 * len(self.entries) + 10):
            self.claim(-1)
            if not self.claimed:
                break
            self.run(0, None)

    # what must hold

    def check_claim(self, job: Job) -> None:
        """One customer at a time: a message whose answer has begun first, then oldest first (Meta's timestamp,
        then arrival)."""
        rows = self.store._read("SELECT id, ts, seq, state, holder FROM inbox WHERE sender = ?", (job.sender,))

        def rank(row: Any) -> tuple[bool, int, int]:
            return (row["state"] != "answered", row["ts"], row["seq"])

        mine = next(row for row in rows if row["id"] == job.id)
        for row in rows:
            if row["id"] == job.id:
                continue
            if row["holder"] is not None:
                self.world.violations.append(f"{job.id} claimed while {row['id']} of the same customer is claimed")
            if rank(row) < rank(mine) and row["state"] not in ("done", "failed"):
                self.world.violations.append(f"{job.id} claimed before {row['id']}, which was ahead of it")


def sends_of(world: World) -> dict[str, list[Sent]]:
    """Every send, attributed to its message: by its words (answer parts) or by what it replies to (apologies)."""
    owned: dict[str, list[Sent]] = defaultdict(list)
    for sent in world.sent:
        first_word = sent.body.split(" ", 1)[0]
        owner = world.tags.get(first_word.split("w", 1)[0]) if sent.body != APOLOGY else sent.reply_to
        assert owner is not None, f"a send that belongs to no message: {sent.body[:80]!r}"
        owned[owner].append(sent)
    return owned


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_every_recorded_message_is_answered_exactly_once_in_per_customer_order(steps):
    with tempfile.TemporaryDirectory(dir=SHM) as folder:
        store = SQLiteStore(os.path.join(folder, "inbox.db"))
        world = World(store)
        original_finish = store.finish

        def finish(message_id: str, holder: str, state: str, reason: str | None = None) -> bool:
            done = original_finish(message_id, holder, state, reason)
            world.finished[(message_id, state)] += done
            return done

        store.finish = finish  # type: ignore[method-assign]
        simulation = Simulation(store, world)
        with mock.patch("whatsapp.worker.pid_alive", lambda pid: pid not in simulation.dead):
            try:
                for name, *arguments in steps:
                    getattr(simulation, name)(*arguments)
                simulation.drain()
            finally:
                simulation.abandon()
        try:
            check_outcome(simulation, world)
        finally:
            store.close()


def check_outcome(simulation: Simulation, world: World) -> None:
    assert world.violations == []
    states = Counter(simulation.store.get(entry.id).state for entry in simulation.entries)
    event(f"{len(simulation.entries) // 4 * 4}+ messages, {'some' if states['failed'] else 'none'} failed")
    owned = sends_of(world)
    for entry in simulation.entries:
        stored = simulation.store.get(entry.id)
        assert stored is not None and stored.state in ("done", "failed"), f"{entry.id} left {stored and stored.state}"
        state = stored.state
        assert world.finished[(entry.id, state)] == 1, f"{entry.id} finished {state} more than once"
        tag = str(entry.payload["message"]["text"]["body"]).split(" ")[0]
        expected = answer(tag, long=entry.payload["message"]["text"]["body"].endswith("long"))
        sent = owned.get(entry.id, [])
        words = [word for s in sent if s.body != APOLOGY for word in s.body.split()]
        apologies = [s for s in sent if s.body == APOLOGY]
        assert all(s.to == entry.sender for s in sent)
        assert len(words) == len(set(words)), f"{entry.id}: a part was sent twice"
        if state == "done":
            assert " ".join(words) == expected, f"{entry.id}: the answer did not arrive whole, once, in order"
            assert apologies == []
        else:
            assert expected.startswith(" ".join(words)), f"{entry.id}: parts out of order"
            assert len(apologies) <= 1
            assert world.disrupted[entry.id] >= MAX_ATTEMPTS, f"{entry.id} failed before its budget was spent"
            if entry.id not in world.errors_injected:
                assert len(apologies) == 1, f"{entry.id} failed without an apology"
    # A customer's messages never interleave: each one's sends come in one run.
    for sender in SENDERS:
        order = []
        for sent in world.sent:
            if sent.to != sender:
                continue
            owner = next(message_id for message_id, sends in owned.items() if any(s is sent for s in sends))
            if not order or order[-1] != owner:
                order.append(owner)
        assert len(order) == len(set(order)), f"{sender}'s replies interleave: {order}"


def test_run_once_answers_one_message_and_a_sweep_meanwhile_keeps_its_claim(tmp_path):
    store = SQLiteStore(str(tmp_path / "inbox.db"))
    states_during_the_job: list[str] = []

    class SweepingHandler:
        """Sweeps for dead holders from inside the job: this process is alive, so its claim must stay."""

        def process(self, job: Job) -> None:
            worker.release_dead_holders()
            states_during_the_job.append(store.get(job.id).state)

        def give_up(self, job: Job, error: BaseException | None) -> None:
            raise AssertionError(f"gave up on {job.id}: {error}")

        def is_transient(self, error: BaseException) -> bool:
            return False

    worker = Worker(store, SweepingHandler(), WorkerSettings(threads=1))
    message = wh.text_message("hello")
    entry = InboxEntry(message["id"], message["from"], int(message["timestamp"]), {"message": message}, time.time())
    try:
        assert worker.run_once() is None  # nothing recorded yet
        store.record([entry])
        job = worker.run_once()
        assert job is not None and job.id == entry.id
        assert states_during_the_job == ["claimed"]
        assert store.get(entry.id).state == "done"
        assert worker.run_once() is None
    finally:
        store.close()
