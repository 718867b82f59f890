"""``GET /`` of a live server: one line naming the service, for whoever opens its address in a browser."""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("home", __name__)


@bp.get("/")
def home() -> Response:
    return Response(
        "WhatsApp agent service: Meta delivers to /whatsapp/webhook; health at /healthz.\n", mimetype="text/plain"
    )
