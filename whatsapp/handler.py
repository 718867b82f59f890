"""``AgentWhatsAppRequestHandler``: the pipeline that turns one claimed message into an answer on WhatsApp.

The original design's public names stay: subclass the handler and override ``_handle_message(message, value)`` or
``_send_message(to, text, reply_to)``, then pass the class to ``create_app(handler=...)`` or name it in
``whatsapp.handler``. Every reply goes through the store's reply log first, so a job resumed after a crash sends only
the parts that were not sent, and never asks the model again for an answer that was stored.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass

import openai

from agents import Agent, RunContext, Runner, trim_history

from .client import GraphAPIError, GraphClient, MediaTooLarge
from .config import Settings
from .formatting import format_reply
from .messages import (
    Audio,
    Button,
    Contacts,
    Document,
    Edit,
    Image,
    Interactive,
    Location,
    Media,
    Message,
    Order,
    Reaction,
    Revoke,
    Sticker,
    System,
    Text,
    Video,
    parse_message,
)
from .privacy import mask
from .store import Job, Store

log = logging.getLogger("whatsapp.handler")

APOLOGY = "Sorry, something went wrong on our side and I could not answer that. Please try again in a moment."
UNSUPPORTED = "Sorry, I can't read this kind of message yet. Please send text, a photo or a document."
RATE_LIMITED = "You are sending messages faster than I can answer. Please wait a minute before sending more."

# Reply slots: each reply a job sends has a fixed slot, so a resumed job finds what it already sent.
ACKNOWLEDGEMENT_SLOT = 0
ANSWER_SLOT = 1
APOLOGY_SLOT = 9


class LostClaim(Exception):
    """Another worker took this message over (our lease expired); stop without sending anything more."""


@dataclass(frozen=True)
class Question:
    """What the model is asked (``content``) and what the history keeps of it (``summary``, text only)."""

    content: str | list[dict]
    summary: str


@dataclass(frozen=True)
class Notice:
    """A short reply sent without asking the model (too large a file, an unsupported type...)."""

    text: str


class AgentWhatsAppRequestHandler:
    """Answers one claimed message at a time; a worker thread calls :meth:`process`."""

    def __init__(
        self, *, settings: Settings, store: Store, client: GraphClient, runner: Runner, agents: dict[str, Agent]
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.runner = runner
        self.agents = agents
        self._current = threading.local()

    # called by the worker ----------------------------------------------------------------------------------------

    def process(self, job: Job) -> None:
        """Run the pipeline for a claimed message; raises on failure (the worker decides on a retry)."""
        self._current.job = job
        try:
            self._handle_message(job.payload["message"], job.payload["value"])
        finally:
            self._current.job = None

    def give_up(self, job: Job, error: BaseException | None) -> None:
        """The message failed for good: apologise to the customer, unless Graph itself refuses us."""
        if isinstance(error, GraphAPIError) and not error.retryable:
            return
        self._current.job = job
        try:
            self._send_reply(job.sender, APOLOGY, job.id, APOLOGY_SLOT)
        finally:
            self._current.job = None

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """Whether a later attempt may succeed (a timeout, a 5xx, a rate limit) rather than fail the same way."""
        if isinstance(error, GraphAPIError):
            return error.retryable
        if isinstance(error, openai.APIStatusError):
            return error.status_code in (408, 409, 429) or error.status_code >= 500
        if isinstance(error, openai.APIConnectionError):
            return True
        if isinstance(error, openai.OpenAIError | MediaTooLarge | LostClaim):
            return False
        return True  # unexpected errors are retried within the budget, then the message fails

    # the pipeline (overridable) ----------------------------------------------------------------------------------

    def _handle_message(self, message: dict, value: dict) -> None:
        """Answer one inbound message: typing, acknowledgement, question, agent, formatted reply."""
        job = self._job
        parsed = parse_message(message, value)
        sender = parsed.sender
        whatsapp = self.settings.whatsapp
        if whatsapp.allowed_senders and sender not in whatsapp.allowed_senders:
            log.info("message %s: sender %s is not on the allow-list; not answered", parsed.id, mask(sender))
            return
        if job.answer is None and self._over_rate_limit(job):
            return
        if whatsapp.typing_indicator and job.attempts == 1:
            self._show_typing(parsed.id)
        if whatsapp.agent_acknowledgement:
            self._send_reply(sender, whatsapp.agent_acknowledgement, parsed.id, ACKNOWLEDGEMENT_SLOT)

        answer = job.answer
        if answer is None:
            question = self._question(parsed)
            if question is None:
                log.info("message %s: %s message needs no answer", parsed.id, parsed.type or "untyped")
                return
            if isinstance(question, Notice):
                self._send_reply(sender, question.text, parsed.id, ANSWER_SLOT)
                return
            answer = self._ask_agent(job, parsed, question)
        self._send_reply(sender, answer, parsed.id, ANSWER_SLOT)

    def _send_message(self, to: str, text: str, reply_to: str | None = None) -> None:
        """Send ``text`` as WhatsApp-formatted parts of at most 4096 characters, the first threaded to ``reply_to``.

        Inside a job, the parts are recorded in the reply log before they are sent, and parts already sent by an
        earlier attempt are skipped. Outside a job (a CLI ``send``), they are simply sent.
        """
        job = getattr(self._current, "job", None)
        parts = format_reply(text)
        if job is None:
            for n, part in enumerate(parts):
                self.client.send_text(to, part, reply_to=reply_to if n == 0 else None)
            return
        slot = self._current.slot
        for reply in self.store.plan_replies(job.id, slot, to, reply_to, parts):
            if reply.wamid:
                continue
            if job.id not in self.store.renew(job.holder, [job.id], self.settings.worker.lease_seconds):
                raise LostClaim(job.id)
            wamid = self.client.send_text(
                reply.recipient, reply.body, reply_to=reply.reply_to if reply.part == 0 else None
            )
            self.store.mark_sent(job.id, slot, reply.part, wamid)
            log.info("message %s: answered part %d (%s)", job.id, reply.part + 1, wamid)

    # steps -------------------------------------------------------------------------------------------------------

    @property
    def _job(self) -> Job:
        return self._current.job

    def _send_reply(self, to: str, text: str, reply_to: str | None, slot: int) -> None:
        self._current.slot = slot
        self._send_message(to, text, reply_to)

    def _show_typing(self, message_id: str) -> None:
        try:
            self.client.mark_read(message_id, typing=True)
        except GraphAPIError as error:  # a missing "typing…" is no reason to fail the message
            log.warning("message %s: could not mark read: %s", message_id, error)

    def _over_rate_limit(self, job: Job) -> bool:
        """Past the per-sender limit: one polite notice in the window, then silence; never a model call."""
        limit = self.settings.whatsapp.rate_limit_per_minute
        position = self.store.count_recent(job.sender, job.received_at - 60.0, job.received_at)
        if position <= limit:
            return False
        log.warning("message %s: %s is over %d messages a minute", job.id, mask(job.sender), limit)
        if position == limit + 1:
            self._send_reply(job.sender, RATE_LIMITED, job.id, ANSWER_SLOT)
        return True

    def _ask_agent(self, job: Job, message: Message, question: Question) -> str:
        agent = self.agents[self.settings.whatsapp.agent]
        history = trim_history(self.store.history(job.sender), self.settings.openai.history_tokens)
        context = RunContext(sender=job.sender, profile_name=message.profile_name)
        started = time.monotonic()
        result = self.runner.run(agent, history, question.content, context)
        log.info("message %s: agent %s answered in %.2fs", job.id, result.agent, time.monotonic() - started)
        turns = [{"role": "user", "content": question.summary}, *result.new_items[1:]]
        answer = result.text or "…"
        self.store.save_answer(job.id, job.holder, job.sender, answer, turns)
        return answer

    def _question(self, message: Message) -> Question | Notice | None:
        """What to ask the model about ``message``; a :class:`Notice` to answer without it; None for no answer."""
        match message:
            case Text() | Interactive() | Button():
                return self._text_question(message.text or "")
            case Edit(edited=Message() as edited):
                question = self._question(edited)
                if isinstance(question, Question):
                    note = "(The customer edited an earlier message; the new version follows.)\n"
                    return self._text_question(note + question.summary)
                return question
            case Image():
                return self._image_question(message)
            case Document():
                return self._document_question(message)
            case Location():
                place = ", ".join(part for part in (message.name, message.address) if part)
                where = f"{place} " if place else ""
                return self._text_question(
                    f"[The customer shared a location: {where}(latitude {message.latitude}, "
                    f"longitude {message.longitude})]"
                )
            case Contacts():
                cards = "; ".join(
                    f"{card.formatted_name or 'unnamed'} ({', '.join(card.phones) or 'no phone'})"
                    for card in message.contacts
                )
                return self._text_question(f"[The customer shared contact cards: {cards}]")
            case Order():
                items = "; ".join(
                    f"{item.quantity} x {item.product_retailer_id} at {item.item_price} {item.currency}"
                    for item in message.items
                )
                note = f" with the note: {message.text}" if message.text else ""
                return self._text_question(f"[The customer placed an order: {items}]{note}")
            case Audio():
                return Notice("Sorry, I can't listen to voice notes or audio yet. Could you type your message?")
            case Video():
                if message.caption:
                    return self._text_question(f"{message.caption}\n[The customer sent a video; you cannot watch it.]")
                return Notice("Sorry, I can't watch videos. Could you tell me in words what you need?")
            case Reaction() | System() | Revoke() | Sticker():
                return None
            case _:
                log.info("message %s: unsupported type %r", message.id, message.type)
                return Notice(UNSUPPORTED)

    def _text_question(self, text: str) -> Question | None:
        text = text.strip()
        if not text:
            return None
        cap = self.settings.openai.max_input_chars
        if len(text) > cap:
            text = text[:cap] + f"\n[The message was cut to its first {cap} characters.]"
        return Question(content=text, summary=text)

    def _media_too_large(self, message: Media, size: int | None, kind: str) -> Notice | None:
        cap = self.settings.api.max_file_size
        if size is None or size <= cap:
            return None
        log.info("message %s: %s of %d bytes is over api.max_file_size (%d)", message.id, kind, size, cap)
        too_large = f"Sorry, that {kind} is {_readable_size(size)}"
        return Notice(f"{too_large}; I can only take files up to {_readable_size(cap)}.")

    def _download(self, message: Media, kind: str) -> bytes | Notice:
        """Look the media up, check its declared size, then download it through a size-capped stream."""
        info = self.client.media_info(message.media_id or "")
        notice = self._media_too_large(message, info.file_size, kind)
        if notice:
            return notice
        try:
            return self.client.download_media(info.url, self.settings.api.max_file_size)
        except MediaTooLarge as error:
            return self._media_too_large(message, error.size, kind) or Notice(UNSUPPORTED)

    def _image_question(self, message: Image) -> Question | Notice:
        data = self._download(message, "image")
        if isinstance(data, Notice):
            return data
        caption = (message.caption or "").strip()
        mime_type = message.mime_type or "image/jpeg"
        url = f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"
        text = caption or "The customer sent this image without a caption."
        content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
        summary = f"[image] {caption}" if caption else "[image]"
        return Question(content=content, summary=summary)

    def _document_question(self, message: Document) -> Question | Notice:
        info = self.client.media_info(message.media_id or "")
        notice = self._media_too_large(message, info.file_size, "document")
        if notice:
            return notice
        name = message.filename or "a document"
        if message.caption:
            return self._text_question(f"{message.caption}\n[The customer attached {name}; you cannot open it.]")
        return Notice(f"Thanks, I received {name}, but I can't read documents yet. What would you like to know?")


def _readable_size(size: int) -> str:
    """A size as a customer reads it: 4.8 MB, 980 KB, 512 bytes."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def describe(error: BaseException) -> str:
    """A short reason for logs and the inbox; never carries a secret (our errors don't hold any)."""
    return f"{type(error).__name__}: {error}"[:300]
