"""Rich replies: buttons, lists, links, media, locations, contact cards, reactions, location requests and templates.

Each reply object is a frozen value that checks Meta's limits when it is built, so an agent author sees a
:class:`ReplyError` naming the limit in their own code (or the model sees it as a tool error and tries again), never a
Graph 400 at run time. ``message()`` is the object Graph's ``/messages`` takes (``{"type": ..., <type>: {...}}``,
whatsapp-cloud-api.md section 5); the handler adds the addressing and threading, records it in the reply log and sends
it exactly once, like text. ``summary()`` is what a person (and the model, in history) reads of it.

It imports from the rest of the project only :class:`ReplyError` (the error tree) and :func:`.formatting.utf16_len`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .errors import ReplyError
from .formatting import utf16_len

# Meta's limits (whatsapp-cloud-api.md section 5).
TEXT_LIMIT = 4096
BODY_LIMIT = 1024
HEADER_LIMIT = 60
FOOTER_LIMIT = 60
CAPTION_LIMIT = 1024
MAX_BUTTONS = 3
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
LIST_BUTTON_LIMIT = 20
MAX_SECTIONS = 10
SECTION_TITLE_LIMIT = 24
MAX_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
ROW_ID_LIMIT = 200
LINK_TEXT_LIMIT = 20

#: File extensions and MIME types Meta accepts for each kind of media (section 6).
MEDIA_FORMATS: dict[str, dict[str, str]] = {
    "image": {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"},
    "sticker": {"webp": "image/webp"},
    "audio": {
        "aac": "audio/aac",
        "amr": "audio/amr",
        "mp3": "audio/mpeg",
        "m4a": "audio/mp4",
        "ogg": "audio/ogg",
        "opus": "audio/ogg",
    },
    "video": {"mp4": "video/mp4", "3gp": "video/3gpp"},
    "document": {
        "pdf": "application/pdf",
        "txt": "text/plain",
        "doc": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls": "application/vnd.ms-excel",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt": "application/vnd.ms-powerpoint",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    },
}
#: The largest file Meta takes for each kind of media, in bytes (a static sticker: 100 KB; animated: 500 KB).
MEDIA_SIZE_LIMITS = {
    "image": 5 * 1024 * 1024,
    "sticker": 500 * 1024,
    "audio": 16 * 1024 * 1024,
    "video": 16 * 1024 * 1024,
    "document": 100 * 1024 * 1024,
}
#: Common file extensions Meta takes for no kind of media: a link ending in one is refused at once.
UNSUPPORTED_EXTENSIONS = frozenset(
    {"gif", "bmp", "tif", "tiff", "heic", "svg", "mov", "avi", "mkv", "webm", "wav", "flac"}
)
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")


def _text(value: object, what: str, limit: int, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ReplyError(f"{what} is required and must be non-empty text")
    if len(value) > limit or utf16_len(value) > limit:
        raise ReplyError(f"{what} is {len(value)} characters; Meta's limit is {limit}: {_short(value)!r}")
    return value


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


def _unique(values: Sequence[str], what: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ReplyError(f"{what} must be unique; {value!r} appears twice")
        seen.add(value)


class RichReply:
    """Base of every reply object; a handler sends ``message()`` and keeps ``summary()`` in history."""

    #: Marks a value the agent runtime keeps when a tool returns it (``RunContextWrapper.replies``).
    is_reply: ClassVar[bool] = True

    def __str__(self) -> str:
        """What the model reads when a tool returned this reply: that it was sent, and what it shows."""
        return f"Sent to the customer: {self.summary()}"

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        """The message object for Graph's ``/messages`` (without addressing); ``replying_to`` is the customer's
        message id, which a reaction without its own ``message_id`` reacts to."""
        raise NotImplementedError

    def summary(self) -> str:
        """What a person reads of this reply, in one line or a few; also what the model sees in history."""
        raise NotImplementedError


def _interactive(
    kind: str, text: str, action: dict[str, Any], header: str | None, footer: str | None
) -> dict[str, Any]:
    interactive: dict[str, Any] = {"type": kind}
    if header is not None:
        interactive["header"] = {"type": "text", "text": header}
    interactive["body"] = {"text": text}
    if footer is not None:
        interactive["footer"] = {"text": footer}
    interactive["action"] = action
    return {"type": "interactive", "interactive": interactive}


def _frame(header: str | None, footer: str | None) -> None:
    _text(header, "header", HEADER_LIMIT, required=False)
    _text(footer, "footer", FOOTER_LIMIT, required=False)


@dataclass(frozen=True)
class Text(RichReply):
    """Plain text, WhatsApp-formatted from Markdown and split at 4096 characters like the agent's own answers."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ReplyError("Text needs non-empty text")

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        return {"type": "text", "text": {"preview_url": False, "body": self.text}}

    def summary(self) -> str:
        return self.text


@dataclass(frozen=True)
class Button:
    """One reply button; ``id`` (what comes back when tapped) defaults to the title."""

    title: str
    id: str = ""

    def __post_init__(self) -> None:
        _text(self.title, "button title", BUTTON_TITLE_LIMIT)
        if not self.id:
            object.__setattr__(self, "id", self.title)
        _text(self.id, "button id", BUTTON_ID_LIMIT)


@dataclass(frozen=True)
class Buttons(RichReply):
    """Up to 3 reply buttons under a text: ``Buttons("Which size?", ["Small", "Large"])``.

    A tap comes back to the agent as ``[The customer tapped the button "Large" (id: Large)]``.
    """

    text: str
    buttons: Sequence[str | Button]
    header: str | None = None
    footer: str | None = None

    def __post_init__(self) -> None:
        _text(self.text, "Buttons text", BODY_LIMIT)
        buttons = tuple(b if isinstance(b, Button) else Button(b) for b in self.buttons)
        if not 1 <= len(buttons) <= MAX_BUTTONS:
            raise ReplyError(f"Buttons holds 1 to {MAX_BUTTONS} buttons (Meta's limit); got {len(buttons)}")
        _unique([b.id for b in buttons], "button ids")
        _unique([b.title for b in buttons], "button titles")
        _frame(self.header, self.footer)
        object.__setattr__(self, "buttons", buttons)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        buttons = [{"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in self.buttons]
        return _interactive("button", self.text, {"buttons": buttons}, self.header, self.footer)

    def summary(self) -> str:
        return f"{self.text}\n" + " | ".join(f"[{b.title}]" for b in self.buttons)


@dataclass(frozen=True)
class Row:
    """One row of a list menu; ``id`` defaults to the title."""

    title: str
    id: str = ""
    description: str | None = None

    def __post_init__(self) -> None:
        _text(self.title, "row title", ROW_TITLE_LIMIT)
        if not self.id:
            object.__setattr__(self, "id", self.title)
        _text(self.id, "row id", ROW_ID_LIMIT)
        _text(self.description, "row description", ROW_DESCRIPTION_LIMIT, required=False)


@dataclass(frozen=True)
class Section:
    """A titled group of rows in a list menu."""

    title: str
    rows: Sequence[str | Row]

    def __post_init__(self) -> None:
        _text(self.title, "section title", SECTION_TITLE_LIMIT)
        rows = tuple(r if isinstance(r, Row) else Row(r) for r in self.rows)
        if not rows:
            raise ReplyError(f"section {self.title!r} has no rows")
        object.__setattr__(self, "rows", rows)


@dataclass(frozen=True)
class Menu(RichReply):
    """A list menu: a button (``button``, the label) that opens rows, in sections or not.

    ``Menu("Pick a cake", "Cakes", rows=["Chocolate", Row("Lemon", description="With meringue")])`` or
    ``sections=[Section("Cakes", [...]), Section("Pies", [...])]``. At most 10 rows in all, 10 sections.
    """

    text: str
    button: str
    rows: Sequence[str | Row] = ()
    sections: Sequence[Section] = ()
    header: str | None = None
    footer: str | None = None

    def __post_init__(self) -> None:
        _text(self.text, "Menu text", BODY_LIMIT)
        _text(self.button, "Menu button label", LIST_BUTTON_LIMIT)
        if bool(self.rows) == bool(self.sections):
            raise ReplyError("Menu takes rows or sections (one of the two)")
        sections = tuple(self.sections)
        if len(sections) > MAX_SECTIONS:
            raise ReplyError(f"Menu holds at most {MAX_SECTIONS} sections (Meta's limit); got {len(sections)}")
        rows = tuple(r if isinstance(r, Row) else Row(r) for r in self.rows)
        every_row = rows or tuple(row for section in sections for row in section.rows)
        if len(every_row) > MAX_ROWS:
            raise ReplyError(f"Menu holds at most {MAX_ROWS} rows in all (Meta's limit); got {len(every_row)}")
        _unique([row.id for row in every_row], "row ids")
        _frame(self.header, self.footer)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "sections", sections)

    def _sections(self) -> list[dict[str, Any]]:
        def rows(items: Sequence[Row]) -> list[dict[str, Any]]:
            out = []
            for row in items:
                entry = {"id": row.id, "title": row.title}
                if row.description is not None:
                    entry["description"] = row.description
                out.append(entry)
            return out

        if self.rows:
            return [{"rows": rows(self.rows)}]  # type: ignore[arg-type]
        return [{"title": s.title, "rows": rows(s.rows)} for s in self.sections]  # type: ignore[arg-type]

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        action = {"button": self.button, "sections": self._sections()}
        return _interactive("list", self.text, action, self.header, self.footer)

    def summary(self) -> str:
        titles = [row["title"] for section in self._sections() for row in section["rows"]]
        return f"{self.text}\n[{self.button}: " + " | ".join(titles) + "]"


def _url(value: object, what: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ReplyError(f"{what} must be an http(s) URL; got {value!r}")
    return value


@dataclass(frozen=True)
class LinkButton(RichReply):
    """A call-to-action URL button: ``LinkButton("Track your parcel", "Track", "https://…")``."""

    text: str
    display_text: str
    url: str
    header: str | None = None
    footer: str | None = None

    def __post_init__(self) -> None:
        _text(self.text, "LinkButton text", BODY_LIMIT)
        _text(self.display_text, "LinkButton display_text", LINK_TEXT_LIMIT)
        _url(self.url, "LinkButton url")
        _frame(self.header, self.footer)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        action = {"name": "cta_url", "parameters": {"display_text": self.display_text, "url": self.url}}
        return _interactive("cta_url", self.text, action, self.header, self.footer)

    def summary(self) -> str:
        return f"{self.text}\n[{self.display_text}: {self.url}]"


@dataclass(frozen=True)
class _Media(RichReply):
    """A file by ``link`` (a public https URL) or ``id`` (uploaded with ``GraphClient.upload_media``)."""

    link: str | None = None
    id: str | None = None
    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if (self.link is None) == (self.id is None):
            raise ReplyError(f"{name} takes a link or an uploaded media id (one of the two)")
        if self.link is not None:
            _url(self.link, f"{name} link")
            filename = urlsplit(self.link).path.rsplit("/", 1)[-1]
            extension = filename.rpartition(".")[2].lower() if "." in filename else ""
            known = UNSUPPORTED_EXTENSIONS.union(*MEDIA_FORMATS.values())
            if extension in known and extension not in MEDIA_FORMATS[self.kind]:
                allowed = ", ".join(sorted(MEDIA_FORMATS[self.kind]))
                raise ReplyError(f"unsupported media type for {name}: .{extension} (Meta takes {allowed})")
        elif not isinstance(self.id, str) or not self.id:
            raise ReplyError(f"{name} id must be a media id")

    def _object(self) -> dict[str, Any]:
        return {"link": self.link} if self.link is not None else {"id": self.id}

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        return {"type": self.kind, self.kind: self._object()}

    def summary(self) -> str:
        return f"[{self.kind}: {self.link or self.id}]"


@dataclass(frozen=True)
class _CaptionedMedia(_Media):
    caption: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _text(self.caption, f"{type(self).__name__} caption", CAPTION_LIMIT, required=False)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        media = self._object()
        if self.caption is not None:
            media["caption"] = self.caption
        return {"type": self.kind, self.kind: media}

    def summary(self) -> str:
        return super().summary() + (f" {self.caption}" if self.caption else "")


@dataclass(frozen=True)
class Image(_CaptionedMedia):
    """A JPEG or PNG image: ``Image(link="https://…/cake.jpg", caption="Our lemon cake")``."""

    kind: ClassVar[str] = "image"


@dataclass(frozen=True)
class Video(_CaptionedMedia):
    """An MP4 or 3GPP video, with an optional caption."""

    kind: ClassVar[str] = "video"


@dataclass(frozen=True)
class Document(_CaptionedMedia):
    """A PDF, text or office file; ``filename`` is what the customer sees."""

    filename: str | None = None
    kind: ClassVar[str] = "document"

    def __post_init__(self) -> None:
        super().__post_init__()
        _text(self.filename, "Document filename", 240, required=False)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        message = super().message(replying_to)
        if self.filename is not None:
            message["document"]["filename"] = self.filename
        return message


@dataclass(frozen=True)
class Audio(_Media):
    """An audio file (AAC, AMR, MP3, M4A, OGG/Opus); no caption on audio."""

    kind: ClassVar[str] = "audio"


@dataclass(frozen=True)
class Sticker(_Media):
    """A WebP sticker; no caption on stickers."""

    kind: ClassVar[str] = "sticker"


@dataclass(frozen=True)
class Location(RichReply):
    """A pin on the map: ``Location(52.52, 13.405, name="Our shop", address="Unter den Linden 1")``."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        for what, value, bound in (("latitude", self.latitude, 90), ("longitude", self.longitude, 180)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not -bound <= value <= bound:
                raise ReplyError(f"Location {what} must be a number between -{bound} and {bound}; got {value!r}")
        _text(self.name, "Location name", 1000, required=False)
        _text(self.address, "Location address", 1000, required=False)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        location: dict[str, Any] = {"latitude": self.latitude, "longitude": self.longitude}
        if self.name is not None:
            location["name"] = self.name
        if self.address is not None:
            location["address"] = self.address
        return {"type": "location", "location": location}

    def summary(self) -> str:
        place = ", ".join(part for part in (self.name, self.address) if part)
        return f"[location: {place + ' ' if place else ''}({self.latitude}, {self.longitude})]"


@dataclass(frozen=True)
class Contact(RichReply):
    """A contact card: ``Contact("Shop support", phones=["+1 555 0100"], emails=["help@example.com"])``."""

    name: str
    phones: Sequence[str] = ()
    emails: Sequence[str] = ()

    def __post_init__(self) -> None:
        _text(self.name, "Contact name", 1000)
        object.__setattr__(self, "phones", tuple(self.phones))
        object.__setattr__(self, "emails", tuple(self.emails))
        for phone in self.phones:
            if not isinstance(phone, str) or not re.fullmatch(r"\+?[0-9][0-9 ()./-]{2,30}", phone):
                raise ReplyError(f"Contact phone must be a phone number such as '+1 555 0100'; got {phone!r}")
        for email in self.emails:
            if not isinstance(email, str) or "@" not in email:
                raise ReplyError(f"Contact email must be an email address; got {email!r}")

    def card(self) -> dict[str, Any]:
        card: dict[str, Any] = {"name": {"formatted_name": self.name, "first_name": self.name}}
        if self.phones:
            card["phones"] = [{"phone": phone, "type": "WORK"} for phone in self.phones]
        if self.emails:
            card["emails"] = [{"email": email, "type": "WORK"} for email in self.emails]
        return card

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        return {"type": "contacts", "contacts": [self.card()]}

    def summary(self) -> str:
        return f"[contact: {self.name} {' '.join((*self.phones, *self.emails))}]".replace(" ]", "]")


@dataclass(frozen=True)
class Contacts(RichReply):
    """Several contact cards in one message."""

    cards: Sequence[Contact]

    def __post_init__(self) -> None:
        cards = tuple(self.cards)
        if not cards or not all(isinstance(card, Contact) for card in cards):
            raise ReplyError("Contacts takes one or more Contact cards")
        object.__setattr__(self, "cards", cards)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        return {"type": "contacts", "contacts": [card.card() for card in self.cards]}

    def summary(self) -> str:
        return "\n".join(card.summary() for card in self.cards)


@dataclass(frozen=True)
class Reaction(RichReply):
    """An emoji on a message: the customer's message being answered unless ``message_id`` names another."""

    emoji: str
    message_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.emoji, str) or not self.emoji or len(self.emoji) > 10:
            raise ReplyError(f"Reaction takes one emoji; got {self.emoji!r}")

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        message_id = self.message_id or replying_to
        if not message_id:
            raise ReplyError("Reaction needs a message_id outside a customer's conversation")
        return {"type": "reaction", "reaction": {"message_id": message_id, "emoji": self.emoji}}

    def summary(self) -> str:
        return f"[reacted {self.emoji}]"


@dataclass(frozen=True)
class LocationRequest(RichReply):
    """Asks the customer to share their location, with a "Send location" button under ``text``."""

    text: str

    def __post_init__(self) -> None:
        _text(self.text, "LocationRequest text", BODY_LIMIT)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        return _interactive("location_request_message", self.text, {"name": "send_location"}, None, None)

    def summary(self) -> str:
        return f"{self.text}\n[Send location]"


@dataclass(frozen=True)
class Template(RichReply):
    """An approved message template, the only message allowed 24 hours after the customer last wrote.

    ``Template("order_shipped", "en_US", ["Ada", "#1001"])`` fills the body's ``{{1}}``, ``{{2}}``… in order.
    """

    name: str
    language: str = "en_US"
    parameters: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TEMPLATE_NAME.match(self.name):
            raise ReplyError(f"Template name must be lower-case letters, digits and _ (Meta's rule); got {self.name!r}")
        if not isinstance(self.language, str) or not _LANGUAGE.match(self.language):
            raise ReplyError(f"Template language must be a code such as en_US or de; got {self.language!r}")
        parameters = tuple(self.parameters)
        for parameter in parameters:
            if not isinstance(parameter, str) or not parameter.strip():
                raise ReplyError(f"Template parameters must be non-empty text; got {parameter!r}")
        object.__setattr__(self, "parameters", parameters)

    def message(self, replying_to: str | None = None) -> dict[str, Any]:
        template: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        if self.parameters:
            parameters = [{"type": "text", "text": text} for text in self.parameters]
            template["components"] = [{"type": "body", "parameters": parameters}]
        return {"type": "template", "template": template}

    def summary(self) -> str:
        filled = f" ({', '.join(self.parameters)})" if self.parameters else ""
        return f"[template {self.name} {self.language}{filled}]"


def media_format(kind: str, mime_type: str, size: int | None = None) -> str:
    """Check an upload's MIME type (and size) against what Meta takes for ``kind``; returns the bare MIME type."""
    if kind not in MEDIA_FORMATS:
        raise ReplyError(f"unsupported media kind {kind!r}; one of {', '.join(sorted(MEDIA_FORMATS))}")
    base = mime_type.split(";")[0].strip().lower()
    if base not in set(MEDIA_FORMATS[kind].values()):
        allowed = ", ".join(sorted(set(MEDIA_FORMATS[kind].values())))
        raise ReplyError(f"unsupported media type for {kind}: {mime_type} (Meta takes {allowed})")
    if size is not None and size > MEDIA_SIZE_LIMITS[kind]:
        raise ReplyError(f"{kind} of {size} bytes is over Meta's limit of {MEDIA_SIZE_LIMITS[kind]} bytes")
    return base
