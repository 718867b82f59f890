"""The bytes, ids and records Meta hands out: how a webhook is serialised and signed, what a message id and a media
id look like, and the answers to a send, a media lookup and a phone-number lookup.

Meta's references: https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components,
/reference/messages, /reference/media and /reference/phone-numbers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any


def dumps(payload: Any) -> bytes:
    """Serialise like Meta: compact, non-ASCII escaped as ``\\uXXXX`` and ``/`` as ``\\/``."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode("ascii")


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value for ``body`` (the exact bytes sent)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def new_wamid(chat: str) -> str:
    """A unique id shaped like Meta's: ``wamid.`` + base64 of a small protobuf naming the chat and a random id.

    The chat is in it, as in Meta's: a log line with a message id is a log line with the customer's number.
    """
    number = chat.encode()[:120]
    inner = secrets.token_hex(10).upper().encode()
    blob = b"\x1c\x18" + bytes([len(number)]) + number + b"\x15\x02\x00\x12\x18" + bytes([len(inner)]) + inner + b"\x00"
    return "wamid." + base64.b64encode(blob).decode()


def new_media_id() -> str:
    """Meta's media ids are 15-16 digit numbers, as strings."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


def sha256_b64(data: bytes) -> str:
    """The hash as inbound webhooks carry it (base64); the media lookup gives it as hex."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def recipient_of(body: dict) -> str:
    """Who a send is addressed to: ``to`` (a phone number) or ``recipient`` (a business-scoped user id)."""
    return str(body.get("to") or body.get("recipient") or "")


def sent(body: dict, wamid: str) -> dict[str, Any]:
    """The answer to an accepted send: the recipient as given and as resolved, and the new message's id."""
    to = recipient_of(body)
    if "to" in body:
        contact = {"input": to, "wa_id": "".join(c for c in to if c.isdigit())}
    else:
        contact = {"input": to, "user_id": to}
    return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}


def media_record(media_id: str, url: str, mime_type: str, sha256: str, file_size: int | str) -> dict[str, Any]:
    """The answer to ``GET /<media_id>``: a download URL (valid 5 minutes), the hex ``sha256`` and the size
    (a number, or a numeric string: Meta sends either)."""
    return {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": mime_type,
        "sha256": sha256,
        "file_size": file_size,
        "id": media_id,
    }


def display_number(digits: str) -> str:
    """A phone number as Meta displays it: ``15550100000`` -> ``+1 555-010-0000``."""
    return f"+{digits[0]} {digits[1:4]}-{digits[4:7]}-{digits[7:]}"


def phone_number_record(phone_number_id: str, verified_name: str, display_digits: str) -> dict[str, Any]:
    """The answer to ``GET /<phone_number_id>``: the business number as ``doctor`` reads it."""
    return {
        "verified_name": verified_name,
        "code_verification_status": "VERIFIED",
        "display_phone_number": display_number(display_digits),
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "id": phone_number_id,
    }
