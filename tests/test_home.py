"""What a person sees opening the server's address in a browser, and what the server's log says at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from tests.sandbox import sandbox_environment, start_sandbox
from whatsapp.testing.service import ROOT, free_port


def test_live_server_answers_its_address_with_one_line_and_never_mentions_the_simulator(service):
    home = service.get("/")
    assert home.status_code == 200 and home.headers["Content-Type"].startswith("text/plain")
    assert home.text == "WhatsApp agent service: Meta delivers to /whatsapp/webhook; health at /healthz.\n"
    assert service.get("/simulator").status_code == 404
    assert "simulator" not in service.logs()


def test_sandbox_address_leads_to_the_simulator(tmp_path):
    sandbox = start_sandbox(tmp_path)
    try:
        home = sandbox.http.get(sandbox.url + "/", allow_redirects=False, timeout=10)
        assert home.status_code == 302 and home.headers["Location"] == "/simulator"
    finally:
        sandbox.stop()


def test_flask_run_does_not_log_the_simulators_polling(tmp_path):
    port = free_port()
    log = tmp_path / "flask.log"
    env = sandbox_environment(PYTHONPATH=str(ROOT))
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                requests.get(url + "/healthz", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        polls = [{"customer": "447700900123", "after": str(after)} for after in range(5)]
        answers = [requests.get(url + "/sandbox/api/conversation", params=p, timeout=5) for p in polls]
        assert {answer.status_code for answer in answers} == {200}
        requests.get(url + "/simulator", timeout=5)
        deadline = time.monotonic() + 10
        while '"GET /simulator HTTP/1.1" 200' not in log.read_text():  # the access log still logs the rest
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert "/sandbox/api/conversation" not in log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
