"""Who may use the sandbox: this machine only, or, with ``sandbox.public``, whoever holds the key printed at start.

The sandbox's pages and APIs show every simulated conversation and spend the configured model's key, so by default
they answer only a browser on this machine: a loopback peer, with no proxy in between (no forwarding header), asking
for a loopback host name (a DNS-rebinding page names its own host and is refused). With ``sandbox.public: true``
every client must present the key, once as ``?key=`` (the answer sets it as a cookie and drops it from the address)
or in an ``X-Sandbox-Key`` header. Calls the app makes to itself in-process (the Graph client, the simulator's
webhooks) carry a WSGI environ mark that no HTTP client can set, and pass.

Writes (``POST``, ``DELETE``) from a browser must come from the sandbox's own page: an ``Origin`` (or ``Referer``)
naming another host is refused, so another site cannot drive the simulator through a visitor's browser.
"""

from __future__ import annotations

import hmac
from ipaddress import ip_address
from urllib.parse import urlsplit

from flask import Request, Response, jsonify, redirect, request

from .state import current_sandbox

#: Set in the WSGI environ of the app's calls to itself (see :class:`~whatsapp.sandbox.transport.WsgiAdapter`).
INTERNAL = "whatsapp.sandbox.internal"
PAGE = "/simulator"
COOKIE = "sandbox_key"
HEADER = "X-Sandbox-Key"
_FORWARDING = ("X-Forwarded-For", "X-Forwarded-Host", "Forwarded", "X-Real-IP")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def check() -> Response | None:
    """The sandbox blueprints' ``before_request``: let the request through, or answer it with a refusal."""
    sandbox = current_sandbox()
    return refusal(request, public=sandbox.public, key=sandbox.key)


def refusal(incoming: Request, *, public: bool, key: str) -> Response | None:
    """``None`` when ``incoming`` may use the sandbox, else the answer that refuses it."""
    if incoming.environ.get(INTERNAL):
        return None
    if incoming.method in ("POST", "PUT", "PATCH", "DELETE") and _cross_site(incoming):
        return _refuse(403, "cross-site requests to the sandbox are refused")
    if not public:
        if _from_this_machine(incoming):
            return None
        return _refuse(
            403,
            "the sandbox answers only on this machine (open http://localhost:<port>/simulator there); "
            "set AK_SANDBOX__PUBLIC=true to open it to others with the key printed at start",
        )
    offered = incoming.headers.get(HEADER) or incoming.cookies.get(COOKIE) or incoming.args.get("key") or ""
    if not hmac.compare_digest(offered.encode(), key.encode()):
        return _refuse(401, "the sandbox is public with a key: open the address with ?key= printed at start")
    if incoming.path == PAGE and "key" in incoming.args:
        # Remember the key in a cookie and drop it from the address bar, history and later Referer headers.
        response = redirect(PAGE, code=303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="Strict", secure=incoming.is_secure)
        return response
    return None


def _from_this_machine(request: Request) -> bool:
    if any(name in request.headers for name in _FORWARDING):
        return False  # a proxy or tunnel on this machine relays someone else
    try:
        if not ip_address(request.remote_addr or "").is_loopback:
            return False
    except ValueError:
        return False
    return _hostname(request.host) in _LOOPBACK_NAMES or _hostname(request.host).endswith(".localhost")


def _cross_site(request: Request) -> bool:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return False  # not a browser's cross-site request (curl, the tests, the app itself)
    # Behind a proxy that rewrites Host, the address the browser used is in X-Forwarded-Host (a header no other
    # site's page can make a browser send).
    ours = {request.host.lower(), request.headers.get("X-Forwarded-Host", request.host).lower()}
    return urlsplit(source).netloc.lower() not in ours


def _hostname(host: str) -> str:
    """``request.host`` without its port (``[::1]:8000`` -> ``::1``)."""
    host = host.lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _refuse(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response
