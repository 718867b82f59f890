"""What Graph accepts on ``POST /<phone_number_id>/messages``: the documented shapes and limits of every send, and
of a mark-read.

A body that breaks any of these raises the :class:`~.errors.GraphFailure` Meta answers with (131008 for a missing
parameter, 131009 or 100 for a bad value), so the sandbox refuses what Meta would, and an end-to-end test fails on a
body Meta would refuse. Shapes and limits are the ones of Meta's messages reference
(https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages). They are written out here, not taken
from :mod:`whatsapp.replies`: the service's replies are checked against them.
"""

from __future__ import annotations

import re
from typing import Any

from ..formatting import utf16_len
from .errors import GraphFailure, bad_parameter, invalid, missing

TEXT_BODY_LIMIT = 4096
CAPTION_LIMIT = 1024
INTERACTIVE_BODY_LIMIT = 1024
HEADER_LIMIT = 60
FOOTER_LIMIT = 60
BUTTON_TITLE_LIMIT = 20
MAX_BUTTONS = 3
LIST_BUTTON_LIMIT = 20
SECTION_TITLE_LIMIT = 24
MAX_SECTIONS = 10
MAX_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
ROW_ID_LIMIT = 200
BUTTON_ID_LIMIT = 256
CTA_TEXT_LIMIT = 20

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
CAPTIONED = frozenset({"image", "video", "document"})
SEND_TYPES = MEDIA_TYPES | {"text", "interactive", "reaction", "location", "contacts", "template"}
_BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9]+$")
_ALLOWED_KEYS = {
    "text": {"body", "preview_url"},
    "reaction": {"message_id", "emoji"},
    "location": {"latitude", "longitude", "name", "address"},
    "template": {"name", "language", "components"},
    "image": {"id", "link", "caption"},
    "video": {"id", "link", "caption"},
    "document": {"id", "link", "caption", "filename"},
    "audio": {"id", "link"},
    "sticker": {"id", "link"},
}


def is_read(body: Any) -> bool:
    """A call to ``/messages`` that marks a message read (and may show "typing…") rather than sends one."""
    return isinstance(body, dict) and "status" in body


def validate_read(body: Any) -> None:
    """Raise :class:`~.errors.GraphFailure` for a mark-read body Graph would refuse."""
    _validate_common(body)
    if body.get("status") != "read":
        raise bad_parameter("Param status must be one of {READ}")
    if not body.get("message_id"):
        raise missing("message_id")
    indicator = body.get("typing_indicator")
    if indicator is not None and (not isinstance(indicator, dict) or indicator.get("type") != "text"):
        raise invalid("typing_indicator['type'] must be text.")


def validate_upload(messaging_product: str | None, has_file: bool, mime_type: str | None) -> None:
    """Raise :class:`~.errors.GraphFailure` for a media upload (multipart: file, type, messaging_product) Graph would
    refuse."""
    if messaging_product != "whatsapp":
        raise bad_parameter("The parameter messaging_product is required and must be whatsapp.")
    if not has_file or not mime_type:
        raise GraphFailure(400, 131008, details="The parameters file and type are required.")


def _validate_common(body: Any) -> None:
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object")
    if "messaging_product" not in body:
        raise bad_parameter("The parameter messaging_product is required.")
    if body["messaging_product"] != "whatsapp":
        raise bad_parameter("Param messaging_product must be one of {WHATSAPP}")


def validate_send(body: Any) -> None:
    """Raise :class:`~.errors.GraphFailure` for a send body Graph would refuse."""
    _validate_common(body)
    _validate_addressing(body)
    type_ = body.get("type", "text")  # Graph defaults the type to text
    if type_ not in SEND_TYPES:
        raise invalid(f"Param type must be one of {sorted(SEND_TYPES)}; got {type_!r}.")
    if type_ not in body:
        raise missing(type_)
    content = body[type_]
    if type_ == "contacts":
        _validate_contacts(content)
    else:
        if not isinstance(content, dict):
            raise invalid(f"Param {type_} must be an object.")
        unknown = set(content) - _ALLOWED_KEYS.get(type_, set(content))
        if unknown:
            raise bad_parameter(f"Unexpected key(s) {sorted(unknown)} in {type_}.")
        _VALIDATORS[type_](content, type_)
    context = body.get("context")
    if context is not None and not (isinstance(context, dict) and context.get("message_id")):
        raise invalid("The parameter context['message_id'] is invalid.")


def is_user_id(value: object) -> bool:
    """Whether ``value`` is a business-scoped user id (``US.13491208655302741918``), what ``recipient`` takes."""
    return isinstance(value, str) and bool(_BSUID.match(value))


def _validate_addressing(body: dict) -> None:
    to, recipient = body.get("to"), body.get("recipient")
    if to is not None and recipient is not None:
        raise invalid("Send either to (a phone number) or recipient (a business-scoped user id), not both.")
    if recipient is not None:
        if not is_user_id(recipient):
            raise invalid("Param recipient must be a business-scoped user id such as US.13491208655302741918.")
        return
    if not to:
        raise missing("to")
    if not str(to).lstrip("+").isdigit():
        raise invalid(f"Param to must be a phone number; a business-scoped user id ({to}) goes in recipient.")


def _text_of(value: Any, name: str, limit: int, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise missing(name)
    if len(value) > limit or utf16_len(value) > limit:
        raise bad_parameter(f"Param {name} must be at most {limit} characters long.")
    return value


def _validate_text(content: dict, _: str) -> None:
    _text_of(content.get("body"), "text['body']", TEXT_BODY_LIMIT)
    if "preview_url" in content and not isinstance(content["preview_url"], bool):
        raise invalid("Param text['preview_url'] must be a boolean.")


def _validate_reaction(content: dict, _: str) -> None:
    if not content.get("message_id"):
        raise missing("reaction['message_id']")
    if not isinstance(content.get("emoji"), str):
        raise missing("reaction['emoji']")


def _validate_media(content: dict, type_: str) -> None:
    has_id, has_link = bool(content.get("id")), bool(content.get("link"))
    if has_id == has_link:
        raise invalid(f"Param {type_} must have exactly one of id and link.")
    if has_link and not re.match(r"^https?://", str(content["link"])):
        raise invalid(f"Param {type_}['link'] must be an http(s) URL.")
    if "caption" in content:
        _text_of(content["caption"], f"{type_}['caption']", CAPTION_LIMIT)
    if "filename" in content and not isinstance(content["filename"], str):
        raise invalid("Param document['filename'] must be a string.")


def _validate_location(content: dict, _: str) -> None:
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = content.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise missing(f"location['{name}']")
        if not -bound <= value <= bound:
            raise invalid(f"Param location['{name}'] must be between -{bound} and {bound}.")
    for name in ("name", "address"):
        if name in content and not isinstance(content[name], str):
            raise invalid(f"Param location['{name}'] must be a string.")


def _validate_contacts(content: Any) -> None:
    if not isinstance(content, list) or not content:
        raise missing("contacts")
    for n, card in enumerate(content):
        if not isinstance(card, dict) or not isinstance(card.get("name"), dict):
            raise missing(f"contacts[{n}]['name']")
        if not card["name"].get("formatted_name"):
            raise missing(f"contacts[{n}]['name']['formatted_name']")
        for phone in card.get("phones") or []:
            if not isinstance(phone, dict) or not phone.get("phone"):
                raise missing(f"contacts[{n}]['phones'][]['phone']")


def _validate_template(content: dict, _: str) -> None:
    if not content.get("name"):
        raise missing("template['name']")
    if not isinstance(content.get("language"), dict) or not content["language"].get("code"):
        raise missing("template['language']['code']")
    for component in content.get("components") or []:
        if not isinstance(component, dict) or component.get("type") not in ("header", "body", "button", "footer"):
            raise invalid("Each template component needs a type of header, body or button.")
        for parameter in component.get("parameters") or []:
            if not isinstance(parameter, dict) or not parameter.get("type"):
                raise missing("template['components'][]['parameters'][]['type']")
            if parameter["type"] == "text" and not isinstance(parameter.get("text"), str):
                raise missing("template['components'][]['parameters'][]['text']")


def _validate_interactive(content: dict, _: str) -> None:
    kind = content.get("type")
    if kind not in _INTERACTIVE:
        raise invalid(f"Param interactive['type'] must be one of {sorted(_INTERACTIVE)}; got {kind!r}.")
    body = content.get("body")
    if not isinstance(body, dict):
        raise missing("interactive['body']")
    _text_of(body.get("text"), "interactive['body']['text']", INTERACTIVE_BODY_LIMIT)
    header = content.get("header")
    if header is not None:
        if kind == "location_request_message":
            raise invalid("A location request has no header.")
        if not isinstance(header, dict) or header.get("type") != "text":
            raise invalid("Param interactive['header'] must be a text header here.")
        _text_of(header.get("text"), "interactive['header']['text']", HEADER_LIMIT)
    footer = content.get("footer")
    if footer is not None:
        if not isinstance(footer, dict):
            raise invalid("Param interactive['footer'] must be an object.")
        _text_of(footer.get("text"), "interactive['footer']['text']", FOOTER_LIMIT)
    action = content.get("action")
    if not isinstance(action, dict):
        raise missing("interactive['action']")
    _INTERACTIVE[kind](action)


def _validate_buttons(action: dict) -> None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        raise invalid(f"Param interactive['action']['buttons'] must hold 1 to {MAX_BUTTONS} buttons.")
    ids, titles = set(), set()
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if not isinstance(reply, dict) or button.get("type") != "reply":
            raise invalid("Each button needs type 'reply' and a reply object.")
        _text_of(reply.get("id"), "button['reply']['id']", BUTTON_ID_LIMIT)
        _text_of(reply.get("title"), "button['reply']['title']", BUTTON_TITLE_LIMIT)
        ids.add(reply["id"])
        titles.add(reply["title"])
    if len(ids) != len(buttons) or len(titles) != len(buttons):
        raise invalid("Button ids and titles must be unique.")


def _validate_list(action: dict) -> None:
    _text_of(action.get("button"), "interactive['action']['button']", LIST_BUTTON_LIMIT)
    sections = action.get("sections")
    if not isinstance(sections, list) or not sections:
        raise missing("interactive['action']['sections']")
    if len(sections) > MAX_SECTIONS:
        raise invalid(f"A list holds at most {MAX_SECTIONS} sections.")
    ids = set()
    count = 0
    for section in sections:
        if not isinstance(section, dict) or not isinstance(section.get("rows"), list) or not section["rows"]:
            raise missing("interactive['action']['sections'][]['rows']")
        _text_of(section.get("title"), "section['title']", SECTION_TITLE_LIMIT, required=len(sections) > 1)
        for row in section["rows"]:
            if not isinstance(row, dict):
                raise invalid("Each row must be an object.")
            _text_of(row.get("id"), "row['id']", ROW_ID_LIMIT)
            _text_of(row.get("title"), "row['title']", ROW_TITLE_LIMIT)
            _text_of(row.get("description"), "row['description']", ROW_DESCRIPTION_LIMIT, required=False)
            ids.add(row["id"])
            count += 1
    if count > MAX_ROWS:
        raise invalid(f"A list holds at most {MAX_ROWS} rows in all.")
    if len(ids) != count:
        raise invalid("Row ids must be unique.")


def _validate_cta_url(action: dict) -> None:
    if action.get("name") != "cta_url":
        raise invalid("Param interactive['action']['name'] must be cta_url.")
    parameters = action.get("parameters")
    if not isinstance(parameters, dict):
        raise missing("interactive['action']['parameters']")
    _text_of(parameters.get("display_text"), "parameters['display_text']", CTA_TEXT_LIMIT)
    if not re.match(r"^https?://", str(parameters.get("url") or "")):
        raise invalid("Param parameters['url'] must be an http(s) URL.")


def _validate_location_request(action: dict) -> None:
    if action != {"name": "send_location"}:
        raise invalid("Param interactive['action'] must be {'name': 'send_location'}.")


_INTERACTIVE = {
    "button": _validate_buttons,
    "list": _validate_list,
    "cta_url": _validate_cta_url,
    "location_request_message": _validate_location_request,
}
_VALIDATORS = {
    "text": _validate_text,
    "reaction": _validate_reaction,
    "location": _validate_location,
    "template": _validate_template,
    "interactive": _validate_interactive,
    **{media: _validate_media for media in MEDIA_TYPES},
}
