"""The service as the Flask app holds it, and the one typed way to reach it from a request, a command or a hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:  # the blueprints import this module: they reach these through the service, never import them
    from .config import Settings
    from .handler import AgentWhatsAppRequestHandler
    from .store import Store
    from .worker import Worker

KEY = "whatsapp"


@dataclass
class WhatsAppService:
    """The parts ``create_app`` wires once per process, which the blueprints and commands use."""

    settings: Settings
    store: Store
    worker: Worker
    handler: AgentWhatsAppRequestHandler


def install(app: Flask, service: WhatsAppService) -> None:
    app.extensions[KEY] = service


def is_whatsapp_app(app: object) -> bool:
    """Whether ``app`` is one ``create_app`` built (gunicorn.conf.py also serves the bench's bare Flask app)."""
    return isinstance(app, Flask) and KEY in app.extensions


def current_service(app: Flask | None = None) -> WhatsAppService:
    """The service of ``app``, or of the current app (in a request, a ``flask`` command or an app context)."""
    return (app or current_app).extensions[KEY]
