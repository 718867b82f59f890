"""Builders for webhook payloads shaped exactly as Meta documents them:
https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components

A message builder returns the message object only; wrap it with :func:`webhook` (contacts built from the senders)
or :func:`envelope` (everything explicit), then :func:`dumps` and :func:`sign` it to POST it like Meta does::

    payload = webhook(text_message("Hello"), image_message("1234", caption="the receipt"))
    body = dumps(payload)
    headers = {"X-Hub-Signature-256": sign(body, APP_SECRET), "Content-Type": "application/json"}

Every message builder also accepts these keyword arguments (see :func:`message`):
``sender`` (the ``from`` wa_id; None leaves ``from`` out, for username-only users), ``id`` (default: a fresh
wamid; ``wamid`` in ``button_reply``/``list_reply`` whose ``id`` is the reply's), ``timestamp`` (default: now, as a
string; pass an int to send one), ``context_id`` (makes it a reply to that wamid), ``from_user_id``, ``forwarded``,
``frequently_forwarded``, ``referral`` and ``errors``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any

# Serialised and signed as the sandbox serialises and signs: one definition of each, here for a test's convenience.
from ..cloud_api.shapes import dumps as dumps
from ..cloud_api.shapes import new_wamid as new_wamid
from ..cloud_api.shapes import sign as sign

PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
WABA_ID = "102290129340398"
DEFAULT_SENDER = "16315551234"
DEFAULT_USER_ID = "US.13491208655302741918"
DEFAULT_CATALOG_ID = "194836987003835"


#: An hour before the tests started: ordered timestamps count from it (``str(RECENT + n)``). A fixed date would
#: fall out of the retention window, and the service drops a message sent before it.
RECENT = int(time.time()) - 3600


def _sha256() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _now() -> str:
    return str(int(time.time()))


def error(code: int, title: str, message: str | None = None, details: str | None = None) -> dict:
    """One entry of an ``errors`` array, as on failed statuses, unsupported messages and value errors."""
    entry: dict[str, Any] = {"code": code, "title": title, "message": message if message is not None else title}
    entry["error_data"] = {"details": details if details is not None else title}
    return entry


def message(
    type_: str,
    content: Any = None,
    *,
    sender: str | None = DEFAULT_SENDER,
    id: str | None = None,
    timestamp: str | int | None = None,
    context_id: str | None = None,
    from_user_id: str | None = None,
    forwarded: bool = False,
    frequently_forwarded: bool = False,
    referral: dict | None = None,
    errors: list[dict] | None = None,
) -> dict:
    """Any message object: ``type_`` plus its content under the key of the same name (left out when None)."""
    msg: dict[str, Any] = {}
    if context_id is not None or forwarded or frequently_forwarded:
        context: dict[str, Any] = {}
        if context_id is not None:
            context.update({"from": DISPLAY_NUMBER, "id": context_id})
        if forwarded:
            context["forwarded"] = True
        if frequently_forwarded:
            context["frequently_forwarded"] = True
        msg["context"] = context
    if sender is not None:
        msg["from"] = sender
    if from_user_id is not None:
        msg["from_user_id"] = from_user_id
    msg["id"] = id if id is not None else new_wamid(sender or from_user_id or DEFAULT_SENDER)
    msg["timestamp"] = timestamp if timestamp is not None else _now()
    if referral is not None:
        msg["referral"] = referral
    if errors is not None:
        msg["errors"] = errors
    msg["type"] = type_
    if content is not None:
        msg[type_] = content
    return msg


def text_message(
    body: str,
    sender: str | None = DEFAULT_SENDER,
    id: str | None = None,
    timestamp: str | int | None = None,
    context_id: str | None = None,
    **common: Any,
) -> dict:
    return message("text", {"body": body}, sender=sender, id=id, timestamp=timestamp, context_id=context_id, **common)


def _media(media_id: str, mime_type: str, extra: dict, url: str | None) -> dict:
    content: dict[str, Any] = {"mime_type": mime_type, "sha256": _sha256(), "id": media_id}
    if url is not None:
        content["url"] = url
    content.update({k: v for k, v in extra.items() if v is not None})
    return content


def image_message(
    media_id: str,
    caption: str | None = None,
    mime_type: str = "image/jpeg",
    sender: str | None = DEFAULT_SENDER,
    url: str | None = None,
    **common: Any,
) -> dict:
    return message("image", _media(media_id, mime_type, {"caption": caption}, url), sender=sender, **common)


def video_message(
    media_id: str,
    caption: str | None = None,
    mime_type: str = "video/mp4",
    sender: str | None = DEFAULT_SENDER,
    url: str | None = None,
    **common: Any,
) -> dict:
    return message("video", _media(media_id, mime_type, {"caption": caption}, url), sender=sender, **common)


def audio_message(
    media_id: str,
    voice: bool = True,
    mime_type: str = "audio/ogg; codecs=opus",
    sender: str | None = DEFAULT_SENDER,
    url: str | None = None,
    **common: Any,
) -> dict:
    return message("audio", _media(media_id, mime_type, {"voice": voice}, url), sender=sender, **common)


def document_message(
    media_id: str,
    filename: str,
    mime_type: str = "application/pdf",
    caption: str | None = None,
    sender: str | None = DEFAULT_SENDER,
    url: str | None = None,
    **common: Any,
) -> dict:
    extra = {"filename": filename, "caption": caption}
    return message("document", _media(media_id, mime_type, extra, url), sender=sender, **common)


def sticker_message(
    media_id: str,
    animated: bool = False,
    mime_type: str = "image/webp",
    sender: str | None = DEFAULT_SENDER,
    url: str | None = None,
    **common: Any,
) -> dict:
    extra = {"animated": animated}
    return message("sticker", _media(media_id, mime_type, extra, url), sender=sender, **common)


def location_message(
    latitude: float,
    longitude: float,
    name: str | None = None,
    address: str | None = None,
    url: str | None = None,
    sender: str | None = DEFAULT_SENDER,
    **common: Any,
) -> dict:
    content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    content.update({k: v for k, v in {"name": name, "address": address, "url": url}.items() if v is not None})
    return message("location", content, sender=sender, **common)


def contact_card(formatted_name: str, phones: Iterable[str] = (), emails: Iterable[str] = ()) -> dict:
    """One shared contact card, for :func:`contacts_message`."""
    first, _, last = formatted_name.partition(" ")
    name = {"formatted_name": formatted_name, "first_name": first}
    if last:
        name["last_name"] = last
    card: dict[str, Any] = {"name": name}
    card["phones"] = [{"phone": p, "wa_id": "".join(c for c in p if c.isdigit()), "type": "CELL"} for p in phones]
    emails = list(emails)
    if emails:
        card["emails"] = [{"email": e, "type": "WORK"} for e in emails]
    return card


def contacts_message(
    formatted_name: str = "Barbara Johnson",
    phones: Iterable[str] = ("+1 (940) 555-1234",),
    emails: Iterable[str] = (),
    sender: str | None = DEFAULT_SENDER,
    cards: Sequence[dict] | None = None,
    **common: Any,
) -> dict:
    """One contact card built from the arguments, or ``cards`` (from :func:`contact_card`) when given."""
    content = list(cards) if cards is not None else [contact_card(formatted_name, phones, emails)]
    return message("contacts", content, sender=sender, **common)


def button_reply(
    id: str, title: str, sender: str | None = DEFAULT_SENDER, wamid: str | None = None, **common: Any
) -> dict:
    """A tap on one of our reply buttons; ``wamid`` is the message id (``id`` is the button's)."""
    content = {"type": "button_reply", "button_reply": {"id": id, "title": title}}
    return message("interactive", content, sender=sender, id=wamid, **common)


def list_reply(
    id: str,
    title: str,
    description: str | None = None,
    sender: str | None = DEFAULT_SENDER,
    wamid: str | None = None,
    **common: Any,
) -> dict:
    """A choice from one of our lists; ``wamid`` is the message id (``id`` is the row's)."""
    row = {"id": id, "title": title}
    if description is not None:
        row["description"] = description
    return message("interactive", {"type": "list_reply", "list_reply": row}, sender=sender, id=wamid, **common)


def nfm_reply(
    response_json: str | dict | None = None,
    body: str = "Sent",
    name: str = "flow",
    sender: str | None = DEFAULT_SENDER,
    **common: Any,
) -> dict:
    """A Flow's answer; ``response_json`` is sent as a JSON string, like Meta does."""
    if response_json is None:
        response_json = {"flow_token": "unused"}
    if not isinstance(response_json, str):
        response_json = json.dumps(response_json, separators=(",", ":"))
    content = {"type": "nfm_reply", "nfm_reply": {"name": name, "body": body, "response_json": response_json}}
    return message("interactive", content, sender=sender, **common)


def template_button(payload: str, text: str, sender: str | None = DEFAULT_SENDER, **common: Any) -> dict:
    """A tap on a template's quick-reply button."""
    return message("button", {"payload": payload, "text": text}, sender=sender, **common)


def reaction_message(message_id: str, emoji: str | None, sender: str | None = DEFAULT_SENDER, **common: Any) -> dict:
    """``emoji=""`` (or None, which leaves the key out) is how Meta reports a removed reaction."""
    content = {"message_id": message_id}
    if emoji is not None:
        content["emoji"] = emoji
    return message("reaction", content, sender=sender, **common)


def order_item(product_retailer_id: str, quantity: int = 1, item_price: float = 9.99, currency: str = "USD") -> dict:
    return {
        "product_retailer_id": product_retailer_id,
        "quantity": quantity,
        "item_price": item_price,
        "currency": currency,
    }


def order_message(
    items: Sequence[dict] | None = None,
    catalog_id: str = DEFAULT_CATALOG_ID,
    text: str | None = None,
    sender: str | None = DEFAULT_SENDER,
    **common: Any,
) -> dict:
    """A cart from our catalog; ``items`` are :func:`order_item` dicts (default: one item)."""
    content: dict[str, Any] = {"catalog_id": catalog_id}
    if text is not None:
        content["text"] = text
    content["product_items"] = list(items) if items is not None else [order_item("sku-1")]
    return message("order", content, sender=sender, **common)


def system_message(
    body: str = "User A changed from +1 631-555-1234 to +1 631-555-9876",
    system_type: str = "user_changed_number",
    new_wa_id: str | None = "16315559876",
    sender: str | None = DEFAULT_SENDER,
    **common: Any,
) -> dict:
    """A notice from WhatsApp; :func:`webhook` builds no contacts entry for it, like Meta."""
    content: dict[str, Any] = {"body": body, "type": system_type}
    if new_wa_id is not None:
        content["new_wa_id"] = new_wa_id
    return message("system", content, sender=sender, **common)


def edit_message(original_message_id: str, new: str | dict, sender: str | None = DEFAULT_SENDER, **common: Any) -> dict:
    """The customer edited ``original_message_id``; ``new`` is the new text, or a message dict (its id, from and
    timestamp are stripped, as the nested message carries none)."""
    if isinstance(new, str):
        nested: dict[str, Any] = {"type": "text", "text": {"body": new}}
    else:
        nested = {k: v for k, v in new.items() if k not in ("id", "from", "from_user_id", "timestamp")}
    content = {"original_message_id": original_message_id, "message": nested}
    return message("edit", content, sender=sender, **common)


def revoke_message(original_message_id: str, sender: str | None = DEFAULT_SENDER, **common: Any) -> dict:
    """The customer deleted ``original_message_id``."""
    return message("revoke", {"original_message_id": original_message_id}, sender=sender, **common)


def unsupported_message(
    code: int = 131051,
    title: str = "Message type unknown",
    details: str = "Message type is currently not supported.",
    unsupported_type: str | None = None,
    type_: str = "unsupported",
    sender: str | None = DEFAULT_SENDER,
    **common: Any,
) -> dict:
    """A message Meta cannot render: only ``errors`` (``type_="unknown"`` is the older name)."""
    msg = message(type_, sender=sender, errors=[error(code, title, details=details)], **common)
    if unsupported_type is not None:
        msg["unsupported"] = {"type": unsupported_type}
    return msg


def status(
    wamid: str,
    status: str = "delivered",
    recipient_id: str = DEFAULT_SENDER,
    errors: list[dict] | None = None,
    timestamp: str | int | None = None,
    conversation_id: str | None = None,
    pricing_category: str = "service",
) -> dict:
    """A status of a message we sent; a ``failed`` one carries ``errors`` and no pricing."""
    st: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": timestamp if timestamp is not None else _now(),
        "recipient_id": recipient_id,
    }
    if conversation_id is not None:
        st["conversation"] = {"id": conversation_id, "origin": {"type": pricing_category}}
    if status != "failed":
        st["pricing"] = {"billable": True, "pricing_model": "PMP", "category": pricing_category}
    if errors is not None:
        st["errors"] = errors
    return st


def envelope(
    messages: Iterable[dict] = (),
    statuses: Iterable[dict] = (),
    contacts: list[dict] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    errors: list[dict] | None = None,
) -> dict:
    """One entry with one ``messages`` change; keys Meta leaves out when empty are left out."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    messages, statuses = list(messages), list(statuses)
    if messages:
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    if errors is not None:
        value["errors"] = errors
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }


def contact(
    wa_id: str | None = DEFAULT_SENDER,
    profile_name: str | None = "Kerry Fisher",
    user_id: str | None = None,
    username: str | None = None,
) -> dict:
    """One ``contacts[]`` entry of the envelope (the sender's profile)."""
    profile: dict[str, Any] = {}
    if profile_name is not None:
        profile["name"] = profile_name
    if username is not None:
        profile["username"] = username
    entry: dict[str, Any] = {"profile": profile}
    if wa_id is not None:
        entry["wa_id"] = wa_id
    if user_id is not None:
        entry["user_id"] = user_id
    return entry


def webhook(
    *messages: dict,
    statuses: Iterable[dict] = (),
    profile_name: str = "Kerry Fisher",
    phone_number_id: str = PHONE_NUMBER_ID,
    username: str | None = None,
    errors: list[dict] | None = None,
) -> dict:
    """An envelope around ``messages`` with one contact per sender (none for ``system`` messages)."""
    contacts: list[dict] = []
    seen: set[tuple[str | None, str | None]] = set()
    for msg in messages:
        key = (msg.get("from"), msg.get("from_user_id"))
        if msg.get("type") == "system" or key in seen or key == (None, None):
            continue
        seen.add(key)
        contacts.append(contact(key[0], profile_name, user_id=key[1], username=username))
    return envelope(messages, statuses, contacts=contacts or None, phone_number_id=phone_number_id, errors=errors)


def combine(*payloads: dict) -> dict:
    """Several webhook payloads as one POST with several entries, as Meta batches them."""
    return {"object": "whatsapp_business_account", "entry": [e for p in payloads for e in p["entry"]]}
