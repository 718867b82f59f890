"""Background work: up to ``worker.threads`` jobs at once per process, fed by one dispatcher that claims from the store.

Nothing is queued in memory: the dispatcher claims a message only when one of the process's slots is free, so a
backlog stays in the store (durable, and visible to every other process) and memory does not grow with it. A job
mostly waits (on the model, on Graph), so the slots are many and the threads behind them are started as work
arrives and stop when it is gone (:mod:`whatsapp.pool`). The store's claim keeps one customer's messages one at a
time and oldest first, across threads and processes. The dispatcher also renews the leases of all running jobs in
one write and releases messages whose holder died (a ``kill -9``), so they are answered at once.
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
from .store import Job, State, Store

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
            self._run(job)
        finally:
            current_message.reset(token)
            self._running.pop(slot, None)
            self._finishing.discard(job.id)
        return job

    # the dispatcher ----------------------------------------------------------------------------------------------

    def holder(self, slot: int) -> str:
        return f"{self.host}:{os.getpid()}:{slot}"

    def _dispatch(self) -> None:
        next_renewal = next_sweep = next_prune = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
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
            self._run(job)
        except Exception:  # never lose the slot; the lease or the sweep brings the message back
            log.exception("message %s: unexpected error in the worker", tag(job.id))
        finally:
            current_message.reset(token)
            self._running.pop(slot, None)
            self._finishing.discard(job.id)
            self._free.put(slot)
            self._wake.set()

    def _run(self, job: Job) -> None:
        now = time.time()
        attempt = Attempt(
            job.attempts, job.holder, now, since_received=round(now - job.received_at, 6), state=job.state
        )
        token = current_attempt.set(attempt)
        try:
            self._attempt(job, attempt)
        finally:
            current_attempt.reset(token)
            self._keep(job, attempt)

    def _keep(self, job: Job, attempt: Attempt) -> None:
        """Keep the attempt for ``flask whatsapp show``; a store hiccup here costs the record, never the job."""
        if attempt.outcome is None:
            attempt.end("error", "unexpected error in the worker")
        try:
            self.store.record_attempt(job.id, attempt.number, attempt.as_dict())
        except StoreUnavailable as error:
            log.error("message %s: could not keep the record of attempt %d: %s", tag(job.id), attempt.number, error)

    def _attempt(self, job: Job, attempt: Attempt) -> None:
        if job.attempts > self.settings.max_attempts:
            reason = f"gave up after {job.attempts - 1} attempts; last: {job.reason or 'the worker died'}"
            self._fail(job, reason, None)
            return
        started = time.monotonic()
        try:
            self.handler.process(job)
        except Exception as error:
            self._after_error(job, error)
            return
        self._finishing.add(job.id)  # from here a renewal that finds the claim gone is no news
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
