"""Run the real service under a real ``gunicorn`` subprocess on loopback, the way people deploy it.

Each test gets its own process group, SQLite file and working folder (so a developer's own ``.env`` or
``config.yaml`` never leaks in); the Graph API and OpenAI are the local fakes of this package.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from . import webhooks

#: The checkout: ``app.py`` and the shipped ``gunicorn.conf.py`` are run from here.
ROOT = Path(__file__).resolve().parent.parent.parent
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
ACCESS_TOKEN = "test-token"
HEALTH_TOKEN = "test-health-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command(app: str, port: int, workers: int, threads: int, project: Path | None = None) -> list[str]:
    """``gunicorn <app>`` on loopback as the tests and the bench run it: with the shipped ``gunicorn.conf.py``, so
    that they run what production runs (the command line overrides only the address and the sizing).

    ``project`` is a folder with the user's own ``agents`` package, put ahead of the repository on the path.
    """
    return [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--config",
        str(ROOT / "gunicorn.conf.py"),
        "--pythonpath",
        ",".join(str(path) for path in (ROOT, project) if path),  # each goes first in turn: the project wins
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--graceful-timeout",
        "10",
        "--no-control-socket",  # one path per user by default: concurrent gunicorns would share it
    ]


def base_environment(graph_url: str, openai_url: str, database: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AK_", "OPENAI_"))}
    env.update(
        {
            "AK_WHATSAPP__VERIFY_TOKEN": VERIFY_TOKEN,
            "AK_WHATSAPP__ACCESS_TOKEN": ACCESS_TOKEN,
            "AK_WHATSAPP__APP_SECRET": APP_SECRET,
            "AK_WHATSAPP__PHONE_NUMBER_ID": webhooks.PHONE_NUMBER_ID,
            "AK_WHATSAPP__GRAPH_URL": graph_url,
            "AK_API__MEDIA_HOSTS": "127.0.0.1",  # the fake Graph serves media from loopback
            "AK_STORE__URL": f"sqlite:///{database}",
            "AK_API__HEALTH_TOKEN": HEALTH_TOKEN,
            "OPENAI_BASE_URL": openai_url,
            "OPENAI_API_KEY": "sk-test",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def fresh_connections() -> requests.Session:
    """A client that opens a new connection for every request, as Meta's deliveries do.

    gunicorn closes a keep-alive connection after 2 s idle; a pooled connection reused at that very moment dies
    with ``RemoteDisconnected`` before any answer, and a test posting after a pause would fail at random.
    ``Connection: close`` makes the server close each connection after its answer, so none is ever reused.
    """
    session = requests.Session()
    session.headers["Connection"] = "close"
    return session


class Service:
    """One ``gunicorn app:app`` with its own store; restartable on the same store."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        workers: int = 2,
        threads: int = 4,
        hostname: str | None = None,
        project: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.project = project
        self.hostname = hostname  # run in its own UTS namespace under this name: "another machine" for the store
        self.env = env
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_files: list[Path] = []
        self.http = fresh_connections()

    # lifecycle ---------------------------------------------------------------------------------------------------

    def start(self, timeout: float = 20) -> Service:
        log_path = self.workdir / f"gunicorn-{len(self._log_files)}.log"
        self._log_files.append(log_path)
        command = gunicorn_command("app:app", self.port, self.workers, self.threads, self.project)
        if self.hostname:  # `unshare --uts` needs root, as CI has; exec keeps the pid, so stop() and kill() work
            command = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *command]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if self.http.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    return self
            except (requests.ConnectionError, requests.Timeout):  # bound, but the workers are still booting
                time.sleep(0.05)
        raise AssertionError(f"gunicorn did not answer within {timeout}s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signal the whole process group (master and workers) and wait for the master."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(5)

    def kill(self) -> None:
        """``kill -9`` of the master and every worker at once: nothing gets to clean up."""
        self.stop(signal.SIGKILL)

    def restart(self) -> Service:
        self.stop()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        return self.start()

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self._log_files if path.exists())

    # talking to it as Meta does ----------------------------------------------------------------------------------

    def post(
        self,
        payload: Any = None,
        *,
        body: bytes | None = None,
        secret: str | None = APP_SECRET,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST a webhook signed like Meta does (over the raw bytes); ``secret=None`` sends it unsigned."""
        raw = body if body is not None else webhooks.dumps(payload)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if signature is not None:
            all_headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            all_headers["X-Hub-Signature-256"] = webhooks.sign(raw, secret)
        return self.http.post(self.url + "/whatsapp/webhook", data=raw, headers=all_headers, timeout=10)

    def get(self, path: str, **params: str) -> requests.Response:
        return self.http.get(self.url + path, params=params, timeout=10)

    def health_response(self) -> requests.Response:
        """``/healthz`` with its details (counts, mode), as the operator sees it with the health token."""
        headers = {"Authorization": f"Bearer {HEALTH_TOKEN}"}
        return self.http.get(self.url + "/healthz", headers=headers, timeout=10)

    def health(self) -> dict[str, Any]:
        return self.health_response().json()

    def wait_until_idle(self, timeout: float = 20) -> dict[str, Any]:
        """Wait until nothing is received, claimed or answered any more; returns the last /healthz."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            counts = health["store"]["messages"]
            if counts["received"] + counts["claimed"] + counts["answered"] == 0:
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"still busy after {timeout}s: {counts}\n{self.logs()[-4000:]}")
            time.sleep(0.1)
