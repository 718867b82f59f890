"""Sandbox mode: the service with no Meta account at all, and ``/simulator`` to talk to it from a browser.

Sandbox mode is configuration, not another code path. When nothing live is configured (the settings refuse a
sandbox next to a verify token, app secret or phone number id, or on a Redis store), :func:`configure` points
``whatsapp.graph_url`` at a fake Graph API served by the app itself and generates the secrets Meta would have given
(an access token, an app secret, a verify token), stored once in the instance folder so that every worker process
agrees on them. :func:`init_app` mounts the fake Graph API, routes the Graph client's calls to it in-process, and
serves the simulator, whose every action is a real signed webhook to ``/whatsapp/webhook``, delivered in-process
too. Only this machine may use the sandbox, unless ``sandbox.public`` opens it to holders of a key (see
:mod:`.guard`).
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import socket
import sys
from dataclasses import replace
from urllib.parse import urlsplit

import requests
from flask import Flask

from ..client import GraphClient
from ..config import Settings
from ..private_files import private_database
from . import guard
from .payloads import PHONE_NUMBER_ID
from .records import Records
from .state import Sandbox, current_sandbox, install
from .transport import WsgiAdapter

__all__ = ["GRAPH_URL", "Sandbox", "announce", "configure", "current_sandbox", "init_app"]

log = logging.getLogger("whatsapp.sandbox")

#: The Graph URL in sandbox mode: a name that never resolves (``.invalid``), answered by the app in-process.
ORIGIN = "http://sandbox.whatsapp.invalid"
GRAPH_URL = f"{ORIGIN}/sandbox/graph"
DATABASE = "sandbox.db"
#: Customers the simulator starts with (numbers from ranges reserved for fiction).
DEFAULT_CUSTOMERS = (("447700900123", "Ada Lovelace"), ("16505550123", "Grace Hopper"))


_opened: dict[str, Records] = {}


def configure(settings: Settings, instance_path: str) -> Settings:
    """Complete ``settings`` for sandbox mode; the generated values are shared by every process of this instance.

    The sandbox always signs with its own generated app secret, never with a configured one: what it signs is
    whatever a visitor typed, and a live secret would turn it into a signing service for the real webhook.
    """
    records = _records(instance_path)
    sandboxed = replace(
        settings.whatsapp,
        graph_url=GRAPH_URL,
        access_token=records.secret("access_token", lambda: "sandbox-" + secrets.token_urlsafe(32)),
        app_secret=records.secret("app_secret", lambda: secrets.token_hex(32)),
        verify_token=records.secret("verify_token", lambda: secrets.token_urlsafe(16)),
        phone_number_id=PHONE_NUMBER_ID,
    )
    media = replace(settings.api, media_hosts=(urlsplit(ORIGIN).hostname,))  # its fake Graph serves the media
    return replace(settings, whatsapp=sandboxed, api=media)


def init_app(app: Flask, client: GraphClient, public: bool = False) -> None:
    """Serve the fake Graph API and the simulator, and answer ``client``'s Graph calls in-process.

    ``public``: answer other machines too, when they present the key printed at start (else loopback only).
    """
    from .graph import bp as graph_bp
    from .simulator import bp as simulator_bp

    records = _records(app.instance_path)
    records.prune()
    for wa_id, name in DEFAULT_CUSTOMERS:
        records.add_customer(wa_id, name, keep_name=True)
    key = records.secret("public_key", lambda: secrets.token_urlsafe(24))
    in_process = WsgiAdapter(app, {guard.INTERNAL: True})
    webhooks = requests.Session()
    webhooks.mount(ORIGIN + "/", in_process)
    install(app, Sandbox(records=records, client=client, webhooks=webhooks, public=public, key=key))
    client.mount(ORIGIN + "/", in_process)
    app.register_blueprint(graph_bp)
    app.register_blueprint(simulator_bp)

    logging.getLogger("werkzeug").addFilter(_quiet_polling)


def announce(app: Flask, server: int) -> None:
    """Log the simulator's address, once for the run of the server ``server`` (a pid), as a server does at start."""
    sandbox = current_sandbox(app)
    if sandbox.records.claim_run(server):  # one line per run, not one per worker process
        address = _address() or "http://<this server>"
        if sandbox.public:
            where = f"open {address}/simulator?key={sandbox.key} (public: anyone with this address and key may use it)"
        else:
            where = f"open {address}/simulator on this machine (only local browsers are answered)"
        log.warning(
            "sandbox mode: no access token set; %s (Graph API calls are answered in-process; "
            "set AK_WHATSAPP__ACCESS_TOKEN to go live)",
            where,
        )


def _quiet_polling(record: logging.LogRecord) -> bool:
    """``flask run`` logs every request; the simulator asks for new events several times a second."""
    args = record.args if isinstance(record.args, tuple) else ()
    polled = len(args) == 3 and str(args[0]).startswith("GET /sandbox/api/conversation?") and "200" in str(args[1])
    return not polled


def _records(instance_path: str) -> Records:
    path = os.path.join(os.path.abspath(instance_path), DATABASE)
    if path not in _opened:
        private_database(path)
        _opened[path] = Records(path)
    return _opened[path]


def _address() -> str | None:
    """``http://host:port`` this server listens on: its listening socket, else the command line, else None."""
    bound = _listening_socket() or _bind_from_command_line()
    if bound is None:
        return None
    host, port = bound
    if host in ("", "0.0.0.0", "::", "127.0.0.1", "::1"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _listening_socket() -> tuple[str, int] | None:
    """A TCP socket this process inherited and listens on (a gunicorn worker's, for instance)."""
    try:
        descriptors = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return None
    for fd in descriptors:
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    host, port = sock.getsockname()[:2]
                    return host, port
        except OSError:
            continue
    return None


def _bind_from_command_line() -> tuple[str, int] | None:
    """gunicorn's ``--bind``/``-b`` or ``$PORT``; ``flask run``'s ``--port``; each tool's default."""
    args = sys.argv[1:] + shlex.split(os.environ.get("GUNICORN_CMD_ARGS", ""))
    program = os.path.basename(os.path.dirname(sys.argv[0]) if sys.argv[0].endswith("__main__.py") else sys.argv[0])
    value = _option(args, "-b", "--bind")
    if value is not None:
        host, _, port = value.rpartition(":")
        return (host.strip("[]"), int(port)) if port.isdigit() else None
    if os.environ.get("PORT", "").isdigit():
        return "0.0.0.0", int(os.environ["PORT"])
    if program.startswith("gunicorn"):
        return "127.0.0.1", 8000
    if program.startswith("flask") and "run" in args:
        port = _option(args, "-p", "--port") or os.environ.get("FLASK_RUN_PORT") or "5000"
        return ("127.0.0.1", int(port)) if port.isdigit() else None
    return None


def _option(args: list[str], short: str, long: str) -> str | None:
    for i, arg in enumerate(args):
        if arg in (short, long) and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
        if arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            return arg[len(short) :]
    return None
