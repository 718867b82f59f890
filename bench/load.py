"""An open-loop HTTP/1.1 load generator on asyncio, with a pool of keep-alive connections.

Requests leave on a fixed schedule (``start + i / rate``) whatever the server does, and each latency is measured
from the time the request was *scheduled*, not from when it could finally be sent. A closed-loop client (send,
wait, send the next) slows down when the server stalls and so never sees the requests that a real sender, such as
Meta, would have sent during the stall: that is coordinated omission, and it hides exactly the tail we care about.

The client is a few dozen lines of raw HTTP rather than ``requests`` so that the generator costs little CPU per
request and leaves the machine's two cores to the server it measures.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IDLE_REUSE_LIMIT = 1.5  # seconds; gunicorn closes a keep-alive connection after 2 s idle (its --keep-alive)


@dataclass(frozen=True)
class Shot:
    """One request to send: ``tag`` names it in the results (the WhatsApp message id, for webhooks)."""

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    tag: str = ""


@dataclass(frozen=True)
class Outcome:
    """What happened to one shot; times are ``time.monotonic()`` seconds, comparable across processes."""

    tag: str
    scheduled: float
    sent: float  # when its bytes were written (after waiting for a free connection, if any)
    done: float  # when the whole answer was read, or the error happened
    status: int | None
    error: str | None = None

    @property
    def latency(self) -> float:
        """From the scheduled time to the end of the answer: what the sender experienced."""
        return self.done - self.scheduled

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Summary:
    """Latency percentiles (seconds) and counts of one run at one offered rate."""

    rate: float
    count: int
    errors: int
    p50: float
    p90: float
    p99: float
    max: float
    send_lag_p99: float  # how late the generator itself was; large values mean the client, not the server, lagged

    @classmethod
    def of(cls, rate: float, outcomes: Sequence[Outcome]) -> Summary:
        latencies = sorted(o.latency for o in outcomes)
        lags = sorted(o.sent - o.scheduled for o in outcomes)
        return cls(
            rate=rate,
            count=len(outcomes),
            errors=sum(not o.ok for o in outcomes),
            p50=percentile(latencies, 50),
            p90=percentile(latencies, 90),
            p99=percentile(latencies, 99),
            max=latencies[-1] if latencies else math.nan,
            send_lag_p99=percentile(lags, 99),
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (p99 of 1000 values is the 990th)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def request_bytes(shot: Shot, host: str, close: bool = False) -> bytes:
    head = [f"POST {shot.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(shot.body)}"]
    if close:
        head.append("Connection: close")
    head += [f"{name}: {value}" for name, value in shot.headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + shot.body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.monotonic()
        self.uses = 0
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def close(self) -> None:
        self.closed = True
        self.writer.close()

    async def exchange(self, data: bytes) -> int:
        """Send one request and read its whole answer; returns the status."""
        self.uses += 1
        self.writer.write(data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length: int | None = None
        chunked = keep_alive = False
        keep_alive = lines[0].startswith(b"HTTP/1.1")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection":
                keep_alive = value == b"keep-alive" or (keep_alive and value != b"close")
        if chunked:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        elif length is not None:
            await self.reader.readexactly(length)
        else:
            await self.reader.read()
            keep_alive = False
        self.last_used = time.monotonic()
        if not keep_alive:
            self.close()
        return status


class OpenLoop:
    """Sends ``shots`` to ``url`` at ``rate`` per second over up to ``max_connections`` keep-alive connections.

    ``connections`` are opened before the clock starts and used in turn (first in, first out), so that the load
    spreads over every gunicorn worker process that accepted one; more are opened when all are busy. With
    ``fresh``, every request opens a connection of its own and asks the server to close it (``Connection:
    close``), as Meta's deliveries do: the connect is then part of each latency.
    """

    def __init__(
        self,
        url: str,
        *,
        connections: int = 16,
        max_connections: int = 512,
        timeout: float = 10.0,
        fresh: bool = False,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.connections = connections
        self.max_connections = max_connections
        self.timeout = timeout
        self.fresh = fresh

    def run(self, shots: Sequence[Shot], rate: float) -> list[Outcome]:
        """Blocks until every shot was answered or timed out; outcomes in shot order.

        The garbage collector is off meanwhile: a full collection in the generator would pause every request in
        flight and be counted against the server.
        """
        gc.collect()
        gc.disable()
        try:
            return asyncio.run(self._run(shots, rate))
        finally:
            gc.enable()

    async def _run(self, shots: Sequence[Shot], rate: float) -> list[Outcome]:
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._open = 0
        for _ in range(0 if self.fresh else min(self.connections, len(shots))):
            try:
                self._idle.put_nowait(await _Connection.open(self.host, self.port))
            except OSError:
                break  # each shot then tries to connect on its own, and records the error if it cannot
            self._open += 1
            await asyncio.sleep(0.002)  # let every gunicorn worker's accept loop take its share
        loop = asyncio.get_running_loop()
        requests = [request_bytes(shot, self.host_header, close=self.fresh) for shot in shots]
        tasks = []
        start = loop.time() + 0.05
        for index, shot in enumerate(shots):
            scheduled = start + index / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._fire(shot.tag, requests[index], scheduled)))
        outcomes = await asyncio.gather(*tasks)
        while not self._idle.empty():
            self._idle.get_nowait().close()
        return list(outcomes)

    async def _acquire(self) -> _Connection:
        while True:
            if self.fresh or (self._idle.empty() and self._open < self.max_connections):
                self._open += 1
                try:
                    return await _Connection.open(self.host, self.port)
                except BaseException:
                    self._open -= 1
                    raise
            connection = await self._idle.get()
            if time.monotonic() - connection.last_used < IDLE_REUSE_LIMIT:
                return connection
            connection.close()  # the server may be closing it right now: do not race it
            self._open -= 1

    def _release(self, connection: _Connection) -> None:
        if connection.closed:
            self._open -= 1
        else:
            self._idle.put_nowait(connection)

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open -= 1

    async def _fire(self, tag: str, data: bytes, scheduled: float) -> Outcome:
        loop = asyncio.get_running_loop()
        sent: float | None = None
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                connection = await self._acquire()
                sent = loop.time()
                try:
                    status = await connection.exchange(data)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if connection.uses < 2 or self.fresh:
                        raise
                    # A reused connection that the server had just closed: the request never arrived; once more.
                    self._discard(connection)
                    connection = None
                    connection = await self._acquire()
                    status = await connection.exchange(data)
                self._release(connection)
                connection = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as error:
            if connection is not None:
                self._discard(connection)
            done = loop.time()
            return Outcome(tag, scheduled, done if sent is None else sent, done, None, type(error).__name__)
        return Outcome(tag, scheduled, sent, loop.time(), status)
