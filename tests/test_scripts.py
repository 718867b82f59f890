"""``./scripts/start`` and ``./scripts/whatsapp`` as a newcomer runs them: from a fresh shell, .venv not activated.

Each test runs the scripts of a scratch checkout (the code linked, the scripts copied, the .venv shared) so that the
developer's own ``.env``, ``config.yaml`` and ``instance/`` are never read or written.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.service import ROOT, base_environment, free_port

LINKED = ("app.py", "whatsapp", "agents", ".venv")


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copy(ROOT / "requirements.txt", root)
    return root


def fresh_shell(**settings: str) -> dict[str, str]:
    """The environment of a new terminal (no virtualenv active, no setting of ours), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AK_", "OPENAI_", "REDIS_", "FLASK_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PORT", None)
    env.update(settings)
    venv = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv)
    return env


def test_scripts_whatsapp_runs_the_command_line_without_activating_the_venv(checkout, tmp_path, fakes):
    graph, model = fakes
    env = fresh_shell(**base_environment(graph.url, model.url + "/v1", tmp_path / "w.db"))
    result = subprocess.run(
        ["./scripts/whatsapp", "doctor"], cwd=checkout, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed." in result.stdout


def test_scripts_start_names_port_when_the_port_is_taken(checkout):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            ["./scripts/start"],
            cwd=checkout,
            env=fresh_shell(PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}: the port is taken" in result.stderr
    assert f"PORT={port + 1} ./scripts/start" in result.stderr
    assert elapsed < 5, f"took {elapsed:.1f}s"  # gunicorn alone retries for 5 s before giving up


def test_scripts_start_serves_the_sandbox_on_port_and_host_with_web_concurrency_workers(checkout):
    port = free_port()
    env = fresh_shell(PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="1", PYTHONUNBUFFERED="1")
    log = checkout / "start.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["./scripts/start"], cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                health = requests.get(url + "/healthz", timeout=1, headers={"Connection": "close"})
                break
            except (requests.ConnectionError, requests.Timeout):  # bound, but the worker is still booting
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert health.json()["mode"] == "sandbox"
        assert requests.get(url + "/simulator", timeout=5).status_code == 200
        output = log.read_text()
        assert f"Starting on {url}" in output
        assert f"open http://localhost:{port}/simulator" in output
        assert output.count("Booting worker") == 1  # WEB_CONCURRENCY=1
        assert (checkout / "instance" / "sandbox.db").exists()  # the checkout's own instance folder
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
