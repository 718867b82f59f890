"""Start an app under a real ``gunicorn`` on loopback, read its workers' memory, stop it.

The bench measures what people deploy, so this is the same command line as ``whatsapp/testing/service.py``
(gthread workers, ``--workers`` x ``--threads``) for any app: ours (``app:app``) or the bare Flask yardstick
(``bench.bare_app:app``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from whatsapp.testing.service import free_port, gunicorn_command


@dataclass(frozen=True)
class Memory:
    """One worker process's resident memory (kB): now (VmRSS) and at its peak (VmHWM); its CPU time so far."""

    pid: int
    rss_kb: int
    peak_kb: int
    cpu_seconds: float = 0.0  # user + system


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's master -> its workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(encoding="ascii")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def memory(pid: int) -> Memory:
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        utime, stime = stat.read().rsplit(")", 1)[1].split()[11:13]
    cpu = (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
    return Memory(pid=pid, rss_kb=fields.get("VmRSS", 0), peak_kb=fields.get("VmHWM", 0), cpu_seconds=cpu)


class Gunicorn:
    """``gunicorn <app> --workers W --threads T`` in its own process group, logging to ``workdir``."""

    def __init__(
        self, app: str, env: dict[str, str], workdir: Path, *, workers: int = 2, threads: int = 8, name: str = ""
    ) -> None:
        self.app = app
        self.env = env
        self.workdir = workdir
        self.workers = workers
        self.threads = threads
        self.name = name or app.split(":")[0].replace(".", "-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{self.name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start gunicorn and return at once (``start`` also waits until every worker is up)."""
        command = gunicorn_command(self.app, self.port, self.workers, self.threads)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def first_answer(self, timeout: float = 30.0) -> float:
        """Wait for the first HTTP answer of any kind, asking every 5 ms on a new connection; returns its time
        (``time.monotonic()``). What a load balancer's health check or a client retrying its connect sees."""
        deadline = time.monotonic() + timeout
        request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n".encode()
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gunicorn {self.app} exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(request)
                    if connection.recv(16).startswith(b"HTTP/1."):
                        return time.monotonic()
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"gunicorn {self.app} did not answer within {timeout}s:\n{self.logs()}")

    def start(self, timeout: float = 30.0) -> Gunicorn:
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn {self.app} exited with {self.process.returncode}:\n{self.logs()}")
            if self._answers() and len(children(self.process.pid)) >= self.workers:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn {self.app} did not answer within {timeout}s:\n{self.logs()}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return response.status == 200
        except urllib.error.HTTPError as error:
            return error.code == 503  # up, but the store is not reachable yet
        except OSError:
            return False

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    def worker_memory(self) -> list[Memory]:
        return [memory(pid) for pid in children(self.pid)]

    def health(self) -> dict:
        import json

        token = self.env.get("AK_API__HEALTH_TOKEN", "")  # the details (counts) are the operator's
        asking = urllib.request.Request(self.url + "/healthz", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(asking, timeout=5) as response:
            return json.load(response)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the whole process group (master and workers), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
