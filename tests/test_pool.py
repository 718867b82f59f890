"""The worker's elastic pool: as many threads as calls waiting, up to the bound; idle ones stop."""

from __future__ import annotations

import threading
import time

from whatsapp.pool import ElasticPool


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_threads_grow_with_the_calls_waiting_up_to_the_bound_then_idle_ones_stop():
    pool = ElasticPool("test", limit=10, keep=2, idle_seconds=0.2)
    pool.warm()
    assert pool.threads == 2
    release = threading.Event()
    running = []
    lock = threading.Lock()

    def call(n: int) -> None:
        with lock:
            running.append(n)
        release.wait(10)

    for n in range(25):
        pool.submit(call, n)
    wait_for(lambda: len(running) == 10)
    assert pool.threads == 10  # the bound; the other 15 calls wait for a thread
    release.set()
    wait_for(lambda: len(running) == 25)
    wait_for(lambda: pool.threads == 2)  # back to the threads kept warm
    assert pool.join(5)


def test_join_waits_for_running_calls_and_reports_those_past_the_timeout():
    pool = ElasticPool("test", limit=4)
    release = threading.Event()
    done = []
    pool.submit(lambda: (release.wait(10), done.append(1)))
    assert not pool.join(0.2)  # still running
    release.set()
    assert pool.join(5) and done == [1]
