"""Tiny loopback HTTP plumbing shared by the fake Graph API and the fake OpenAI server.

The service under test runs in another process and must reach its peers over real HTTP, so the fakes are
real servers: stdlib ``ThreadingHTTPServer`` on 127.0.0.1, port 0, ``serve_forever`` in a daemon thread. They
start in milliseconds and know nothing of the service.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One HTTP request as a fake received it. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival; CLOCK_MONOTONIC is system-wide, so comparable across processes

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass(frozen=True)
class Response:
    """What a fake answers. ``disconnect`` drops the connection without any answer (a network failure)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    disconnect: bool = False

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls(status=status, body=json.dumps(payload).encode(), headers=headers)

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class Recorded:
    """One exchange a fake took part in, kept for the test to inspect.

    ``status`` and ``response`` are None when the exchange was recorded on arrival (before it was answered).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    at: float
    status: int | None = None
    response: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, request: Request, response: Response | None = None, **extra: Any) -> Recorded:
        return cls(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            json=request.json(),
            body=request.body,
            at=request.at,
            status=None if response is None else response.status,
            response=None if response is None else response.json(),
            extra=extra,
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, owner: FakeServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real peers; every answer carries Content-Length
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.owner.__class__.__name__, format % args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        at = time.monotonic()
        body = self._read_body()
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            at=at,
        )
        try:
            response = self.server.owner.handle(request)
        except Exception:
            log.exception("fake %s failed on %s %s", type(self.server.owner).__name__, self.command, self.path)
            response = Response.of_json(500, {"error": {"message": "fake server crashed; see the test log"}})
        if response.disconnect:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


class FakeServer:
    """A loopback HTTP server answering through ``handle``; a context manager with ``start``/``stop``/``url``."""

    def __init__(self) -> None:
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        if self._httpd is None:
            self._httpd = _Server(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
