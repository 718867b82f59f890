"""Safe by default (issue 11): each test is an attack that worked on the service as it was, and now fails.

- a live deployment whose access token is missing, empty or misspelt refused to be a public sandbox;
- the sandbox answers only this machine, or holders of its key; it signs with its own secret only, never hands a
  signature out, and delivers its webhooks to itself only;
- a live deployment without an app secret refuses to start unless told, insecurely, to accept unsigned webhooks;
- the sandbox's JSON and uploads are bounded while read, odd JSON is a 400, uploads are never rendered;
- ``/healthz`` tells the public ok or not and the queue's depth, and the operator the rest.
"""

from __future__ import annotations

import http.server
import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chunked import Endless, post_chunked
from tests.sandbox import Simulator, new_customer, start_sandbox
from tests.test_cli import flask
from whatsapp import ConfigError, create_app
from whatsapp.config import Settings, StoreSettings, WhatsAppSettings, load_settings
from whatsapp.sandbox import configure, current_sandbox
from whatsapp.sandbox.guard import HEADER
from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import HEALTH_TOKEN, ROOT, base_environment, free_port

MiB = 1024 * 1024


def start_app(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``import app`` as gunicorn does, in a clean folder: how a deployment starts, or refuses to."""
    return subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def load(tmp_path: Path, **environ: str) -> Settings:
    return load_settings(environ, dotenv_path=None, instance_path=tmp_path / "instance")


# 1. no implicit public sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["VERIFY_TOKEN", "APP_SECRET", "PHONE_NUMBER_ID"])
def test_a_live_setting_without_the_access_token_refuses_to_start(tmp_path, key):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **{f"AK_WHATSAPP__{key}": "from-the-live-deployment"})
    message = str(raised.value)
    assert f"whatsapp.{key.lower()} is set but AK_WHATSAPP__ACCESS_TOKEN is not" in message
    assert "remove the live settings to run the local sandbox" in message
    assert "from-the-live-deployment" not in message


def test_a_live_deployment_whose_token_is_empty_exits_with_code_3_and_one_sentence(tmp_path):
    env = {
        "AK_WHATSAPP__ACCESS_TOKEN": "",  # emptied by a redeploy
        "AK_WHATSAPP__VERIFY_TOKEN": "v",
        "AK_WHATSAPP__APP_SECRET": "live-app-secret",
        "AK_WHATSAPP__PHONE_NUMBER_ID": "106540352242922",
        "OPENAI_API_KEY": "sk-live",
        "AK_STORE__URL": f"sqlite:///{tmp_path}/w.db",
    }
    result = start_app(tmp_path, env)
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Configuration error: whatsapp.verify_token and whatsapp.app_secret and ")
    assert "AK_WHATSAPP__ACCESS_TOKEN is not" in line and "live-app-secret" not in line
    assert not (tmp_path / "instance" / "sandbox.db").exists()


def test_the_sandbox_never_runs_on_a_redis_store(tmp_path):
    for environ in ({"AK_STORE__URL": "redis://127.0.0.1:6379/0"}, {"REDIS_URL": "rediss://:pw@redis.example:6380"}):
        with pytest.raises(ConfigError, match="never runs on a Redis store") as raised:
            load(tmp_path, **environ)
        assert "pw@" not in str(raised.value)
    with pytest.raises(ConfigError, match="never runs on a Redis store"):  # nor when built by hand
        create_app(Settings(store=StoreSettings(url="redis://127.0.0.1:1/0")), serve=False)


def test_a_model_key_alone_keeps_the_sandbox_which_answers_only_this_machine(tmp_path):
    """The documented choice: the developer's own model key (or base URL) is allowed in the sandbox."""
    settings = load(tmp_path, OPENAI_API_KEY="sk-mine", OPENAI_BASE_URL="http://localhost:11434/v1")
    assert settings.mode == "sandbox"
    assert settings.sandbox.public is False


@pytest.fixture
def sandbox_app(tmp_path):
    """The sandbox in-process; the test client plays visitors from anywhere (``REMOTE_ADDR``, ``Host``)."""

    def make(public: bool = False):
        settings = load(tmp_path, AK_SANDBOX__PUBLIC=str(public).lower(), AK_STORE__URL=f"sqlite:///{tmp_path}/w.db")
        app = create_app(settings, serve=False)
        return app, current_sandbox(app)

    return make


PAGES = ["/simulator", "/sandbox/api/customers", "/sandbox/api/conversation?customer=447700900123"]


@pytest.mark.parametrize("path", PAGES)
def test_the_sandbox_answers_a_browser_on_this_machine(sandbox_app, path):
    app, _ = sandbox_app()
    assert app.test_client().get(path, base_url="http://localhost:8000").status_code == 200
    assert app.test_client().get(path, base_url="http://127.0.0.1:8000").status_code == 200
    assert (
        app.test_client().get(path, base_url="http://[::1]:8000", environ_base={"REMOTE_ADDR": "::1"}).status_code
        == 200
    )


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    ("remote", "host", "headers"),
    [
        ("203.0.113.7", "localhost", {}),  # another machine
        ("127.0.0.1", "localhost", {"X-Forwarded-For": "203.0.113.7"}),  # a proxy or tunnel on this machine
        ("127.0.0.1", "localhost", {"Forwarded": "for=203.0.113.7"}),
        ("127.0.0.1", "rebound.attacker.example:8000", {}),  # DNS rebinding: a page naming its own host
    ],
)
def test_the_sandbox_refuses_everyone_else(sandbox_app, path, remote, host, headers):
    app, _ = sandbox_app()
    web = app.test_client()
    answer = web.get(path, base_url=f"http://{host}", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert answer.status_code == 403
    assert "only on this machine" in answer.json["error"] and "AK_SANDBOX__PUBLIC" in answer.json["error"]
    posted = web.post(
        "/sandbox/api/messages",
        json={"customer": "447700900123", "type": "text", "text": "hi"},
        base_url=f"http://{host}",
        headers=headers,
        environ_base={"REMOTE_ADDR": remote},
    )
    assert posted.status_code == 403
    graph = web.get(
        "/sandbox/graph/v24.0/100000000000001",
        base_url=f"http://{host}",
        headers=headers,
        environ_base={"REMOTE_ADDR": remote},
    )
    assert graph.status_code == 403


def test_a_public_sandbox_wants_its_key_once_then_remembers_it_in_a_cookie(sandbox_app):
    app, sandbox = sandbox_app(public=True)
    outsider = {"REMOTE_ADDR": "203.0.113.7"}
    web = app.test_client()
    assert web.get("/simulator", base_url="http://bot.example", environ_base=outsider).status_code == 401
    wrong = web.get("/simulator?key=guess", base_url="http://bot.example", environ_base=outsider)
    assert wrong.status_code == 401
    opened = web.get(f"/simulator?key={sandbox.key}", base_url="http://bot.example", environ_base=outsider)
    assert opened.status_code == 303 and opened.headers["Location"] == "/simulator"  # the key leaves the address
    cookie = opened.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # The page and the API it calls now work with the cookie alone.
    assert web.get("/simulator", base_url="http://bot.example", environ_base=outsider).status_code == 200
    assert web.get("/sandbox/api/customers", base_url="http://bot.example", environ_base=outsider).status_code == 200
    # Scripts may send the key in a header instead.
    other = app.test_client()
    headers = {"X-Sandbox-Key": sandbox.key}
    answer = other.get("/sandbox/api/customers", base_url="http://bot.example", headers=headers, environ_base=outsider)
    assert answer.status_code == 200
    # Public means public with the key: this machine needs it too.
    assert app.test_client().get("/sandbox/api/customers", base_url="http://localhost").status_code == 401
    assert len(sandbox.key) >= 32


def test_a_public_sandbox_prints_its_key_at_start(tmp_path):
    service = start_sandbox(tmp_path, AK_SANDBOX__PUBLIC="true")
    try:
        line = next(line for line in service.logs().splitlines() if "sandbox mode:" in line)
        key = line.split("?key=", 1)[1].split()[0]
        assert service.get("/sandbox/api/customers").status_code == 401
        web = service.http
        assert web.get(f"{service.url}/simulator?key={key}", timeout=10).status_code == 200  # redirected, cookie kept
        assert web.get(f"{service.url}/sandbox/api/customers", timeout=10).status_code == 200
    finally:
        service.stop()


def test_another_site_cannot_drive_the_simulator_through_a_visitors_browser(sandbox_app):
    app, _ = sandbox_app()
    web = app.test_client()
    body = {"wa_id": new_customer(), "name": "Forged"}
    for headers in (
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Referer": "https://attacker.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        answer = web.post("/sandbox/api/customers", json=body, base_url="http://localhost:8000", headers=headers)
        assert answer.status_code == 403, headers
        assert answer.json["error"] == "cross-site requests to the sandbox are refused"
    same = web.post(
        "/sandbox/api/customers",
        json=body,
        base_url="http://localhost:8000",
        headers={"Origin": "http://localhost:8000"},
    )
    assert same.status_code == 201
    assert web.delete(f"/sandbox/api/customers/{body['wa_id']}", base_url="http://localhost:8000").status_code == 204


def test_a_public_sandbox_behind_a_proxy_takes_writes_from_its_own_page_only(sandbox_app):
    app, sandbox = sandbox_app(public=True)
    web = app.test_client()

    def post(origin: str) -> int:
        return web.post(  # the proxy rewrote Host to its upstream and said which host the browser asked for
            "/sandbox/api/customers",
            json={"wa_id": new_customer(), "name": "Via proxy"},
            base_url="http://127.0.0.1:8000",
            headers={"Origin": origin, "X-Forwarded-Host": "bot.example", HEADER: sandbox.key},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        ).status_code

    assert post("https://bot.example") == 201
    assert post("https://attacker.example") == 403
    assert post("null") == 403


# 2. the sandbox signs with its own secret, hands out no signature, and posts only to itself ---------------------


class Catcher(http.server.ThreadingHTTPServer):
    """Any HTTP server on this machine that a forged ``Host`` could name: it counts what reaches it."""

    def __init__(self) -> None:
        self.received: list[str] = []
        catcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                catcher.received.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    server = Catcher()
    yield server
    server.shutdown()
    server.server_close()


def test_a_forged_host_does_not_send_the_sandboxs_webhooks_elsewhere(tmp_path, catcher):
    service = start_sandbox(tmp_path)
    customer = Simulator(service, new_customer())
    try:
        forged = {"Host": f"127.0.0.1:{catcher.server_address[1]}"}
        body = {"customer": customer.customer, "type": "text", "text": "where does this go?"}
        answer = service.http.post(service.url + "/sandbox/api/messages", json=body, headers=forged, timeout=10)
        assert answer.status_code == 202, answer.text
        assert "sha256=" not in answer.text
        [reply] = customer.wait_for_replies(1)  # delivered to the sandbox itself, and answered
        assert "where does this go?" in reply["request"]["text"]["body"]
        [ack] = customer.events("ack")
        assert (ack["status"], ack["url"], ack["via"]) == (200, "/whatsapp/webhook", "in-process")
        assert catcher.received == []
        assert "sha256=" not in service.get("/sandbox/api/conversation", customer=customer.customer, after="0").text
    finally:
        customer.remove()
        service.stop()


def test_the_sandbox_signs_with_its_own_secret_never_a_configured_one(tmp_path):
    """A sandbox cannot be started next to a live app secret at all; and what it signs with is its own."""
    with pytest.raises(ConfigError, match="whatsapp.app_secret is set but AK_WHATSAPP__ACCESS_TOKEN is not"):
        load(tmp_path, AK_WHATSAPP__APP_SECRET="the-live-app-secret")
    live = Settings(whatsapp=WhatsAppSettings(app_secret="the-live-app-secret", verify_token="live-verify"))
    sandboxed = configure(live, str(tmp_path / "instance"))  # even if a caller skipped the validation
    assert sandboxed.whatsapp.app_secret != "the-live-app-secret" and len(sandboxed.whatsapp.app_secret) == 64
    assert sandboxed.whatsapp.verify_token != "live-verify"


# 3. signed webhooks by default ---------------------------------------------------------------------------------


def test_an_access_token_without_an_app_secret_refuses_to_start(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    del env["AK_WHATSAPP__APP_SECRET"]
    result = start_app(tmp_path, env)
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert "whatsapp.app_secret is required with an access token" in line
    assert "AK_WHATSAPP__APP_SECRET" in line and "whatsapp.allow_unsigned" in line


def test_allow_unsigned_starts_but_warns_at_every_start_and_fails_the_doctor(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_service(workers=1, AK_WHATSAPP__APP_SECRET="", AK_WHATSAPP__ALLOW_UNSIGNED="true")
    assert service.post(wh.webhook(wh.text_message("unsigned but allowed")), secret=None).status_code == 200
    graph.wait_for_texts(1)
    assert service.health()["signature_check"] == "off"
    service.restart()
    assert service.logs().count("INSECURE: whatsapp.allow_unsigned is true") == 2  # once per start
    result = flask(["doctor"], service.env, tmp_path)
    assert result.returncode == 1
    assert "✘ whatsapp.app_secret is not set (whatsapp.allow_unsigned)" in result.stdout
    assert "fix: set AK_WHATSAPP__APP_SECRET" in result.stdout


@pytest.mark.parametrize("preload", [False, True])
def test_gunicorn_without_the_projects_config_file_refuses_to_start(tmp_path, fakes, preload):
    """Its hooks start each process's worker: without them a preloaded app would answer nothing, and each worker
    would take the store's one-server lock for itself."""
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    (tmp_path / "own.conf.py").write_text("workers = 2\n")
    command = [sys.executable, "-m", "gunicorn", "app:app", "--config", "own.conf.py"]
    command += ["--pythonpath", str(ROOT), "--bind", f"127.0.0.1:{free_port()}"] + (["--preload"] if preload else [])
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "Configuration error: gunicorn was started without this project's gunicorn.conf.py" in result.stderr, (
        result.stderr
    )
    assert "--config gunicorn.conf.py" in result.stderr
    assert not (tmp_path / "w.db").exists()  # refused before it opened the store


# low: doctor, /healthz, sandbox uploads and JSON ---------------------------------------------------------------


def test_doctor_masks_the_password_of_the_store_url(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    env["AK_STORE__URL"] = "redis://:hunter2-store-password@127.0.0.1:1/0"  # nothing listens on port 1
    result = flask(["doctor"], env, tmp_path)
    output = result.stdout + result.stderr
    assert "redis://:****@127.0.0.1:1/0" in output
    assert "hunter2-store-password" not in output


def test_healthz_tells_the_public_only_ok_and_the_queue_depth(service):
    public = service.http.get(service.url + "/healthz", timeout=10)
    assert public.status_code == 200 and public.json() == {"status": "ok", "queue": 0}
    wrong = service.http.get(service.url + "/healthz", headers={"Authorization": "Bearer guess"}, timeout=10)
    assert wrong.json() == {"status": "ok", "queue": 0}
    details = service.health()
    assert details["mode"] == "live" and details["signature_check"] == "on" and details["queue"] == 0
    assert set(details["store"]["messages"]) >= {"received", "claimed", "answered", "done", "failed"}
    assert HEALTH_TOKEN not in service.logs()


def test_sandbox_uploads_are_downloaded_never_rendered(sandbox_app):
    app, sandbox = sandbox_app()
    web = app.test_client()
    page = b"<html><script>fetch('/sandbox/api/customers')</script></html>"
    customer = new_customer()
    answer = web.post(
        "/sandbox/api/media",
        data={"customer": customer, "file": (io.BytesIO(page), "invoice.html", "text/html")},
        base_url="http://localhost",
    )
    assert answer.status_code == 202, answer.json
    media_id = answer.json["webhook"]["entry"][0]["changes"][0]["value"]["messages"][0]["document"]["id"]
    served = web.get(f"/sandbox/media/{media_id}", base_url="http://localhost")
    assert served.data == page
    assert served.headers["Content-Disposition"].startswith("attachment;")
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Security-Policy"] == "sandbox"
    sandbox.records.remove_customer(customer)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sandbox/api/customers", b"[1]"),
        ("/sandbox/api/messages", b'"text"'),
        ("/sandbox/api/messages", b"{not json"),
        ("/sandbox/api/messages", b"[" * 100_000 + b"]" * 100_000),
        ("/sandbox/api/seen", b'{"customer": "447700900123", "ids": 5}'),
        ("/sandbox/api/send", b"null"),
    ],
)
def test_malformed_sandbox_json_is_a_400_not_a_500(sandbox_app, path, body):
    app, _ = sandbox_app()
    answer = app.test_client().post(path, data=body, content_type="application/json", base_url="http://localhost")
    assert answer.status_code == 400, answer.data
    assert answer.json["error"]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/sandbox/api/messages", "application/json"),
        ("/sandbox/api/media", "multipart/form-data; boundary=x"),
        ("/sandbox/graph/v24.0/100000000000001/messages", "application/json"),
    ],
)
def test_sandbox_bodies_are_bounded_while_read(tmp_path, path, content_type):
    service = start_sandbox(tmp_path, workers=1)
    try:
        started = time.monotonic()
        status, sent = post_chunked(
            service.port, io.BufferedReader(Endless(96 * MiB)), {"Content-Type": content_type}, path
        )
        assert status == 413, (status, sent)
        assert sent < 32 * MiB, f"the server read {sent // MiB} MiB before answering"
        assert time.monotonic() - started < 20
    finally:
        service.stop()
