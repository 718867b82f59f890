"""Failures of the peers and of the disk, and poison messages, under real gunicorn.

Graph throttling and 5xx are retried until the reply is delivered once; Graph's permanent refusals are not
retried at all. A store that cannot record answers 503 (so Meta redelivers) and never 200. A message that breaks
the handler every time fails after its budget, with an apology, and its customer's later messages still flow.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.reliability.conftest import database, inbox_row, post_concurrently
from whatsapp.handler import APOLOGY
from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import Service

ADA = "4915112345678"
BOB = "447700900123"

QUICK_RETRIES = {"AK_WORKER__RETRY_DELAY": "0.2", "AK_WORKER__MAX_ATTEMPTS": "3"}


# Graph failures ---------------------------------------------------------------------------------------------------


def test_graph_answering_429_and_500_five_times_still_delivers_the_reply_exactly_once(start_service, fakes):
    graph, model = fakes
    service = start_service(**QUICK_RETRIES)
    graph.fail_next(2, status=429, code=130429)
    graph.fail_next(3, status=500)
    message = wh.text_message("hello through the storm")
    assert service.post(wh.webhook(message)).status_code == 200
    graph.wait_for_texts(1, timeout=30)
    service.wait_until_idle()

    assert [r["body"] for r in graph.sent_texts()] == ["You said: hello through the storm"]
    assert [c.status for c in graph.failed_sends()] == [429, 429, 500, 500, 500]
    assert len(model.chat_requests()) == 1  # the retry sent the stored answer
    row = inbox_row(service, message["id"])
    assert row["state"] == "done" and row["attempts"] == 2  # urllib3 retried within attempt 1, the queue once


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 131047), (400, 131026), (401, 190)],
    ids=["outside-24h-window", "undeliverable", "bad-token"],
)
def test_a_permanent_graph_error_fails_the_message_at_once_without_a_retry_storm(start_service, fakes, status, code):
    graph, model = fakes
    service = start_service(**QUICK_RETRIES)
    graph.fail_next(1, status=status, code=code)
    message = wh.text_message("too late?")
    assert service.post(wh.webhook(message)).status_code == 200
    health = service.wait_until_idle()  # failed is final: no retry or apology can follow

    assert len(graph.failed_sends()) == 1  # one attempt at Meta, no retry, and no apology Meta would refuse too
    assert graph.sent_texts() == []
    assert health["store"]["messages"]["failed"] == 1
    row = inbox_row(service, message["id"])
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert str(code) in row["reason"]
    assert str(code) in service.logs()


# an unwritable store ------------------------------------------------------------------------------------------


def test_a_locked_store_answers_503_never_200_and_recovers(start_service, fakes):
    graph, model = fakes
    service = start_service()
    messages = [wh.text_message(f"during the outage {n}", sender=f"3161234567{n}") for n in range(4)]
    bodies = [wh.dumps(wh.webhook(m)) for m in messages]

    lock = sqlite3.connect(database(service), isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # held far past the webhook's 2 s write timeout
        assert post_concurrently(service, bodies) == [503] * 4
        assert service.post(wh.webhook(messages[0])).status_code == 503
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert "webhook answered 503: could not record 1 message(s)" in service.logs()

    counts = service.wait_until_idle()["store"]["messages"]
    assert counts == dict.fromkeys(counts, 0)  # nothing was recorded, so nothing can be answered before Meta redelivers
    assert graph.sent_texts() == [] and model.chat_requests() == []
    assert post_concurrently(service, bodies) == [200] * 4  # Meta's redelivery
    graph.wait_for_texts(4)
    health = service.wait_until_idle()
    assert sorted(r["body"] for r in graph.sent_texts()) == [f"You said: during the outage {n}" for n in range(4)]
    assert health["store"]["messages"]["done"] == 4


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs to fill up (needs the right to mount, as root in a container usually has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


def test_a_full_disk_answers_503_never_200_and_recovers_when_space_is_freed(small_disk, start_service, fakes):
    graph, model = fakes
    service = start_service(AK_STORE__URL=f"sqlite:///{small_disk / 'whatsapp.db'}")
    filler = fill(small_disk)
    with pytest.raises(OSError) as full:
        (small_disk / "probe").write_bytes(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC
    messages = [wh.text_message(f"disk full {n}", sender=f"3161234567{n}") for n in range(3)]
    bodies = [wh.dumps(wh.webhook(m)) for m in messages]
    statuses = [service.post(body=body).status_code for body in bodies]
    assert statuses == [503] * 3, service.logs()[-3000:]
    assert "database or disk is full" in service.logs()

    filler.unlink()
    assert [service.post(body=body).status_code for body in bodies] == [200] * 3
    graph.wait_for_texts(3)
    service.wait_until_idle()
    assert len(graph.sent_texts()) == 3


# poison messages ----------------------------------------------------------------------------------------------

POISON_HANDLER = '''
import os
import signal

from whatsapp.handler import AgentWhatsAppRequestHandler


class PoisonHandler(AgentWhatsAppRequestHandler):
    """Chokes on one text every time: raises on "poison", kills its own process on "crash"."""

    def _handle_message(self, message, value):
        body = (message.get("text") or {}).get("body")
        if body == "poison":
            raise RuntimeError("the handler chokes on this message")
        if body == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        super()._handle_message(message, value)
'''


def deliver_like_meta(service: Service, payload: dict, attempts: int = 10) -> int:
    """POST until an answer arrives: a connection cut by a dying worker is redelivered, as Meta does."""
    for _ in range(attempts):
        try:
            return service.post(payload).status_code
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):  # cut mid-answer
            time.sleep(0.2)
    raise AssertionError(f"no answer after {attempts} deliveries")


@pytest.fixture
def poison_environment(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "poison_handler.py").write_text(textwrap.dedent(POISON_HANDLER))
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "AK_WHATSAPP__HANDLER": "poison_handler:PoisonHandler"}


def test_a_poison_message_fails_after_its_budget_with_an_apology_and_later_messages_flow(
    start_service, fakes, poison_environment
):
    graph, model = fakes
    service = start_service(**poison_environment, **QUICK_RETRIES)
    poison = wh.text_message("poison", sender=ADA, timestamp=str(wh.RECENT + 0))
    after = wh.text_message("and now?", sender=ADA, timestamp=str(wh.RECENT + 1))
    assert service.post(wh.webhook(poison)).status_code == 200
    assert service.post(wh.webhook(after)).status_code == 200
    assert service.post(wh.webhook(wh.text_message("hello", sender=BOB))).status_code == 200

    ada = graph.wait_for_texts(2, to=ADA, timeout=30)
    health = service.wait_until_idle()
    assert [(r["body"], r["reply_to"]) for r in ada] == [(APOLOGY, poison["id"]), ("You said: and now?", after["id"])]
    assert [r["body"] for r in graph.sent_texts(to=BOB)] == ["You said: hello"]
    assert (health["store"]["messages"]["failed"], health["store"]["messages"]["done"]) == (1, 2)
    row = inbox_row(service, poison["id"])
    assert row["attempts"] == 3
    assert "RuntimeError: the handler chokes on this message" in row["reason"]
    assert len(model.chat_requests()) == 2  # never for the poison


def test_a_message_that_kills_its_worker_every_time_fails_after_its_budget_and_later_messages_flow(
    start_service, fakes, poison_environment
):
    graph, model = fakes
    service = start_service(**poison_environment, AK_WORKER__MAX_ATTEMPTS="2")
    crash = wh.text_message("crash", sender=ADA, timestamp=str(wh.RECENT + 0))
    after = wh.text_message("still there?", sender=ADA, timestamp=str(wh.RECENT + 1))
    # One batch, as Meta sends them. The worker may die before its 200 is written: Meta then redelivers.
    assert deliver_like_meta(service, wh.webhook(crash, after)) == 200

    ada = graph.wait_for_texts(2, to=ADA, timeout=60)
    service.wait_until_idle()
    assert [(r["body"], r["reply_to"]) for r in ada] == [
        (APOLOGY, crash["id"]),
        ("You said: still there?", after["id"]),
    ]
    row = inbox_row(service, crash["id"])
    assert row["state"] == "failed" and row["attempts"] == 3
    assert "gave up after 2 attempts" in row["reason"]
    assert service.logs().count("was sent SIGKILL") == 2  # gunicorn saw each of the two attempts kill its worker
