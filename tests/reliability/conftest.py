"""Shared pieces for the reliability tests: a Graph fake that can hold sends, and views of the SQLite inbox.

The tests run the real service under gunicorn and fault it for real (``kill -9``, SIGTERM, a locked or full
disk). They wait on events the fakes record, never on how long something took.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from whatsapp.testing import webhooks as wh
from whatsapp.testing.graph import FakeGraph
from whatsapp.testing.http import Request, Response
from whatsapp.testing.service import ACCESS_TOKEN, APP_SECRET, Service


class HoldingGraph(FakeGraph):
    """The fake Graph API, plus a gate on sends: ``hold_sends(after=n)`` lets n sends through and holds the rest.

    A held send has not reached "Meta" yet. ``release_sends(drop=True)`` answers the held ones by dropping the
    connection without recording a delivery, which is what a send cut off by a crash looks like.
    """

    def __init__(self, access_token: str = ACCESS_TOKEN) -> None:
        super().__init__(access_token=access_token)
        self._gate = threading.Event()
        self._gate.set()
        self._let_through: int | None = None
        self._held = 0
        self._drop = False

    def hold_sends(self, after: int = 0) -> None:
        with self._cond:
            self._gate = threading.Event()
            self._let_through = after
            self._held = 0
            self._drop = False

    def release_sends(self, *, drop: bool = False) -> None:
        with self._cond:
            self._drop = drop
            self._let_through = None
            self._gate.set()

    def wait_for_held_send(self, timeout: float = 15) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._held > 0, timeout=timeout):
                raise AssertionError(f"no send was held within {timeout}s; calls: {self.calls!r}")

    def reset(self) -> None:
        self.release_sends()
        super().reset()

    def handle(self, request: Request) -> Response:
        body = request.json()
        is_send = request.method == "POST" and request.path.endswith("/messages") and "status" not in (body or {})
        gate = None
        if is_send:
            with self._cond:
                if self._let_through is not None:
                    if self._let_through > 0:
                        self._let_through -= 1
                    else:
                        gate = self._gate
                        self._held += 1
                        self._cond.notify_all()
        if gate is not None:
            gate.wait(30)
            if self._drop:
                return Response(disconnect=True)
        return super().handle(request)


@pytest.fixture(scope="session")
def graph() -> Iterator[HoldingGraph]:
    """Overrides the suite's Graph fake for this package (``fakes`` picks this one up)."""
    fake = HoldingGraph()
    fake.start()
    yield fake
    fake.release_sends(drop=True)
    fake.stop()


# looking inside the store ----------------------------------------------------------------------------------------


def database(service: Service) -> Path:
    return Path(service.env["AK_STORE__URL"].removeprefix("sqlite:///"))


def query(service: Service, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows from the SQLite file the service uses, read by the test like an operator would."""
    with contextlib.closing(sqlite3.connect(database(service), timeout=10)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params)]


def inbox_row(service: Service, message_id: str) -> dict[str, Any]:
    """The inbox row of one message."""
    rows = query(service, "SELECT * FROM inbox WHERE id = ?", message_id)
    assert rows, f"message {message_id} is not in the inbox"
    return rows[0]


def reply_rows(service: Service, message_id: str) -> list[dict[str, Any]]:
    """The reply log of one message: every planned part, with the wamid Graph gave it once sent."""
    return query(service, "SELECT * FROM replies WHERE message_id = ? ORDER BY slot, part", message_id)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def post_concurrently(service: Service, bodies: list[bytes]) -> list[int]:
    """POST every body at the same moment, each on its own connection; returns the statuses in order."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = [0] * len(bodies)

    def post(index: int) -> None:
        body = bodies[index]
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": wh.sign(body, APP_SECRET)}
        barrier.wait(10)
        statuses[index] = requests.post(
            service.url + "/whatsapp/webhook", data=body, headers=headers, timeout=30
        ).status_code

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses
