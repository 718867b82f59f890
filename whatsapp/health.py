"""``GET /healthz``: what an operator or a PaaS health check needs to know, and no secret."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from .store import StoreUnavailable

bp = Blueprint("health", __name__)

VERSION = "0.1.0"


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    service = current_app.extensions["whatsapp"]
    settings = service.settings
    body = {
        "status": "ok",
        "mode": settings.mode,
        "version": VERSION,
        "signature_check": "on" if settings.signature_required else "off",
        "agent": settings.whatsapp.agent,
        "store": {"kind": settings.store.url.split(":", 1)[0], "reachable": True},
        "worker": {"threads": settings.worker.threads, "running": service.worker.running},
    }
    try:
        body["store"].update(service.store.stats())
    except StoreUnavailable:
        body["status"] = "degraded"
        body["store"]["reachable"] = False
        return jsonify(body), 503
    return jsonify(body)
