"""``GET /healthz``: ok or not and the queue's depth for anyone (a PaaS health check), the details for the operator.

The details (mode, agent, store kind and counts, worker, signature checking, version) tell an attacker what runs
here and how busy it is, so they are shown only to ``Authorization: Bearer <api.health_token>``; without that
setting, to no one. Never a secret either way.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from .errors import StoreUnavailable
from .extension import current_service

bp = Blueprint("health", __name__)

VERSION = "0.1.0"


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    service = current_service()
    settings = service.settings
    try:
        stats = service.store.stats()
    except StoreUnavailable:
        stats = None
    queue = stats.open if stats else None
    if not _authorised(settings.api.health_token):
        if stats is None:
            return jsonify({"status": "degraded"}), 503
        return jsonify({"status": "ok", "queue": queue})
    body = {
        "status": "ok",
        "mode": settings.mode,
        "version": VERSION,
        "signature_check": "on" if settings.signature_required else "off",
        "agent": settings.whatsapp.agent,
        "store": {"kind": settings.store.url.split(":", 1)[0], "reachable": True},
        "worker": {"threads": settings.worker.threads, "running": service.worker.running},
    }
    if stats is None:
        body["status"] = "degraded"
        body["store"]["reachable"] = False
        return jsonify(body), 503
    body["queue"] = queue
    body["store"].update(stats.as_dict())
    return jsonify(body)


def _authorised(token: str | None) -> bool:
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())
