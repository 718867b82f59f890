"""Helpers for the sandbox tests: gunicorn with no AK_* or OPENAI_* at all, and the simulator's API."""

from __future__ import annotations

import os
import random
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whatsapp.cloud_api.sends import is_user_id
from whatsapp.testing.service import HEALTH_TOKEN, Service


def sandbox_environment(**extra: str) -> dict[str, str]:
    """The machine's environment without a single AK_*, OPENAI_* or REDIS_* variable (plus the health token, which
    is no live setting, and ``extra``)."""
    prefixes = ("AK_", "OPENAI_", "FLASK_", "REDIS_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.pop("PORT", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["AK_API__HEALTH_TOKEN"] = HEALTH_TOKEN
    env.update(extra)
    return env


def new_customer() -> str:
    """A fresh number for each test, so that a test reads only its own conversation."""
    return "4477009" + "".join(random.choices("0123456789", k=5))


def png(width: int = 4, height: int = 3) -> bytes:
    """A valid PNG with a teal-to-green gradient, made here (no image library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    def row(y: int) -> bytes:
        shade = y * 255 // max(1, height - 1)
        return b"\x00" + bytes((0, 168 - shade // 4, 132 - shade // 3)) * width

    rows = b"".join(row(y) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def start_sandbox(workdir: Path, workers: int = 2, **extra: str) -> Service:
    return Service(workdir, sandbox_environment(**extra), workers=workers).start()


class Simulator:
    """The simulator's JSON API, as the page uses it."""

    def __init__(self, service: Service, customer: str, name: str | None = "Test Customer") -> None:
        """Adds the customer with ``name``; ``name=None`` leaves that to the page."""
        self.service = service
        self.customer = customer
        if name is not None:
            response = service.http.post(
                service.url + "/sandbox/api/customers", json={"wa_id": customer, "name": name}, timeout=10
            )
            assert response.status_code == 201, response.text

    @classmethod
    def with_username(cls, service: Service, username: str, name: str = "Test Customer") -> Simulator:
        """A customer known only by ``username``: the simulator gives it a business-scoped user id, its key."""
        response = service.http.post(
            service.url + "/sandbox/api/customers",
            json={"kind": "username", "username": username, "name": name},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return cls(service, response.json()["wa_id"], name=None)

    def remove(self) -> None:
        """Forget this customer and its conversation."""
        self.service.http.delete(f"{self.service.url}/sandbox/api/customers/{self.customer}", timeout=10)

    def say(self, text: str, **extra: Any) -> str:
        body = {"customer": self.customer, "type": "text", "text": text, **extra}
        response = self.service.http.post(self.service.url + "/sandbox/api/messages", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def act(self, **body: Any) -> str:
        response = self.service.http.post(
            self.service.url + "/sandbox/api/messages", json={"customer": self.customer, **body}, timeout=10
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def upload(self, data: bytes, filename: str, mime_type: str, **form: str) -> str:
        response = self.service.http.post(
            self.service.url + "/sandbox/api/media",
            data={"customer": self.customer, **form},
            files={"file": (filename, data, mime_type)},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def send_as_business(self, payload: dict[str, Any]) -> Any:
        return self.service.http.post(
            self.service.url + "/sandbox/api/send",
            json={"recipient" if is_user_id(self.customer) else "to": self.customer, **payload},
            timeout=10,
        )

    def conversation(self) -> dict[str, Any]:
        response = self.service.get("/sandbox/api/conversation", customer=self.customer, after="0")
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.conversation()["events"] if kind is None or e["kind"] == kind]

    def wait(self, what: str, found: Callable[[dict[str, Any]], Any], timeout: float = 20) -> Any:
        """Poll the conversation until ``found(conversation)`` is truthy; return that value."""
        deadline = time.monotonic() + timeout
        while True:
            conversation = self.conversation()
            value = found(conversation)
            if value:
                return value
            if time.monotonic() > deadline:
                kinds = [e["kind"] for e in conversation["events"]]
                raise AssertionError(f"no {what} within {timeout}s; events: {kinds}\n{self.service.logs()[-3000:]}")
            time.sleep(0.1)

    def wait_for_replies(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The successful sends to this customer, once there are at least ``count``."""

        def replies(conversation: dict[str, Any]) -> list[dict[str, Any]]:
            sends = [e for e in conversation["events"] if e["kind"] == "send" and e["status"] == 200]
            return sends if len(sends) >= count else []

        return self.wait(f"{count} repl(ies)", replies, timeout)
