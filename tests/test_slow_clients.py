"""Slow clients (issue 11, item 7) against the real service under gunicorn with the shipped ``gunicorn.conf.py``.

The attack: connections that send a request's first bytes and then trickle the rest, one byte at a time. gunicorn's
threaded worker gave each a thread until its head was complete, so 16 of them held every thread of the Procfile
setup (2 workers x 8 threads) and Meta's webhooks waited for as long as the attacker liked.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from whatsapp.testing import webhooks as wh

ATTACKERS = 64  # enough that both workers' 8 threads are taken, however the two share the connections


class Tricklers:
    """``count`` connections that each send a request's first line, then one header byte every ``interval``."""

    def __init__(self, port: int, count: int, interval: float = 0.5) -> None:
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /whatsapp/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
            self.sockets.append(sock)
        self.closed_at: dict[int, float] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, args=(interval,), daemon=True)
        self._thread.start()

    def _trickle(self, interval: float) -> None:
        while not self._stop.wait(interval):
            for n, sock in enumerate(self.sockets):
                if n in self.closed_at:
                    continue
                try:
                    sock.sendall(b"a")
                except OSError:  # the server closed it
                    self.closed_at[n] = time.monotonic() - self.started

    def wait_until_all_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.closed_at) < len(self.sockets) and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.closed_at) == len(self.sockets)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def tricklers() -> Iterator[list[Tricklers]]:
    made: list[Tricklers] = []
    yield made
    for attack in made:
        attack.stop()


def test_connections_trickling_headers_do_not_keep_a_webhook_waiting(start_service, fakes, tricklers):
    graph, model = fakes
    service = start_service(workers=2, threads=8)  # the Procfile's sizing, with gunicorn.conf.py
    attack = Tricklers(service.port, ATTACKERS)
    tricklers.append(attack)
    time.sleep(1.5)  # every trickler has sent several pieces: on the old worker each holds a thread by now
    slowest = 0.0
    for n in range(6):  # each lands on one worker or the other: all of them must be answered
        started = time.monotonic()
        answer = service.post(wh.webhook(wh.text_message(f"still there? {n}")))
        slowest = max(slowest, time.monotonic() - started)
        assert answer.status_code == 200
    assert slowest < 1.0, f"a webhook waited {slowest:.1f} s behind {ATTACKERS} trickling connections"
    replies = graph.wait_for_texts(6)
    assert sorted(reply["body"] for reply in replies) == [f"You said: still there? {n}" for n in range(6)]
    assert attack.closed_at == {}  # within the 10 s head deadline, nobody was cut off yet
    print(f"six webhooks acknowledged in at most {slowest * 1000:.1f} ms beside {ATTACKERS} trickling connections")


def test_a_head_that_takes_too_long_is_cut_off(start_service, fakes, tricklers):
    service = start_service(workers=1, threads=2, GUNICORN_CMD_ARGS="--worker-class tests.quick_timeouts.Worker")
    attack = Tricklers(service.port, 4, interval=0.25)
    tricklers.append(attack)
    assert attack.wait_until_all_closed(timeout=10), f"still open: {len(attack.sockets) - len(attack.closed_at)}"
    assert all(1.5 < at < 5 for at in attack.closed_at.values()), attack.closed_at  # the 2 s head deadline
    assert "its request head took over 2 s" in service.logs()


def test_a_silent_connection_is_closed_after_the_keepalive_idle_time(start_service, fakes):
    service = start_service(workers=1, threads=2)
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 6


def test_a_body_that_takes_too_long_is_answered_408(start_service, fakes):
    service = start_service(workers=1, threads=2, GUNICORN_CMD_ARGS="--worker-class tests.quick_timeouts.Worker")
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(
            b"POST /whatsapp/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        started = time.monotonic()
        while not select.select([sock], [], [], 0.2)[0]:  # one byte of body every 0.2 s until an answer comes
            sock.sendall(b" ")
            assert time.monotonic() - started < 8, "no answer to a body trickled for 8 s"
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 1.5 < time.monotonic() - started < 5  # the 2 s body deadline
    assert "answered 408: the request body took over 2 s" in service.logs()
