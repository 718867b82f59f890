"""gunicorn's ``gthread`` worker, with no thread given to a client before its request head has arrived.

gunicorn's threaded worker waits for a connection's first byte in its event loop, then hands the connection to a
thread that reads the request line and headers with blocking reads and no deadline. A client that sends one byte,
then trickles the rest, holds that thread for as long as it likes: 16 such connections held every thread of the
Procfile setup (2 workers x 8 threads) and no webhook was answered. gunicorn has limits on the head's size
(``limit_request_*``) but no timeout for it.

This worker collects each request head in the event loop instead: a thread takes whatever bytes have arrived, without
blocking, and gives the connection back to the loop until the blank line that ends the head is there. Only then
does gunicorn's own parser read it, from memory. A head must be complete within ``HEAD_TIMEOUT`` seconds, and
the gap between two of its pieces must stay under gunicorn's ``keepalive`` (its idle timeout for waiting
connections), else the connection is closed. Once the head is in, the body must arrive within ``BODY_TIMEOUT``
seconds: each read waits at most for what is left of that time, and a late body is answered 408 by the app. That
bounds what one slow body costs (a thread for 30 s), not how many an attacker opens: a proxy that buffers request
bodies in front of the service is what makes slow bodies free (README, Security).

TLS (``certfile``) and HTTP/2 connections are left to gunicorn as they are: this service expects TLS to end at a
proxy in front of it (README, Security).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

log = logging.getLogger("whatsapp.slow_clients")

#: Seconds from a request's first byte to the end of its head (request line and headers).
HEAD_TIMEOUT = 10.0
#: Seconds from the end of the head to the end of the body.
BODY_TIMEOUT = 30.0
#: A head longer than this is handed to gunicorn's parser as it is, which refuses it under its ``limit_request_*``.
MAX_HEAD = 64 * 1024
_END_OF_HEAD = b"\r\n\r\n"


class _Head:
    """The bytes of one request head collected so far, and when its first byte came."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.started = time.monotonic()

    @property
    def complete(self) -> bool:
        return _END_OF_HEAD in self.data or len(self.data) > MAX_HEAD


class ThreadWorker(gthread.ThreadWorker):
    """``worker_class`` for gunicorn: the ``gthread`` worker, with the request head collected in the event loop."""

    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def handle(self, conn: Any) -> Any:
        if self._collects_heads(conn):
            arrived = self._collect_head(conn)
            if arrived is None:
                return gthread._DEFER  # back to the event loop until more bytes come
            if not arrived:
                # Closed by the client, or too slow. Shut it here: gunicorn's graceful close then finds nothing to
                # drain, instead of waiting up to 2 s in its event loop for a client that keeps the line open.
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return False
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Read the body within ``BODY_TIMEOUT``; the socket itself goes back untouched for the next request."""
        unreader = conn.parser.unreader
        unreader.sock = _Deadline(conn.sock, self.body_timeout)
        try:
            return super().handle_request(req, conn)
        finally:
            unreader.sock = conn.sock

    def _collects_heads(self, conn: Any) -> bool:
        return not (self.cfg.is_ssl or conn.is_http2 or negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def _collect_head(self, conn: Any) -> bool | None:
        """True once a whole head is buffered for the parser; None while it is still coming; False to close."""
        head: _Head | None = getattr(conn, "whatsapp_head", None)
        if head is None:
            # A keep-alive connection's parser may already hold the start of the next request.
            head = conn.whatsapp_head = _Head(conn.parser.unreader.take_buffered() if conn.parser else b"")
        if not head.complete:
            conn.sock.setblocking(False)
            try:
                while not head.complete:
                    data = conn.sock.recv(65536)
                    if not data:
                        return False
                    head.data += data
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        if not head.complete:
            if time.monotonic() - head.started > self.head_timeout:
                log.warning(
                    "closed a connection from %s: its request head took over %g s", _peer(conn), self.head_timeout
                )
                return False
            return None
        conn.whatsapp_head = None
        if conn.parser is None:
            conn.init()  # creates the HTTP/1 parser; reads nothing
        conn.parser.unreader.unread(bytes(head.data))
        return True


class _Deadline:
    """A socket whose ``recv`` calls all end within ``seconds`` from now; past that, :class:`TimeoutError`."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds

    def recv(self, size: int) -> bytes:
        left = self._deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            return self._sock.recv(size)
        except TimeoutError:
            raise TimeoutError(f"the request body took over {self._seconds:g} s") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _peer(conn: Any) -> str:
    client = conn.client
    return client[0] if isinstance(client, tuple) else str(client)
