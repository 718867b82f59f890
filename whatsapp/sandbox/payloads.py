"""Webhook payloads shaped exactly like Meta's, for what the simulator's customers do.

Meta's reference: https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components.

The simulator builds what WhatsApp would deliver for a customer's action, so the service cannot tell the sandbox from
the real thing: same envelope, same ids, and (from :mod:`whatsapp.cloud_api.shapes`) the same escaping and the same
``X-Hub-Signature-256``. A customer known only by a username sends as Meta documents for one: its business-scoped
user id in ``from_user_id`` and ``contacts[].user_id``, its username in ``contacts[].profile``, and no ``from`` or
``wa_id`` at all (Meta withholds the phone number of such a customer).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..cloud_api.sends import is_user_id
from ..cloud_api.shapes import new_wamid

#: The sandbox business: one WhatsApp Business Account with one phone number.
PHONE_NUMBER_ID = "100000000000001"
DISPLAY_PHONE_NUMBER = "15550100000"
WABA_ID = "100000000000002"
VERIFIED_NAME = "Sandbox Business"


def new_user_id() -> str:
    """A business-scoped user id shaped like Meta's: a country code, a dot and 20 digits."""
    return "US." + str(10**19 + secrets.randbelow(9 * 10**19))


def message(sender: str, type_: str, content: Any, *, context_id: str | None = None) -> dict[str, Any]:
    """One ``messages[]`` item from ``sender`` (a phone number, or a business-scoped user id: then ``from_user_id``
    and no ``from``); ``context_id`` quotes one of our messages (a reply, a button tap)."""
    msg: dict[str, Any] = {}
    if context_id:
        msg["context"] = {"from": DISPLAY_PHONE_NUMBER, "id": context_id}
    msg["from_user_id" if is_user_id(sender) else "from"] = sender
    msg.update({"id": new_wamid(sender), "timestamp": str(int(time.time())), "type": type_})
    msg[type_] = content
    return msg


def webhook(
    message: dict[str, Any],
    profile_name: str,
    phone_number_id: str = PHONE_NUMBER_ID,
    username: str | None = None,
) -> dict[str, Any]:
    """The envelope around one customer message, with the sender's profile (and username) in ``contacts``."""
    contact: dict[str, Any] = {"profile": {"name": profile_name}}
    if username:
        contact["profile"]["username"] = username
    if "from" in message:
        contact["wa_id"] = message["from"]
    if "from_user_id" in message:
        contact["user_id"] = message["from_user_id"]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": phone_number_id},
        "contacts": [contact],
        "messages": [message],
    }
    return _envelope(value)


def status_webhook(
    statuses: list[tuple[str, str]], recipient: str, phone_number_id: str = PHONE_NUMBER_ID
) -> dict[str, Any]:
    """Status updates (``(wamid, status)`` pairs) of messages we sent to ``recipient`` (``recipient_user_id`` for a
    business-scoped user id)."""
    now = str(int(time.time()))
    items = [
        {
            "id": wamid,
            "status": status,
            "timestamp": now,
            "recipient_user_id" if is_user_id(recipient) else "recipient_id": recipient,
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
