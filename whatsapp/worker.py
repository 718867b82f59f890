"""Background work: up to ``worker.threads`` jobs at once per process, fed by one dispatcher that claims from the store.

Nothing is queued in memory: the dispatcher claims a message only when one of the process's slots is free, so a
backlog stays in the store (durable, and visible to every other process) and memory does not grow with it. A job
mostly waits (on the model, on Graph), so the slots are many and the threads behind them are started as work
arrives and stop when it is gone (:mod:`whatsapp.pool`). The store's claim keeps one customer's messages one at a
time and oldest first, across threads and processes. The dispatcher also renews the leases of all running jobs in
one write and releases messages whose holder died (a ``kill -9``), so they are answered at once.

An attempt has a deadline, ``worker.job_timeout``: a tool is plain Python and may block forever (an HTTP call
without a timeout), and renewing its lease for as long as the process lives would keep its customer waiting
forever. Past the deadline the dispatcher stops renewing that lease and releases the message as a transient
failure, so it is retried within the budget. Python cannot stop the stuck thread: it keeps its slot (so its holder
name stays its own and the store refuses whatever it writes once it returns) and, when it returns, nothing of it is
sent, recorded or counted.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
from contextvars import ContextVar
from typing import Protocol

from . import metrics
from .attempts import Attempt, current_attempt
from .config import WorkerSettings
from .errors import LostClaim, StoreUnavailable
from .failures import describe, failure_class
from .pool import ElasticPool
from .privacy import tag
from .processes import pid_alive
from .store import AttemptRecord, Job, State, Store

log = logging.getLogger("whatsapp.worker")

#: The message the current worker thread is answering, so that log lines of other libraries can name it.
current_message: ContextVar[str | None] = ContextVar("current_message", default=None)

POLL_INTERVAL = 1.0  # how often an idle process looks for messages recorded by other processes
SWEEP_INTERVAL = 5.0  # how often it looks for claims whose holder died
PRUNE_INTERVAL = 3600.0
WARM_THREADS = 4  # threads kept started while idle, so that the first message does not wait for one to start


class JobHandler(Protocol):
    """All the worker knows of what answers a message (``AgentWhatsAppRequestHandler`` is one): it never imports the
    pipeline, so a test or a tool can drive the worker with any object that has these three methods."""

    def process(self, job: Job) -> None: ...
    def give_up(self, job: Job, error: BaseException | None) -> None: ...
    def is_transient(self, error: BaseException) -> bool: ...


def retry_delay(attempt: int, base: float) -> float:
    """Backoff after the ``attempt``-th failure: base, 3x base, 9x base... with 20 % jitter."""
    return base * 3 ** (attempt - 1) * random.uniform(0.8, 1.2)


class Worker:
    def __init__(
        self, store: Store, handler: JobHandler, settings: WorkerSettings, *, retention_days: float = 7.0
    ) -> None:
        self.store = store
        self.handler = handler
        self.settings = settings
        self.retention_days = retention_days
        self.host = socket.gethostname()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._started_pid: int | None = None
        self._running: dict[int, Job] = {}  # slot -> the job its thread (or run_once) is answering
        self._finishing: set[str] = set()  # running jobs whose claim is being given up (finished, retried...)
        self._started: dict[int, float] = {}  # slot -> when its attempt began (time.monotonic())
        self._attempts: dict[int, Attempt] = {}  # slot -> its attempt, for the record the deadline leaves
        self._overdue: dict[int, Job] = {}  # slot -> the job its thread still runs after the deadline gave it up
        self._lock = threading.Lock()  # the deadline giving a job up vs. its thread ending it
        self._claiming = True

    # lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher in this process (again after a fork: threads do not survive one)."""
        if self._started_pid == os.getpid():
            return
        self._started_pid = os.getpid()
        self._stopping.clear()
        self._claiming = True
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(self.settings.threads):
            self._free.put(slot)
        self._running = {}
        self._finishing = set()
        self._started = {}
        self._attempts = {}
        self._overdue = {}
        self._pool = ElasticPool("whatsapp-worker", self.settings.threads, keep=WARM_THREADS)
        self._pool.warm()
        self._dispatcher = threading.Thread(target=self._dispatch, name="whatsapp-dispatcher", daemon=True)
        self._dispatcher.start()
        log.info(
            "worker started: %d threads in process %d, started as work arrives", self.settings.threads, os.getpid()
        )

    def notify(self) -> None:
        """New messages were recorded: look now rather than at the next poll."""
        self._wake.set()

    def stop_claiming(self) -> None:
        """Claim nothing more (safe in a signal handler): on SIGTERM, before the process gets to :meth:`stop`, so
        that a message another process releases at its own shutdown is not taken by one that is stopping too."""
        self._claiming = False

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish within ``timeout``, then release what is still running."""
        if self._started_pid != os.getpid() or self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + (self.settings.shutdown_timeout if timeout is None else timeout)
        self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        self._pool.join(max(0.0, deadline - time.monotonic()))
        for slot, job in list(self._running.items()):
            try:
                self.store.release(job.id, job.holder, refund_attempt=True)
                log.warning("message %s: released at shutdown; the next process takes it", tag(job.id))
            except StoreUnavailable as error:
                log.error("message %s: could not release at shutdown (%s); its lease will expire", tag(job.id), error)
            self._running.pop(slot, None)
        log.info("worker stopped in process %d", os.getpid())

    @property
    def running(self) -> int:
        return len(self._running) if self._started_pid == os.getpid() else 0

    def run_once(self, slot: int = 0) -> Job | None:
        """Claim one message as ``slot`` and answer it in the calling thread; None when nothing could be claimed.

        As rq's worker runs one job on demand: for tests and tools that drive a worker step by step, on a worker whose
        threads are not started (they would use the same slots). Retries, failures and apologies are as in a thread.
        """
        job = self._claim(slot)
        if job is None:
            return None
        self._running[slot] = job  # so that a sweep in this process sees the holder alive
        token = current_message.set(job.id)
        try:
            self._run(slot, job)
        finally:
            current_message.reset(token)
            self._end(slot, job)
        return job

    # the dispatcher ----------------------------------------------------------------------------------------------

    def holder(self, slot: int) -> str:
        return f"{self.host}:{os.getpid()}:{slot}"

    def _dispatch(self) -> None:
        next_renewal = next_sweep = next_prune = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            self._give_up_overdue(now)
            if now >= next_renewal:
                self._renew_leases()
                next_renewal = now + self.settings.lease_seconds / 3
            if now >= next_sweep:
                self.release_dead_holders()
                next_sweep = now + SWEEP_INTERVAL
            if now >= next_prune:
                self._prune()
                next_prune = now + PRUNE_INTERVAL
            try:
                slot = self._free.get(timeout=min(POLL_INTERVAL, self.settings.lease_seconds / 3))
            except queue.Empty:
                continue  # every thread is busy: the backlog waits in the store
            job = self._claim(slot)
            if job is None:
                self._free.put(slot)
                self._wake.wait(POLL_INTERVAL)
                self._wake.clear()
                continue
            self._running[slot] = job
            self._started[slot] = time.monotonic()
            self._pool.submit(self._run_slot, slot, job)

    def _claim(self, slot: int) -> Job | None:
        if self._stopping.is_set() or not self._claiming:
            return None
        try:
            job = self.store.claim(self.holder(slot), self.settings.lease_seconds)
        except StoreUnavailable as error:
            log.error("could not claim from the store: %s", error)
            return None
        if job is not None:
            log.info(
                "message %s: claimed by %s (attempt %d)",
                tag(job.id),
                job.holder,
                job.attempts,
                extra={"tag": tag(job.id), "state": State.CLAIMED, "attempt": job.attempts, "holder": job.holder},
            )
        return job

    def _renew_leases(self) -> None:
        running = list(self._running.items())
        if not running:
            return
        try:
            held = self.store.renew_all({job.id: job.holder for _, job in running}, self.settings.lease_seconds)
        except StoreUnavailable as error:
            log.error("could not renew the leases of %d running jobs: %s", len(running), error)
            return
        for slot, job in running:
            if job.id not in held and self._running.get(slot) is job and job.id not in self._finishing:
                log.warning("message %s: lease lost; another worker may take it over", tag(job.id))

    def _give_up_overdue(self, now: float) -> None:
        """Release, as a transient failure, every running attempt older than ``worker.job_timeout``.

        Its lease is no longer renewed and its claim is gone, so the message is retried (or, past the budget,
        fails with the apology at its next claim) and the customer's later messages flow. Its thread keeps the
        slot until it returns: another claim under the same holder name would let the stuck thread write again.
        """
        timeout = self.settings.job_timeout
        for slot, started in list(self._started.items()):
            if now - started <= timeout:
                continue
            with self._lock:
                job = self._running.get(slot)
                if job is None or job.id in self._finishing or slot in self._overdue:
                    continue
                reason = f"attempt ran past worker.job_timeout ({timeout:g} s)"
                try:
                    self.store.retry_later(
                        job.id, job.holder, reason, retry_delay(job.attempts, self.settings.retry_delay)
                    )
                except StoreUnavailable as error:
                    log.error("message %s: could not give up its attempt past the deadline: %s", tag(job.id), error)
                    continue
                self._overdue[slot] = self._running.pop(slot)
                self._started.pop(slot, None)
                attempt = self._attempts.get(slot)
            if attempt is not None:
                self._keep(job, attempt.ended("retry", reason))
            metrics.RETRIES.inc()
            stuck = len(self._overdue)
            log.warning(
                "message %s: attempt %d ran past worker.job_timeout (%g s); released for a retry. Its thread cannot "
                "be stopped and keeps its slot until it returns (%d of %d threads stuck)",
                tag(job.id),
                job.attempts,
                timeout,
                stuck,
                self.settings.threads,
                extra={"tag": tag(job.id), "attempt": job.attempts},
            )
            if stuck >= self.settings.threads:
                log.error(
                    "every one of the %d worker threads is stuck past worker.job_timeout: this process answers "
                    "nothing until one returns or it is restarted",
                    self.settings.threads,
                )
            self._wake.set()

    def release_dead_holders(self) -> None:
        """Release the claims whose holder died, so that they are answered at once (the dispatcher does it every
        few seconds)."""
        try:
            released = self.store.release_holders(self._holder_is_dead)
        except StoreUnavailable as error:
            log.error("could not look for abandoned claims: %s", error)
            return
        for message_id in released:
            log.warning("message %s: its holder died; released for another attempt", tag(message_id))
        if released:
            self._wake.set()

    def _holder_is_dead(self, holder: str) -> bool:
        """Only holders on this host can be checked; elsewhere the lease expiry decides."""
        host, _, rest = holder.partition(":")
        pid_text, _, slot_text = rest.partition(":")
        if host != self.host or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            running = self._running.get(int(slot_text)) if slot_text.isdigit() else None
            return running is None or running.holder != holder
        return not pid_alive(pid)

    def _prune(self) -> None:
        try:
            pruned = self.store.prune(time.time() - self.retention_days * 86400)
        except StoreUnavailable as error:
            log.error("could not prune old messages: %s", error)
            return
        if pruned:
            log.info("pruned %d finished messages older than %g days", pruned, self.retention_days)

    # the threads -------------------------------------------------------------------------------------------------

    def _run_slot(self, slot: int, job: Job) -> None:
        token = current_message.set(job.id)
        try:
            self._run(slot, job)
        except Exception:  # never lose the slot; the lease or the sweep brings the message back
            log.exception("message %s: unexpected error in the worker", tag(job.id))
        finally:
            current_message.reset(token)
            self._end(slot, job)
            self._free.put(slot)
            self._wake.set()

    def _end(self, slot: int, job: Job) -> None:
        """The slot's thread is done with ``job``: forget it, and say so when the deadline had given it up."""
        with self._lock:
            overdue = self._overdue.pop(slot, None) is job
            self._running.pop(slot, None)
            self._started.pop(slot, None)
            self._attempts.pop(slot, None)
            if not overdue:  # else the id may be a later attempt's, on another slot
                self._finishing.discard(job.id)
        if overdue:
            log.warning(
                "message %s: attempt %d returned after worker.job_timeout gave it up; nothing of it was kept",
                tag(job.id),
                job.attempts,
            )

    def _given_up(self, slot: int, job: Job) -> bool:
        """Whether the deadline gave this attempt up; if not, it may no longer: its thread is ending it."""
        with self._lock:
            if self._overdue.get(slot) is job:
                return True
            self._finishing.add(job.id)  # from here a renewal that finds the claim gone is no news
            return False

    def _run(self, slot: int, job: Job) -> None:
        now = time.time()
        attempt = Attempt(
            job.attempts, job.holder, now, since_received=round(now - job.received_at, 6), state=job.state
        )
        self._attempts[slot] = attempt
        token = current_attempt.set(attempt)
        try:
            self._attempt(slot, job, attempt)
        finally:
            current_attempt.reset(token)
            if self._overdue.get(slot) is not job:  # else the deadline kept its record
                if attempt.record.outcome is None:
                    attempt.end("error", "unexpected error in the worker")
                self._keep(job, attempt.record)

    def _keep(self, job: Job, record: AttemptRecord) -> None:
        """Keep the attempt for ``flask whatsapp show``; a store hiccup here costs the record, never the job."""
        try:
            self.store.record_attempt(job.id, record)
        except StoreUnavailable as error:
            log.error("message %s: could not keep the record of attempt %d: %s", tag(job.id), record.number, error)

    def _attempt(self, slot: int, job: Job, attempt: Attempt) -> None:
        if job.attempts > self.settings.max_attempts:
            reason = f"gave up after {job.attempts - 1} attempts; last: {job.reason or 'the worker died'}"
            self._fail(job, reason, None)
            return
        started = time.monotonic()
        try:
            self.handler.process(job)
        except Exception as error:
            if not self._given_up(slot, job):
                self._after_error(job, error)
            return
        if self._given_up(slot, job):
            return
        if self.store.finish(job.id, job.holder, State.DONE):
            attempt.end("done")
            metrics.ANSWERED.inc()
            log.info("message %s: done in %.3fs", tag(job.id), time.monotonic() - started)
        else:
            attempt.end("lost", "finished after its claim was lost")
            log.warning("message %s: finished after its claim was lost", tag(job.id))

    def _after_error(self, job: Job, error: Exception) -> None:
        reason = describe(error)
        attempt = current_attempt.get()
        if isinstance(error, LostClaim):
            if attempt:
                attempt.end("lost", reason)
            log.warning("message %s: claim lost mid-job; stopping without sending more", tag(job.id))
        elif self.handler.is_transient(error) and job.attempts < self.settings.max_attempts:
            delay = retry_delay(job.attempts, self.settings.retry_delay)
            if attempt:
                attempt.end("retry", reason)
            metrics.RETRIES.inc()
            log.warning(
                "message %s: attempt %d failed (%s); retrying in %.1fs", tag(job.id), job.attempts, reason, delay
            )
            self._finishing.add(job.id)
            self.store.retry_later(job.id, job.holder, reason, delay)
        else:
            self._fail(job, reason, error)

    def _fail(self, job: Job, reason: str, error: BaseException | None) -> None:
        try:
            self.handler.give_up(job, error)
        except Exception as apology_error:
            log.error("message %s: could not send the apology: %s", tag(job.id), apology_error)
        self._finishing.add(job.id)
        self.store.finish(job.id, job.holder, State.FAILED, reason)
        metrics.FAILED.labels(reason=failure_class(error)).inc()
        attempt = current_attempt.get()
        if attempt:
            attempt.end("failed", reason)
        log.error("message %s: failed: %s", tag(job.id), reason)
