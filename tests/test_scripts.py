"""``./scripts/start`` and ``./scripts/whatsapp`` as a newcomer runs them: from a fresh shell, .venv not activated.

Each test runs the scripts of a scratch checkout (the code linked, the scripts and agents copied, the .venv shared) so
that the developer's own ``.env``, ``config.yaml``, ``agents/`` and ``instance/`` are never read or written.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.test_readme import readme_agent_source
from whatsapp.testing.service import ROOT, base_environment, free_port

LINKED = ("app.py", "gunicorn.conf.py", "whatsapp", ".venv")


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copytree(ROOT / "agents", root / "agents", ignore=shutil.ignore_patterns("__pycache__"))
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


@contextmanager
def started(checkout: Path, **settings: str) -> Iterator[tuple[str, Path]]:
    """``./scripts/start`` in a fresh shell with ``settings``; yields its URL, once it answers, and its log."""
    port = free_port()
    env = fresh_shell(PORT=str(port), PYTHONUNBUFFERED="1", **settings)
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
                requests.get(url + "/healthz", timeout=1, headers={"Connection": "close"})
                break
            except (requests.ConnectionError, requests.Timeout):  # bound, but the worker is still booting
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield url, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_scripts_start_serves_the_sandbox_on_port_and_host_with_web_concurrency_workers(checkout):
    with started(checkout, HOST="127.0.0.1", WEB_CONCURRENCY="1") as (url, log):
        assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok", "queue": 0}  # no details
        assert requests.get(url + "/simulator", timeout=5).status_code == 200
        output = log.read_text()
        assert f"Starting on {url}" in output
        assert f"open http://localhost:{url.rsplit(':', 1)[1]}/simulator" in output
        assert output.count("Booting worker") == 1  # WEB_CONCURRENCY=1
        assert (checkout / "instance" / "sandbox.db").exists()  # the checkout's own instance folder


def test_readme_bakery_walk_through_in_the_sandbox_as_written(checkout):
    """ "Create agents/bakery.py", "AK_WHATSAPP__AGENT=bakery, restart, and ask 'are you open on sunday?'"."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert '2. Choose it: `AK_WHATSAPP__AGENT=bakery`, restart, and ask "are you open on sunday?".' in readme
    (checkout / "agents" / "bakery.py").write_text(readme_agent_source())
    with started(checkout, AK_WHATSAPP__AGENT="bakery") as (url, log):
        http = requests.Session()
        customer = {"wa_id": "447700900555", "name": "Ada"}
        assert http.post(url + "/sandbox/api/customers", json=customer, timeout=10).status_code == 201
        said = {"customer": customer["wa_id"], "type": "text", "text": "are you open on sunday?"}
        assert http.post(url + "/sandbox/api/messages", json=said, timeout=10).status_code == 202
        deadline = time.monotonic() + 30
        while True:
            query = {"customer": customer["wa_id"], "after": "0"}
            events = http.get(url + "/sandbox/api/conversation", params=query, timeout=10).json()["events"]
            answers = [e["request"]["text"]["body"] for e in events if e["kind"] == "send" and e["status"] == 200]
            if answers:
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert answers[0].startswith("The opening_hours tool says: closed.")


def test_every_command_line_in_the_readme_names_a_command_and_options_that_exist():
    """README's commands are written as they run: ``./scripts/whatsapp <command> [--option]``, never a bare flask."""
    from whatsapp.cli import whatsapp

    readme = (ROOT / "README.md").read_text()
    used = re.findall(r"\./scripts/whatsapp ([a-z-]+)((?: [^\s`#]+)*)", readme)
    assert {command for command, _ in used} >= {"doctor", "send", "chat", "replay"}
    for command, rest in used:
        assert command in whatsapp.commands, f"README uses ./scripts/whatsapp {command}"
        options = {opt for param in whatsapp.commands[command].params for opt in param.opts}
        for option in re.findall(r"(--[a-z-]+)", rest):
            assert option in options, f"README uses ./scripts/whatsapp {command} {option}"
    assert not re.search(r"^\s*(\$ )?flask --app app whatsapp", readme, flags=re.M)  # only through the wrapper
