"""What to ask the agent about an inbound message, for every kind of message WhatsApp delivers.

Attachments are looked up and their declared size checked against ``api.max_file_size`` before any download; the
download itself is capped too. Images are kept in the store and referred to from history as ``media:<id>`` so a
follow-up question a few turns later still shows the model the picture (Meta's download URLs expire).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import metrics, texts
from .client import GraphClient
from .config import Settings
from .documents import Budget, read_text, readable
from .errors import GraphAPIError, MediaTooLarge, UnreadableDocument
from .messages import (
    Audio,
    Button,
    ButtonReply,
    Contacts,
    Document,
    Edit,
    FlowReply,
    Image,
    Interactive,
    ListReply,
    Location,
    Media,
    Message,
    Order,
    Reaction,
    Revoke,
    Sticker,
    System,
    Unknown,
    Unsupported,
    Video,
)
from .privacy import tag
from .store import Store

log = logging.getLogger("whatsapp.questions")

MEDIA_URL_PREFIX = "media:"

Transcriber = Callable[[bytes, str, str], str]  # (audio bytes, file name, MIME type) -> transcript


@dataclass(frozen=True)
class Question:
    """Ask the agent ``content`` (kept in history as it is); ``prefix`` goes before the agent's answer."""

    content: str | list[dict]
    prefix: str = ""


@dataclass(frozen=True)
class Notice:
    """Reply with ``text`` without asking the agent (a file too large, an unsupported type...)."""

    text: str


@dataclass(frozen=True)
class Note:
    """Keep ``text`` in the conversation's history without answering (a reaction)."""

    text: str


Outcome = Question | Notice | Note | None


class QuestionBuilder:
    def __init__(self, settings: Settings, client: GraphClient, store: Store, transcribe: Transcriber) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.transcribe = transcribe

    def build(self, message: Message) -> Outcome:
        """The question for ``message``; a :class:`Notice` or :class:`Note` instead; None when nothing is due."""
        match message:
            case Edit(edited=Message() as edited):
                outcome = self.build(edited)
                if isinstance(outcome, Question) and isinstance(outcome.content, str):
                    return self.text(
                        "(The customer edited an earlier message; the new version follows.)\n" + outcome.content
                    )
                return outcome
            case Image():
                return self._image(message)
            case Audio():
                return self._audio(message)
            case Document():
                return self._document(message)
            case Video():
                if message.caption:
                    return Question(self._capped(message.caption), prefix=texts.VIDEO_NOT_WATCHED)
                return Notice(texts.VIDEO_WITHOUT_CAPTION)
            case Location():
                place = ", ".join(part for part in (message.name, message.address) if part)
                where = f"{place} " if place else ""
                return self.text(
                    f"[The customer shared a location: {where}(latitude {message.latitude}, "
                    f"longitude {message.longitude})]"
                )
            case Contacts():
                cards = "; ".join(
                    f"{card.formatted_name or 'unnamed'} ({', '.join(card.phones) or 'no phone'})"
                    for card in message.contacts
                )
                return self.text(f"[The customer shared contact cards: {cards}]")
            case Order():
                items = "; ".join(
                    f"{item.quantity} x {item.product_retailer_id} at {item.item_price} {item.currency}"
                    for item in message.items
                )
                note = f" with the note: {message.text}" if message.text else ""
                return self.text(f"[The customer placed an order: {items}]{note}")
            case Interactive():
                return self.text(interactive_text(message) or "")
            case Button():
                return self.text(
                    f'[The customer tapped the template button "{message.text}" (payload: {message.payload})]'
                    if message.payload
                    else message.text or ""
                )
            case Sticker():
                return Notice(texts.STICKER)
            case Reaction():
                if not message.emoji:
                    return None
                return Note(f"[The customer reacted {message.emoji} to an earlier message]")
            case System() | Revoke():
                return None
            case Unsupported() | Unknown():
                log.info("message %s: unsupported type %r", tag(message.id), message.type)
                return Notice(texts.UNSUPPORTED)
            case _:
                return self.text(message.text or "")

    def text(self, text: str) -> Question | None:
        text = text.strip()
        return Question(self._capped(text)) if text else None

    # media -------------------------------------------------------------------------------------------------------

    def _capped(self, text: str) -> str:
        cap = self.settings.openai.max_input_chars
        if len(text) <= cap:
            return text
        return text[:cap] + f"\n[The message was cut to its first {cap} characters.]"

    def _too_large(self, message: Media, size: int | None, kind: str) -> Notice | None:
        cap = self.settings.api.max_file_size
        if size is None or size <= cap:
            return None
        log.info("message %s: %s of %d bytes is over api.max_file_size (%d)", tag(message.id), kind, size, cap)
        return Notice(texts.too_large(kind, readable_size(size), readable_size(cap)))

    def _download(self, message: Media, kind: str) -> bytes | Notice:
        """Look the media up, check its declared size, then download it through a size-capped stream."""
        try:
            info = self.client.media_info(message.media_id or "")
            notice = self._too_large(message, info.file_size, kind)
            if notice:
                return notice
            return self.client.download_media(info.url, self.settings.api.max_file_size)
        except MediaTooLarge as error:
            return self._too_large(message, error.size, kind) or Notice(texts.UNSUPPORTED)
        except GraphAPIError as error:
            if error.retryable:
                raise  # the worker tries again later
            log.warning("message %s: could not download the %s: %s", tag(message.id), kind, error)
            return Notice(texts.not_downloaded(kind))

    def _image(self, message: Image) -> Question | Notice:
        data = self._download(message, "image")
        if isinstance(data, Notice):
            return data
        media_id = message.media_id or message.id
        self.store.save_media(media_id, message.mime_type or "image/jpeg", data)
        caption = (message.caption or "").strip()
        text = self._capped(caption) if caption else "[The customer sent this image without a caption.]"
        image = {"type": "image_url", "image_url": {"url": MEDIA_URL_PREFIX + media_id}}
        return Question([{"type": "text", "text": text}, image])

    def _audio(self, message: Audio) -> Question | Notice:
        data = self._download(message, "voice note" if message.voice else "audio file")
        if isinstance(data, Notice):
            return data
        mime_type = message.mime_type or "audio/ogg"
        transcript = self.transcribe(data, _audio_filename(mime_type), mime_type).strip()
        if not transcript:
            return Notice(texts.NO_WORDS_HEARD)
        kind = "voice note" if message.voice else "audio message"
        return Question(self._capped(f"[Transcript of the customer's {kind}]\n{transcript}"))

    def _document(self, message: Document) -> Question | Notice:
        name = message.filename or texts.YOUR_DOCUMENT
        if not readable(message.mime_type, message.filename):
            return self._unread_document(message, name, texts.DOCUMENT_TYPE_NOT_READ)
        data = self._download(message, "document")
        if isinstance(data, Notice):
            return data
        cap = self.settings.openai.history_tokens * 2  # about half the history budget, at ~4 characters a token
        try:
            text = read_text(data, message.mime_type, message.filename, Budget(chars=cap))
        except UnreadableDocument as why:
            log.info("message %s: document not read: %s", tag(message.id), why)
            return self._unread_document(message, name, str(why))
        if len(text) > cap:
            text = text[:cap] + f"\n[The document was cut to its first {cap} characters.]"
        caption = f" with the message: {message.caption}" if message.caption else ""
        return Question(f"[The customer sent the document {name}{caption}. Its text follows.]\n{text}")

    def _unread_document(self, message: Document, name: str, why: str) -> Question | Notice:
        """The customer is told why at once; a caption is still answered, with that notice before the answer."""
        metrics.DOCUMENTS_UNREADABLE.inc()
        sorry = texts.document_not_read(name, why)
        caption = (message.caption or "").strip()
        if not caption:
            return Notice(sorry)
        return Question(
            f"[The customer sent the document {name}, which could not be read ({why}), with the message:]\n"
            + self._capped(caption),
            prefix=sorry,
        )


def expects_answer(message: Message) -> bool:
    """Whether an answer will follow ``message``, decided before any download: "typing…" is shown only then.

    Reactions, system notices, revokes and interactive events that carry no words (a call-permission reply...) are
    kept or ignored without an answer; an edit is answered like its new version.
    """
    match message:
        case Reaction() | System() | Revoke():
            return False
        case Edit():
            return message.edited is not None and expects_answer(message.edited)
        case Interactive():
            return bool(interactive_text(message))
        case Media() | Location() | Contacts() | Order() | Unsupported() | Unknown():
            return True
        case _:
            return bool((message.text or "").strip())


def interactive_text(message: Interactive) -> str | None:
    """What the agent is told of a tap on a reply button or list row (its id and title) or a Flow's answers."""
    match message:
        case ButtonReply(title=str()):
            return f'[The customer tapped the button "{message.title}" (id: {message.reply_id})]'
        case ListReply(title=str()):
            description = f" - {message.description}" if message.description else ""
            return f'[The customer chose "{message.title}"{description} (id: {message.reply_id}) from the list]'
        case FlowReply():
            answers = flow_answers(message.response_json)
            if answers is None:
                return message.body or None
            lines = "\n".join(f"- {name}: {value}" for name, value in answers.items())
            return f"[The customer completed a form and answered:]\n{lines}" if lines else message.body or None
    return message.text


def flow_answers(response_json: str | None) -> dict[str, str] | None:
    """A Flow's ``response_json`` as field name -> value text (without ``flow_token``); None when it is not JSON."""
    try:
        data = json.loads(response_json or "")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {
        str(name): value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        for name, value in data.items()
        if name != "flow_token"
    }


def readable_size(size: int) -> str:
    """A size as a customer reads it: 4.8 MB, 980 KB, 512 bytes."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def _audio_filename(mime_type: str) -> str:
    """A name whose extension tells the transcription endpoint the format."""
    subtype = mime_type.split(";")[0].split("/")[-1].strip() or "ogg"
    return f"voice.{ {'mpeg': 'mp3', 'x-m4a': 'm4a', 'aac': 'm4a', 'opus': 'ogg'}.get(subtype, subtype) }"
