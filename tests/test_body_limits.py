"""Webhook bodies are bounded while they are read, chunked or sized: the real service under gunicorn, raw sockets.

A chunked POST has no ``Content-Length``: a server that reads it whole before checking its size holds whatever the
client sends. The proof is the worker's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``), which a body
held in memory raises by its size even after it is freed.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from tests.chunked import Endless, MiB, post_chunked
from whatsapp import BodyTooLarge
from whatsapp.bodies import read_at_most
from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import APP_SECRET


def workers_of(master: int) -> list[int]:
    """The pids whose parent is ``master`` (gunicorn's workers)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    return pids


def peak_memory(pid: int) -> int:
    """The process's peak resident set size in bytes (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_a_chunked_body_over_the_limit_is_refused_without_being_held_in_memory(start_service, fakes):
    graph, model = fakes
    size = 64 * MiB
    service = start_service(workers=1, threads=2)
    [worker] = workers_of(service.process.pid)
    before = peak_memory(worker)

    status, sent = post_chunked(service.port, io.BufferedReader(Endless(size)), {"Content-Type": "application/json"})

    assert status == 413
    grown = peak_memory(worker) - before
    assert grown < 16 * MiB, f"the worker's peak memory grew by {grown // MiB} MiB for a {size // MiB} MiB body"
    assert sent < size, "the service read the whole body before refusing it"
    assert service.health()["store"]["messages"]["received"] == 0
    assert graph.calls == [] and model.chat_requests() == []


def test_a_chunked_body_within_the_limit_is_received_and_answered(service, fakes):
    graph, model = fakes
    model.reply_with("Received in chunks.")
    body = wh.dumps(wh.webhook(wh.text_message("sent in pieces")))
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": wh.sign(body, APP_SECRET)}

    status, sent = post_chunked(service.port, io.BytesIO(body), headers)

    assert (status, sent) == (200, len(body))
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "Received in chunks."


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(
            b"POST /whatsapp/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (4 * MiB + 1)
        )
        answer = sock.recv(4096)  # answered with no byte of the body sent
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_read_at_most_takes_exactly_the_limit_and_refuses_one_byte_more():
    assert read_at_most(io.BytesIO(b"x" * 100_000), 100_000) == b"x" * 100_000
    assert read_at_most(io.BytesIO(b""), 10) == b""
    with pytest.raises(BodyTooLarge):
        read_at_most(io.BytesIO(b"x" * 100_001), 100_000)
    endless = io.BufferedReader(Endless(10**12))
    with pytest.raises(BodyTooLarge):
        read_at_most(endless, MiB)
    assert endless.raw.left > 10**12 - 2 * MiB  # stopped just past the limit
