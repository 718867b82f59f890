"""Webhook JSON -> typed, frozen inbound values, parsed once at the edge.

Modelled on pywa's ``pywa/types/``: one frozen dataclass per update type, so the rest of the service never digs
in raw dicts. Meta's payloads grow new types and fields over time and any producer can send garbage, so parsing
never raises: whatever ``json.loads`` can produce becomes a :class:`Webhook`, and everything odd is written to
``Webhook.problems`` as a human-readable line for the log. Deciding what to do about it (ignore another phone
number, refuse a sender-less message) belongs to the webhook layer, not here.

This module imports nothing from the rest of the project.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

WHATSAPP_OBJECT = "whatsapp_business_account"
"""The only ``object`` a WhatsApp Business webhook carries."""

INTERNAL_ERROR = "internal parser error"
"""Prefix of the problem line written if a bug in this module raised: the item is kept as Unknown or dropped."""

_MAX_EDIT_DEPTH = 3
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
_KNOWN_VALUE_KEYS = frozenset({"messaging_product", "metadata", "contacts", "messages", "statuses", "errors"})


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ErrorInfo:
    """One entry of an ``errors`` array: on a message, a status, or the whole change value."""

    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class Context:
    """``message.context``: the message quoted by a reply, or the forward marks."""

    message_id: str | None = None
    from_: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every inbound message; ``raw`` and ``value`` keep what Meta sent for ``_handle_message``."""

    id: str = ""
    sender: str = ""
    timestamp: int = 0
    type: str = ""
    raw: dict = field(default_factory=dict, hash=False, repr=False)
    value: dict = field(default_factory=dict, hash=False, repr=False)
    phone_number_id: str = ""
    profile_name: str | None = None
    username: str | None = None
    wa_id: str | None = None  # the phone number (``from``); a username customer may come with from_user_id alone
    from_user_id: str | None = None
    context: Context | None = None
    referral: dict | None = field(default=None, hash=False, repr=False)

    @property
    def text(self) -> str | None:
        """The obvious text a human sent, or None when the message has none."""
        return None


@dataclass(frozen=True, kw_only=True)
class Text(Message):
    body: str = ""

    @property
    def text(self) -> str | None:
        return self.body


@dataclass(frozen=True, kw_only=True)
class Interactive(Message):
    """An interactive reply; the kinds the pipeline reads are subclasses (:class:`ButtonReply`, :class:`ListReply`,
    :class:`FlowReply`), any other ``kind`` (Meta adds some) stays an ``Interactive``."""

    kind: str = ""
    reply_id: str | None = None
    title: str | None = None
    description: str | None = None
    response_json: str | None = None
    body: str | None = None

    @property
    def text(self) -> str | None:
        return self.title if self.title is not None else self.body


@dataclass(frozen=True, kw_only=True)
class ButtonReply(Interactive):
    """A tap on one of our reply buttons (``kind`` ``button_reply``)."""


@dataclass(frozen=True, kw_only=True)
class ListReply(Interactive):
    """A row chosen from one of our lists (``kind`` ``list_reply``)."""


@dataclass(frozen=True, kw_only=True)
class FlowReply(Interactive):
    """A Flow's answers (``kind`` ``nfm_reply``): ``response_json`` as Meta sent it, ``body`` its summary."""


@dataclass(frozen=True, kw_only=True)
class Button(Message):
    """A template's quick-reply button. Here ``text`` is Meta's field (the button label), not a property."""

    payload: str | None = None
    text: str | None = None


@dataclass(frozen=True, kw_only=True)
class Media(Message):
    """Any media message; the bytes are fetched later by ``media_id`` (``url`` may be absent or expired)."""

    media_id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    url: str | None = None

    @property
    def text(self) -> str | None:
        return self.caption


@dataclass(frozen=True, kw_only=True)
class Image(Media):
    pass


@dataclass(frozen=True, kw_only=True)
class Video(Media):
    pass


@dataclass(frozen=True, kw_only=True)
class Audio(Media):
    voice: bool = False


@dataclass(frozen=True, kw_only=True)
class Document(Media):
    filename: str | None = None


@dataclass(frozen=True, kw_only=True)
class Sticker(Media):
    animated: bool = False


@dataclass(frozen=True, kw_only=True)
class Location(Message):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class SharedContact:
    """One contact card the customer shared; ``raw`` keeps the rest (addresses, org, urls...)."""

    formatted_name: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    raw: dict = field(default_factory=dict, hash=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class Contacts(Message):
    contacts: tuple[SharedContact, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Reaction(Message):
    """``emoji`` is None when the customer removed their reaction."""

    message_id: str | None = None
    emoji: str | None = None


@dataclass(frozen=True)
class OrderItem:
    product_retailer_id: str | None = None
    quantity: int | None = None
    item_price: float | None = None
    currency: str | None = None


@dataclass(frozen=True, kw_only=True)
class Order(Message):
    """A cart sent from a catalog. Here ``text`` is Meta's field (the note sent with the order)."""

    catalog_id: str | None = None
    text: str | None = None
    items: tuple[OrderItem, ...] = ()


@dataclass(frozen=True, kw_only=True)
class System(Message):
    """A notice from WhatsApp itself, e.g. ``user_changed_number``; never a customer's words."""

    body: str | None = None
    system_type: str | None = None
    new_wa_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Edit(Message):
    """The customer edited an earlier message; ``edited`` is the new version, parsed like any message."""

    original_message_id: str | None = None
    edited: Message | None = None


@dataclass(frozen=True, kw_only=True)
class Revoke(Message):
    """The customer deleted an earlier message."""

    original_message_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Unsupported(Message):
    """Types ``unsupported``/``unknown``, or a known type whose object Meta left out: only ``errors`` remain."""

    errors: tuple[ErrorInfo, ...] = ()
    unsupported_type: str | None = None


@dataclass(frozen=True, kw_only=True)
class Unknown(Message):
    """A type this module does not know yet (Meta adds some over time); ``raw`` keeps all of it."""


@dataclass(frozen=True)
class Status:
    """A report on a message *we* sent (sent, delivered, read, played, failed)."""

    id: str
    status: str
    recipient_id: str | None
    timestamp: int
    phone_number_id: str
    errors: tuple[ErrorInfo, ...] = ()
    conversation_id: str | None = None
    pricing_category: str | None = None
    raw: dict = field(default_factory=dict, hash=False, repr=False)


@dataclass(frozen=True)
class Webhook:
    """Everything one POST carried, in order, plus a line for everything odd seen on the way."""

    object: str | None = None
    messages: tuple[Message, ...] = ()
    statuses: tuple[Status, ...] = ()
    errors: tuple[ErrorInfo, ...] = ()
    problems: tuple[str, ...] = ()


# --------------------------------------------------------------------------- tolerant readers


MAX_TIMESTAMP = 2**63 - 1  # what a store can keep as an integer; a larger "timestamp" is garbage


def _dict(x: object) -> dict:
    return x if isinstance(x, dict) else {}


def _str(x: object) -> str | None:
    return x if isinstance(x, str) else None


def _ident(x: object) -> str | None:
    """An id or phone number: a non-empty string; a bare integer is accepted and turned into one.

    A string that cannot be stored as UTF-8 (a lone surrogate from a ``\\ud800`` escape) is no usable id.
    """
    if isinstance(x, str):
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return x or None
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return None


def _int(x: object) -> int | None:
    """A whole number sent as a number or as a string of ASCII digits (Meta documents strings)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return int(x) if math.isfinite(x) and x.is_integer() else None
    if isinstance(x, str):
        s = x.strip()
        sign = -1 if s.startswith("-") else 1
        digits = s[1:] if sign < 0 else s
        return sign * int(digits) if _ASCII_DIGITS.fullmatch(digits) else None
    return None


def _float(x: object) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float):
        try:
            f = float(x)
        except OverflowError:
            return None
    elif isinstance(x, str):
        try:
            f = float(x.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _describe(x: object) -> str:
    """A short, bounded description of an odd value for a log line (payloads can be megabytes)."""
    if isinstance(x, dict):
        return f"an object with {len(x)} keys"
    if isinstance(x, list):
        return f"a list of {len(x)} items"
    if isinstance(x, str):
        return repr(x[:40] + "…") if len(x) > 40 else repr(x)
    if x is None:
        return "null"
    text = repr(x)
    return text[:40] + "…" if len(text) > 40 else text


class _Problems:
    """Collects problem lines; ``at`` is where in the payload we are."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, at: str, what: str) -> None:
        self.lines.append(f"{at}: {what}" if at else what)


def _errors(x: object, problems: _Problems, at: str) -> tuple[ErrorInfo, ...]:
    if x is None:
        return ()
    if not isinstance(x, list):
        problems.add(at, f"errors is {_describe(x)}, not a list")
        return ()
    out = []
    for i, e in enumerate(x):
        if not isinstance(e, dict):
            problems.add(f"{at}[{i}]", f"error is {_describe(e)}, not an object")
            continue
        details = _str(_dict(e.get("error_data")).get("details"))
        out.append(
            ErrorInfo(
                code=_int(e.get("code")),
                title=_str(e.get("title")),
                message=_str(e.get("message")),
                details=details if details is not None else _str(e.get("details")),
            )
        )
    return tuple(out)


def _context(x: object, problems: _Problems, at: str) -> Context | None:
    if x is None:
        return None
    if not isinstance(x, dict):
        problems.add(at, f"context is {_describe(x)}, not an object")
        return None
    return Context(
        message_id=_ident(x.get("id")),
        from_=_ident(x.get("from")),
        forwarded=x.get("forwarded") is True,
        frequently_forwarded=x.get("frequently_forwarded") is True,
    )


def _matching_contact(contacts: object, from_: str | None, from_user_id: str | None) -> dict | None:
    """The ``contacts[]`` entry describing this sender: same ``wa_id``, or same ``user_id``."""
    if not isinstance(contacts, list):
        return None
    for c in contacts:
        if not isinstance(c, dict):
            continue
        if from_ is not None and _ident(c.get("wa_id")) == from_:
            return c
        if from_user_id is not None and _ident(c.get("user_id")) == from_user_id:
            return c
    return None


def _trimmed_value(value: dict, contact: dict | None) -> dict[str, Any]:
    """What a message keeps of its change's ``value``: the fields it is read by, never whatever else came along.

    Every message of a change is stored with its own copy of this, so a change padded with megabytes (3 MiB of
    extra metadata in a change of 70 messages grew the store by 233 MiB) must not be copied into any of them.
    """
    trimmed: dict[str, Any] = {}
    if value.get("messaging_product") == "whatsapp":
        trimmed["messaging_product"] = "whatsapp"
    metadata = _dict(value.get("metadata"))
    kept = {key: metadata[key] for key in ("display_phone_number", "phone_number_id") if _ident(metadata.get(key))}
    if kept or "metadata" in value:
        trimmed["metadata"] = kept
    if contact is not None:
        profile = _dict(contact.get("profile"))
        card: dict[str, Any] = {key: contact[key] for key in ("wa_id", "user_id") if _ident(contact.get(key))}
        card["profile"] = {key: profile[key] for key in ("name", "username") if isinstance(profile.get(key), str)}
        trimmed["contacts"] = [card]
    return trimmed


def _phone_number_id(value: dict) -> str:
    return _ident(_dict(value.get("metadata")).get("phone_number_id")) or ""


# --------------------------------------------------------------------------- message types


@dataclass(frozen=True)
class _Env:
    """What a type parser needs besides the type object: the change value, where we are, how deep in edits."""

    value: dict
    problems: _Problems
    at: str
    depth: int = 0


def _text(body: dict, common: dict, env: _Env) -> Message:
    text = body.get("body")
    if not isinstance(text, str):
        env.problems.add(env.at, f"text.body is {_describe(text)}, not a string")
    return Text(**common, body=text if isinstance(text, str) else "")


_INTERACTIVE_KINDS: dict[str, type[Interactive]] = {
    "button_reply": ButtonReply,
    "list_reply": ListReply,
    "nfm_reply": FlowReply,
}


def _interactive(body: dict, common: dict, env: _Env) -> Message:
    kind = _str(body.get("type")) or ""
    reply = _dict(body.get(kind)) if kind else {}
    if not kind or not reply:
        env.problems.add(env.at, f"interactive of kind {kind!r} has no {kind or 'reply'} object")
    response_json = reply.get("response_json")
    if response_json is not None and not isinstance(response_json, str):
        env.problems.add(env.at, f"nfm_reply.response_json is {_describe(response_json)}, not a string")
    cls = _INTERACTIVE_KINDS.get(kind, Interactive)  # other kinds (a call permission reply...) stay Interactive
    return cls(
        **common,
        kind=kind,
        reply_id=_ident(reply.get("id")),
        title=_str(reply.get("title")),
        description=_str(reply.get("description")),
        response_json=_str(response_json),
        body=_str(reply.get("body")),
    )


def _button(body: dict, common: dict, env: _Env) -> Message:
    return Button(**common, payload=_str(body.get("payload")), text=_str(body.get("text")))


def _media_fields(body: dict) -> dict[str, Any]:
    return {
        "media_id": _ident(body.get("id")),
        "mime_type": _str(body.get("mime_type")),
        "sha256": _str(body.get("sha256")),
        "caption": _str(body.get("caption")),
        "url": _str(body.get("url")),
    }


def _media(cls: type[Media]) -> Callable[[dict, dict, _Env], Message]:
    def parse(body: dict, common: dict, env: _Env) -> Message:
        fields = _media_fields(body)
        if fields["media_id"] is None:
            env.problems.add(env.at, f"{common['type']} has no media id")
        if cls is Audio:
            fields["voice"] = body.get("voice") is True
        elif cls is Document:
            fields["filename"] = _str(body.get("filename"))
        elif cls is Sticker:
            fields["animated"] = body.get("animated") is True
        return cls(**common, **fields)

    return parse


def _location(body: dict, common: dict, env: _Env) -> Message:
    return Location(
        **common,
        latitude=_float(body.get("latitude")),
        longitude=_float(body.get("longitude")),
        name=_str(body.get("name")),
        address=_str(body.get("address")),
        url=_str(body.get("url")),
    )


def _strings(items: object, key: str) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    found = (_str(_dict(item).get(key)) for item in items)
    return tuple(s for s in found if s is not None)


def _contacts(body: list, common: dict, env: _Env) -> Message:
    cards = []
    for i, card in enumerate(body):
        if not isinstance(card, dict):
            env.problems.add(f"{env.at}.contacts[{i}]", f"contact is {_describe(card)}, not an object")
            continue
        cards.append(
            SharedContact(
                formatted_name=_str(_dict(card.get("name")).get("formatted_name")),
                phones=_strings(card.get("phones"), "phone"),
                emails=_strings(card.get("emails"), "email"),
                raw=card,
            )
        )
    return Contacts(**common, contacts=tuple(cards))


def _reaction(body: dict, common: dict, env: _Env) -> Message:
    return Reaction(**common, message_id=_ident(body.get("message_id")), emoji=_str(body.get("emoji")) or None)


def _order(body: dict, common: dict, env: _Env) -> Message:
    items = []
    raw_items = body.get("product_items")
    if raw_items is not None and not isinstance(raw_items, list):
        env.problems.add(env.at, f"order.product_items is {_describe(raw_items)}, not a list")
    for item in raw_items if isinstance(raw_items, list) else ():
        item = _dict(item)
        items.append(
            OrderItem(
                product_retailer_id=_ident(item.get("product_retailer_id")),
                quantity=_int(item.get("quantity")),
                item_price=_float(item.get("item_price")),
                currency=_str(item.get("currency")),
            )
        )
    return Order(**common, catalog_id=_ident(body.get("catalog_id")), text=_str(body.get("text")), items=tuple(items))


def _system(body: dict, common: dict, env: _Env) -> Message:
    return System(
        **common,
        body=_str(body.get("body")),
        system_type=_str(body.get("type")),
        new_wa_id=_ident(body.get("new_wa_id")),
    )


def _edit(body: dict, common: dict, env: _Env) -> Message:
    nested = body.get("message")
    edited = None
    if not isinstance(nested, dict):
        env.problems.add(env.at, f"edit.message is {_describe(nested)}, not an object")
    elif env.depth >= _MAX_EDIT_DEPTH:
        env.problems.add(env.at, "edit nested too deep; inner message not parsed")
    else:
        inner = _Env(env.value, env.problems, f"{env.at}.edit.message", env.depth + 1)
        edited = _build(nested, inner, outer=common)
    return Edit(**common, original_message_id=_ident(body.get("original_message_id")), edited=edited)


def _revoke(body: dict, common: dict, env: _Env) -> Message:
    return Revoke(**common, original_message_id=_ident(body.get("original_message_id")))


_PARSERS: dict[str, Callable[[Any, dict, _Env], Message]] = {
    "text": _text,
    "interactive": _interactive,
    "button": _button,
    "image": _media(Image),
    "video": _media(Video),
    "audio": _media(Audio),
    "document": _media(Document),
    "sticker": _media(Sticker),
    "location": _location,
    "contacts": _contacts,
    "reaction": _reaction,
    "order": _order,
    "system": _system,
    "edit": _edit,
    "revoke": _revoke,
}
_UNSUPPORTED_TYPES = frozenset({"unsupported", "unknown"})


def _build(raw: dict, env: _Env, outer: dict | None = None) -> Message:
    """Parse one message dict; ``outer`` is the enclosing edit's fields, inherited when the inner one lacks them."""
    problems, at, value = env.problems, env.at, env.value
    from_ = _ident(raw.get("from"))
    from_user_id = _ident(raw.get("from_user_id"))
    if outer is not None and from_ is None and from_user_id is None:
        from_, from_user_id = _ident(outer["raw"].get("from")), outer["from_user_id"]
    timestamp = _int(raw.get("timestamp"))
    if timestamp is None or not 0 <= timestamp <= MAX_TIMESTAMP:
        if outer is not None and "timestamp" not in raw:
            timestamp = outer["timestamp"]
        else:
            problems.add(at, f"timestamp is {_describe(raw.get('timestamp'))}, not unix seconds")
            timestamp = 0
    type_ = raw.get("type")
    if not isinstance(type_, str):
        problems.add(at, f"type is {_describe(type_)}, not a string")
        type_ = ""

    contact = _matching_contact(value.get("contacts"), from_, from_user_id)
    trimmed = _trimmed_value(value, contact)
    trimmed["messages"] = [raw]
    if "errors" in value:  # Meta's explanation for a message it could not render (see Unsupported)
        trimmed["errors"] = value["errors"]
    profile = _dict((contact or {}).get("profile"))
    referral = raw.get("referral")
    common: dict[str, Any] = {
        "id": _ident(raw.get("id")) or "",
        "sender": from_ or from_user_id or "",
        "timestamp": timestamp,
        "type": type_,
        "raw": raw,
        "value": trimmed,
        "phone_number_id": _phone_number_id(value),
        "profile_name": _str(profile.get("name")),
        "username": _str(profile.get("username")),
        "wa_id": from_,
        "from_user_id": from_user_id,
        "context": _context(raw.get("context"), problems, at),
        "referral": referral if isinstance(referral, dict) else None,
    }
    message_errors = _errors(raw.get("errors"), problems, f"{at}.errors")

    if type_ in _UNSUPPORTED_TYPES:
        unsupported_type = _str(_dict(raw.get("unsupported") or raw.get(type_)).get("type"))
        return Unsupported(**common, errors=message_errors, unsupported_type=unsupported_type)
    parser = _PARSERS.get(type_)
    if parser is None:
        problems.add(at, f"message type {type_!r} is not known; kept as Unknown")
        return Unknown(**common)
    body = raw.get(type_)
    if not isinstance(body, list if type_ == "contacts" else dict):
        # Meta sends a known type without its object when it could not render it, with errors beside it
        # (on the message, or on the whole value): the customer sent something we cannot read.
        problems.add(at, f"{type_} message has no {type_} object; kept as Unsupported")
        errors = message_errors or _errors(value.get("errors"), _Problems(), at)
        return Unsupported(**common, errors=errors, unsupported_type=type_)
    if message_errors:
        problems.add(at, f"{type_} message also carries errors: {[e.code for e in message_errors]}")
    return parser(body, common, env)


def _unknown_for(raw: object, value: object) -> Unknown:
    raw_dict = raw if isinstance(raw, dict) else {}
    value_dict = value if isinstance(value, dict) else {}
    return Unknown(
        id=_ident(raw_dict.get("id")) or "",
        sender=_ident(raw_dict.get("from")) or _ident(raw_dict.get("from_user_id")) or "",
        wa_id=_ident(raw_dict.get("from")),
        raw=raw_dict,
        value=value_dict,
        phone_number_id=_phone_number_id(value_dict),
    )


def parse_message(raw: object, value: object) -> Message:
    """Parse one stored message dict against its change ``value`` (e.g. ``Message.value``); never raises.

    Oddities are logged at debug level only: the webhook already reported them when the message arrived.
    """
    if not isinstance(raw, dict):
        logger.debug("parse_message: message is %s, not an object", _describe(raw))
        return _unknown_for(raw, value)
    env = _Env(value if isinstance(value, dict) else {}, _Problems(), "message")
    try:
        message = _build(raw, env)
    except Exception:  # the promise is "never raises": a bug here must not lose the message
        logger.exception("%s while parsing a message", INTERNAL_ERROR)  # its id would show the sender's number
        return _unknown_for(raw, value)
    for line in env.problems.lines:
        logger.debug("parse_message: %s", line)
    return message


# --------------------------------------------------------------------------- statuses and envelope


def _status(raw: dict, value: dict, problems: _Problems, at: str) -> Status:
    timestamp = _int(raw.get("timestamp"))
    if timestamp is None or not 0 <= timestamp <= MAX_TIMESTAMP:
        problems.add(at, f"timestamp is {_describe(raw.get('timestamp'))}, not unix seconds")
        timestamp = 0
    status = raw.get("status")
    if not isinstance(status, str) or not status:
        problems.add(at, f"status is {_describe(status)}, not a status name")
    return Status(
        id=_ident(raw.get("id")) or "",
        status=status if isinstance(status, str) else "",
        recipient_id=_ident(raw.get("recipient_id")) or _ident(raw.get("recipient_user_id")),
        timestamp=timestamp,
        phone_number_id=_phone_number_id(value),
        errors=_errors(raw.get("errors"), problems, f"{at}.errors"),
        conversation_id=_ident(_dict(raw.get("conversation")).get("id")),
        pricing_category=_str(_dict(raw.get("pricing")).get("category")),
        raw=raw,
    )


def _items(value: dict, key: str, problems: _Problems, at: str) -> list[tuple[str, dict]]:
    items = value.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        problems.add(f"{at}.{key}", f"is {_describe(items)}, not a list")
        return []
    out = []
    for i, item in enumerate(items):
        where = f"{at}.{key}[{i}]"
        if isinstance(item, dict):
            out.append((where, item))
        else:
            problems.add(where, f"{key[:-1]} is {_describe(item)}, not an object; dropped")
    return out


def _parse_value(value: dict, at: str, problems: _Problems, out: dict[str, list]) -> None:
    unknown = sorted(k for k in value if k not in _KNOWN_VALUE_KEYS)
    if unknown:
        problems.add(at, f"unknown fields ignored: {', '.join(k[:40] for k in unknown[:10])}")
    if not _phone_number_id(value):
        problems.add(at, "metadata.phone_number_id is missing")
    contacts = value.get("contacts")
    if contacts is not None and not isinstance(contacts, list):
        problems.add(f"{at}.contacts", f"is {_describe(contacts)}, not a list")

    for where, raw in _items(value, "messages", problems, at):
        try:
            message = _build(raw, _Env(value, problems, where))
        except Exception as exc:  # never lose the rest of the POST to a bug in one message
            logger.exception("%s at %s", INTERNAL_ERROR, where)
            problems.add(where, f"{INTERNAL_ERROR}: {type(exc).__name__}; kept as Unknown")
            message = _unknown_for(raw, value)
        if not message.id:
            problems.add(where, "message has no id and cannot be deduplicated; dropped")
            continue
        if not message.sender:
            problems.add(where, "message has neither from nor from_user_id")
        out["messages"].append(message)

    for where, raw in _items(value, "statuses", problems, at):
        try:
            status = _status(raw, value, problems, where)
        except Exception as exc:
            logger.exception("%s at %s", INTERNAL_ERROR, where)
            problems.add(where, f"{INTERNAL_ERROR}: {type(exc).__name__}; status dropped")
            continue
        if not status.id:
            problems.add(where, "status has no id; dropped")
            continue
        out["statuses"].append(status)

    out["errors"].extend(_errors(value.get("errors"), problems, f"{at}.errors"))


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # pairs were joined by the parser: any left is alone


def load_json(body: bytes) -> Any:
    """A webhook body as JSON, with every lone surrogate (``"\\ud800"`` alone) replaced by U+FFFD.

    JSON may escape half of a UTF-16 pair on its own; Python keeps it as a character no UTF-8 encoder takes, so one
    such character would fail the store, the model call or the reply every time. Raises ``ValueError`` or
    ``RecursionError`` for a body that is not JSON.
    """
    payload = json.loads(body)
    if _SURROGATE_ESCAPE.search(body) is None:  # UTF-8 bytes cannot hold a surrogate: only an escape makes one
        return payload
    return json.loads(_LONE_SURROGATE.sub("\ufffd", json.dumps(payload, ensure_ascii=False)))


def parse_webhook(payload: object) -> Webhook:
    """Parse a whole POST body (already ``json.loads``-ed): every entry, every change, every item. Never raises."""
    problems = _Problems()
    out: dict[str, list] = {"messages": [], "statuses": [], "errors": []}
    if not isinstance(payload, dict):
        problems.add("payload", f"is {_describe(payload)}, not an object")
        return Webhook(problems=tuple(problems.lines))
    obj = _str(payload.get("object"))
    if obj != WHATSAPP_OBJECT:
        problems.add("object", f"is {_describe(payload.get('object'))}, not {WHATSAPP_OBJECT!r}")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        problems.add("entry", f"is {_describe(entries)}, not a list")
        entries = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add(f"entry[{i}]", f"is {_describe(entry)}, not an object")
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            problems.add(f"entry[{i}].changes", f"is {_describe(changes)}, not a list")
            continue
        for j, change in enumerate(changes):
            at = f"entry[{i}].changes[{j}]"
            if not isinstance(change, dict):
                problems.add(at, f"is {_describe(change)}, not an object")
                continue
            if change.get("field") != "messages":
                problems.add(at, f"field {_describe(change.get('field'))} is not 'messages'; ignored")
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                problems.add(f"{at}.value", f"is {_describe(value)}, not an object")
                continue
            _parse_value(value, f"{at}.value", problems, out)
    return Webhook(
        object=obj,
        messages=tuple(out["messages"]),
        statuses=tuple(out["statuses"]),
        errors=tuple(out["errors"]),
        problems=tuple(problems.lines),
    )
