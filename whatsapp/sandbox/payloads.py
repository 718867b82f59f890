"""Webhook payloads shaped exactly like Meta's, serialised and signed like Meta.

Meta's reference: https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components.

The simulator builds what WhatsApp would deliver for a customer's action, so the service cannot tell the sandbox from
the real thing: same envelope, same ids, same escaping, same ``X-Hub-Signature-256``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

#: The sandbox business: one WhatsApp Business Account with one phone number.
PHONE_NUMBER_ID = "100000000000001"
DISPLAY_PHONE_NUMBER = "15550100000"
WABA_ID = "100000000000002"
VERIFIED_NAME = "Sandbox Business"


def new_wamid(chat: str) -> str:
    """A unique id shaped like Meta's: ``wamid.`` + base64 of a small protobuf naming the chat and a random id."""
    number = chat.encode()[:120]
    inner = secrets.token_hex(10).upper().encode()
    blob = b"\x15\x02\x00\x11\x18" + bytes([len(number)]) + number + b"\x12" + bytes([len(inner)]) + inner + b"\x00"
    return "wamid." + base64.b64encode(blob).decode()


def new_media_id() -> str:
    """Meta's media ids are 15-16 digit numbers, as strings."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


def sha256_b64(data: bytes) -> str:
    """The hash as inbound webhooks carry it (base64); the media lookup gives it as hex."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def message(sender: str, type_: str, content: Any, *, context_id: str | None = None) -> dict[str, Any]:
    """One ``messages[]`` item from ``sender``; ``context_id`` quotes one of our messages (a reply, a button tap)."""
    msg: dict[str, Any] = {}
    if context_id:
        msg["context"] = {"from": DISPLAY_PHONE_NUMBER, "id": context_id}
    msg.update({"from": sender, "id": new_wamid(sender), "timestamp": str(int(time.time())), "type": type_})
    msg[type_] = content
    return msg


def webhook(message: dict[str, Any], profile_name: str, phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    """The envelope around one customer message, with the sender's profile in ``contacts``."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": profile_name}, "wa_id": message["from"]}],
        "messages": [message],
    }
    return _envelope(value)


def status_webhook(
    statuses: list[tuple[str, str]], recipient: str, phone_number_id: str = PHONE_NUMBER_ID
) -> dict[str, Any]:
    """Status updates (``(wamid, status)`` pairs) of messages we sent to ``recipient``."""
    now = str(int(time.time()))
    items = [
        {
            "id": wamid,
            "status": status,
            "timestamp": now,
            "recipient_id": recipient,
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "service"},
        }
        for wamid, status in statuses
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": phone_number_id},
        "statuses": items,
    }
    return _envelope(value)


def _envelope(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }


def dumps(payload: Any) -> bytes:
    """Serialise like Meta: compact, non-ASCII escaped as ``\\uXXXX`` and ``/`` as ``\\/``."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode("ascii")


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header for the exact bytes sent."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
