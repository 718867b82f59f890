"""A private ``redis-server`` for the tests: a free loopback port, a temporary folder, stopped afterwards.

Nobody has to start Redis by hand: the tests start the Debian ``redis-server`` binary themselves (``.ci/run``
installs it). The server keeps an append-only file with ``appendfsync always``, as a production Redis for this
service should, so that :meth:`RedisServer.stop` then :meth:`RedisServer.start` is a Redis restart that keeps
its data, on the same port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(path, os.X_OK)), None
    )


def require_redis_server() -> str:
    """The binary, or a skip on a developer's machine without it; in CI (``CI=true``) a missing one fails."""
    binary = redis_server_binary()
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server, or run .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process; ``start()`` again after ``stop()`` restarts it on the same port and data."""

    def __init__(self, binary: str | None = None, directory: str | Path | None = None) -> None:
        self.binary = binary or require_redis_server()
        self._own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="redis-test-"))
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self, timeout: float = 10) -> RedisServer:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}:\n{self.logs()}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not answer on port {self.port} within {timeout}s:\n{self.logs()}")

    def ping(self) -> bool:
        """A raw RESP PING, so that this helper needs no client library."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM: Redis flushes its append-only file and exits; the port is free when this returns."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def close(self) -> None:
        self.stop()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
