"""The sandbox as the Flask app holds it, and the one typed way to reach it from its blueprints and commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, current_app

from ..client import GraphClient
from .model import RecordedModel
from .records import Records

KEY = "sandbox"


@dataclass
class Sandbox:
    """What ``init_app`` set up for the sandbox's blueprints: its records, the service's client, its webhook poster."""

    records: Records
    client: GraphClient
    #: Posts the simulator's webhooks to this very app, in-process (never to an address a request named).
    webhooks: requests.Session
    public: bool
    key: str

    def watch_model(self, model: Any) -> RecordedModel:
        """``model`` with each request kept for the simulator's inspector."""
        return RecordedModel(model, self.records)


def install(app: Flask, sandbox: Sandbox) -> None:
    app.extensions[KEY] = sandbox


def current_sandbox(app: Flask | None = None) -> Sandbox:
    """The sandbox of ``app``, or of the current app (in a request, a ``flask`` command or an app context)."""
    return (app or current_app).extensions[KEY]
