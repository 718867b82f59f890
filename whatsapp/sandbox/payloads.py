"""Webhook payloads shaped exactly like Meta's, for what the simulator's customers do.

Meta's reference: https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components.

The simulator builds what WhatsApp would deliver for a customer's action, so the service cannot tell the sandbox from
the real thing: same envelope, same ids, and (from :mod:`whatsapp.cloud_api.shapes`) the same escaping and the same
``X-Hub-Signature-256``.
"""

from __future__ import annotations

import time
from typing import Any

from ..cloud_api.shapes import new_wamid

#: The sandbox business: one WhatsApp Business Account with one phone number.
PHONE_NUMBER_ID = "100000000000001"
DISPLAY_PHONE_NUMBER = "15550100000"
WABA_ID = "100000000000002"
VERIFIED_NAME = "Sandbox Business"


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
