"""``AgentWhatsAppRequestHandler``: the pipeline that turns one claimed message into an answer on WhatsApp.

The original design's public names stay: subclass the handler and override ``_handle_message(message, value)`` or
``_send_message(to, text, reply_to)``, then pass the class to ``create_app(handler=...)`` or name it in
``whatsapp.handler``. Every reply goes through the store's reply log first, so a job resumed after a crash sends only
the parts that were not sent, and never asks the model again for an answer that was stored.
"""

from __future__ import annotations

import base64
import copy
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import wait
from contextlib import contextmanager

import openai

from . import metrics
from .agents_runtime import Agent, ChatRunner, Customer, RunResult, context_for, trim_history
from .answers import Answer
from .attempts import current_attempt
from .client import GraphClient
from .config import Settings
from .errors import GraphAPIError, LostClaim
from .formatting import format_reply
from .messages import Message, parse_message
from .messages import Text as InboundText
from .privacy import clean, mask, tag
from .questions import MEDIA_URL_PREFIX, Note, Notice, Question, QuestionBuilder, Transcriber, expects_answer
from .replies import RichReply, Text
from .store import Job, Part, Reply, Store
from .texts import APOLOGY, HELP, RATE_LIMITED, RESET_DONE
from .typing_indicator import Typing

log = logging.getLogger("whatsapp.handler")

# Reply slots: each reply a job sends has a slot, so a resumed job finds what it already sent. The built-in replies
# have fixed slots; other calls to _send_message (from a subclass) take the next free one, in call order.
ACKNOWLEDGEMENT_SLOT = 0
ANSWER_SLOT = 1
APOLOGY_SLOT = 9
FIRST_FREE_SLOT = 10


class AgentWhatsAppRequestHandler:
    """Answers one claimed message at a time; a worker thread calls :meth:`process`."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        client: GraphClient,
        runner: ChatRunner,
        agents: dict[str, Agent],
        transcribe: Transcriber,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.runner = runner
        self.agents = agents
        self.questions = QuestionBuilder(settings, client, store, transcribe)
        self._typing = Typing(self._show_typing)
        self._current = threading.local()

    # called by the worker ----------------------------------------------------------------------------------------

    def process(self, job: Job) -> None:
        """Run the pipeline for a claimed message; raises on failure (the worker decides on a retry).

        The inbox keeps the message as Meta sent it; it is parsed here, once per attempt, and the pipeline reads
        that typed message. :meth:`_handle_message`, the hook subclasses override, gets copies of the raw dicts, so
        that one it edited in place is told from the job's own.
        """
        raw, value = job.payload["message"], job.payload["value"]
        self._current.job = job
        self._current.message = parse_message(raw, value)
        self._current.next_slot = FIRST_FREE_SLOT
        try:
            self._handle_message(copy.deepcopy(raw), copy.deepcopy(value))
        finally:
            self._typing_shown()
            self._current.job = None
            self._current.message = None

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
        if isinstance(error, UnicodeError):  # the same text fails the same way every time
            return False
        if isinstance(error, openai.APIStatusError):
            return error.status_code in (408, 409, 429) or error.status_code >= 500
        if isinstance(error, openai.APIConnectionError):
            return True
        if isinstance(error, openai.OpenAIError | LostClaim):
            return False
        return True  # unexpected errors are retried within the budget, then the message fails

    # the pipeline (overridable) ----------------------------------------------------------------------------------

    def _handle_message(self, message: dict, value: dict) -> None:
        """The seed's hook: one inbound message as Meta sent it and its change's ``value``; answers it.

        A subclass overrides it to act on the raw dicts, then calls ``super()`` to answer as usual. The message
        parsed when the job was claimed is used when these dicts still equal the job's; dicts a subclass built or
        edited (a rewritten message) are parsed here, so the answer is to what it passed.
        """
        parsed: Message | None = getattr(self._current, "message", None)
        stored = self._job.payload if parsed is not None else None
        if stored is None or message != stored["message"] or value != stored["value"]:
            parsed = parse_message(message, value)
        self._answer_message(parsed)

    def _answer_message(self, message: Message) -> None:
        """Answer one typed inbound message: typing, acknowledgement, question, agent, formatted reply."""
        job = self._job
        sender = message.sender
        whatsapp = self.settings.whatsapp
        if whatsapp.allowed_senders and sender not in whatsapp.allowed_senders:
            log.info("message %s: sender %s is not on the allow-list; not answered", tag(message.id), mask(sender))
            return
        if job.answer is None and self._over_rate_limit(job):
            return
        if whatsapp.typing_indicator and job.attempts == 1:
            # "typing…" promises an answer: a reaction, a revoke or a system notice is only marked read.
            answering = job.answer is not None or expects_answer(message)
            self._start_typing(message.id, typing=answering)
        if whatsapp.agent_acknowledgement:
            self._send_reply(sender, whatsapp.agent_acknowledgement, message.id, ACKNOWLEDGEMENT_SLOT)

        answer = job.answer
        if answer is None:
            answer = self._answer(job, message)
            if answer is None:
                return
        stored = Answer.decode(answer)
        if not stored.replies:
            self._send_reply(sender, answer, message.id, ANSWER_SLOT)
            return
        self._current.slot = ANSWER_SLOT
        words = format_reply(stored.text) if stored.text.strip() else []
        self._send_parts(sender, stored.parts(words), message.id)

    def _send_message(self, to: str, text: str, reply_to: str | None = None) -> None:
        """Send ``text`` as WhatsApp-formatted parts of at most 4096 characters, the first threaded to ``reply_to``.

        Inside a job, the parts are recorded in the reply log before they are sent, and parts already sent by an
        earlier attempt are skipped. Outside a job (a CLI ``send``), they are simply sent.
        """
        self._send_parts(to, format_reply(text), reply_to)

    def send_reply(self, to: str, reply: RichReply, reply_to: str | None = None) -> None:
        """Send a rich reply (buttons, a list, an image, a template...) to a customer, exactly once inside a job.

        ``to`` is the customer's phone number or business-scoped user id; a :class:`~whatsapp.replies.Reaction`
        without a ``message_id`` reacts to ``reply_to``. Text goes through :meth:`_send_message`.
        """
        if isinstance(reply, Text):
            self._send_message(to, reply.text, reply_to)
            return
        self._send_parts(to, [Part(reply.summary(), reply.message(replying_to=reply_to))], reply_to)

    def _send_parts(self, to: str, parts: Sequence[str | Part], reply_to: str | None) -> None:
        """Send the parts of one reply (texts and rich replies), the first that can be threaded to ``reply_to``."""
        job = getattr(self._current, "job", None)
        if job is None:
            planned = [_unlogged(n, to, reply_to, part) for n, part in enumerate(parts)]
            for reply in planned:
                self.client.send_message(to, reply.payload(), _threading(planned, reply))
            return
        slot, self._current.slot = getattr(self._current, "slot", None), None
        if slot is None:
            slot = self._current.next_slot
            self._current.next_slot += 1
        self._hold_claim(job)  # a thread back after its claim was given up (worker.job_timeout) plans nothing
        planned = self.store.plan_replies(job.id, slot, to, reply_to, parts)
        unsent = [reply for reply in planned if not reply.wamid]
        if len(unsent) < len(planned) and (attempt := current_attempt.get()):
            attempt.found_sent()  # an earlier attempt sent the first parts: they are not sent again
        for n, reply in enumerate(unsent):
            if n:  # the first was checked with the plan
                self._hold_claim(job)
            self._typing_shown()
            started = time.monotonic()
            try:
                wamid = self.client.send_message(reply.recipient, reply.payload(), _threading(planned, reply))
            except GraphAPIError as error:
                metrics.GRAPH_SEND_ERRORS.labels(code=_graph_error_code(error)).inc()
                raise
            self.store.mark_sent(job.id, slot, reply.part, wamid)
            attempt = current_attempt.get()
            if attempt is not None:
                so_far = attempt.record
                if so_far.first_sent_at is None and not so_far.resumed:  # the message's first part at Graph
                    metrics.ANSWER.observe(time.time() - job.received_at)
                attempt.sent(started)
            log.info("message %s: answered part %d (%s)", tag(job.id), reply.part + 1, tag(wamid))

    # steps -------------------------------------------------------------------------------------------------------

    def _hold_claim(self, job: Job) -> None:
        """Renew the job's lease before the store or Graph is told more; :class:`LostClaim` when it is gone."""
        if job.id not in self.store.renew(job.holder, [job.id], self.settings.worker.lease_seconds):
            raise LostClaim(tag(job.id))

    @property
    def _job(self) -> Job:
        return self._current.job

    def _send_reply(self, to: str, text: str, reply_to: str | None, slot: int) -> None:
        self._current.slot = slot
        self._send_message(to, text, reply_to)

    def _start_typing(self, message_id: str, typing: bool = True) -> None:
        """Mark read and show "typing…" on a side thread, so the agent starts without waiting a Graph round trip."""
        self._current.typing = self._typing.show_now(message_id, typing)

    def _typing_shown(self) -> None:
        """Wait for the typing indicator before anything is sent: arriving after a reply, it would linger 25 s."""
        shown = getattr(self._current, "typing", None)
        if shown is not None:
            wait([shown])
            self._current.typing = None

    def _show_typing(self, message_id: str, typing: bool = True) -> None:
        try:
            self.client.mark_read(message_id, typing=typing)
        except GraphAPIError as error:  # a missing "typing…" is no reason to fail the message
            log.warning("message %s: could not mark read: %s", tag(message_id), error)

    def _over_rate_limit(self, job: Job) -> bool:
        """Past the per-sender limit: one polite notice in the window, then silence; never a model call."""
        limit = self.settings.whatsapp.rate_limit_per_minute
        position = self.store.rate_position(job.id, 60.0)
        if position <= limit:
            return False
        log.warning("message %s: %s is over %d messages a minute", tag(job.id), mask(job.sender), limit)
        if position == limit + 1:
            self._send_reply(job.sender, RATE_LIMITED, job.id, ANSWER_SLOT)
        return True

    def _answer(self, job: Job, message: Message) -> str | None:
        """The answer to store and send, or None when the message gets no agent answer (it may get a notice)."""
        command = self._command(job, message)
        if command is not None:
            return command
        outcome = self.questions.build(message)
        if outcome is None:
            log.info("message %s: %s message needs no answer", tag(message.id), clean(message.type or "untyped"))
            return None
        if isinstance(outcome, Note):
            self.store.save_answer(job.id, job.holder, job.sender, "", [{"role": "user", "content": outcome.text}])
            return None
        if isinstance(outcome, Notice):
            return outcome.text
        return self._ask_agent(job, message, outcome)

    def _command(self, job: Job, message: Message) -> str | None:
        """``/reset`` (or "reset" alone) and ``/help``, unless switched off with ``whatsapp.commands``."""
        if not self.settings.whatsapp.commands:
            return None
        word = (message.text or "").strip().lower() if isinstance(message, InboundText) else ""
        if word in ("/reset", "reset"):
            self.store.clear_history(job.sender)
            log.info("message %s: conversation reset by the customer", tag(job.id))
            return RESET_DONE
        if word == "/help":
            return HELP
        return None

    def _ask_agent(self, job: Job, message: Message, question: Question) -> str:
        session = self.store.session(job.sender)
        agent = self._agent_for(job, session)
        openai_settings = self.settings.openai
        history = trim_history(
            self.store.history(job.sender), openai_settings.history_tokens, openai_settings.history_images
        )
        question_item = {"role": "user", "content": self._with_media_content(question.content)}
        started = time.monotonic()
        with self._typing_kept_up(message.id):
            context = context_for(agent, Customer(sender=job.sender, profile_name=message.profile_name))
            result = self.runner.run(agent, [*self._with_media(history), question_item], context)
        elapsed = time.monotonic() - started
        metrics.MODEL.observe(elapsed)
        last_agent = result.last_agent.name
        if attempt := current_attempt.get():
            attempt.asked(last_agent, elapsed)
        log.info("message %s: agent %s answered in %.2fs", tag(job.id), last_agent, elapsed)
        turns = [{"role": "user", "content": question.content}, *result.new_items]
        replies = tuple(Part(r.summary(), r.message(replying_to=job.id)) for r in replies_made(result))
        answer = result.final_output or ("" if replies else "…")
        if question.prefix:
            answer = f"{question.prefix}\n\n{answer}"
        answer = Answer(answer, replies).encode()
        session = {**session, "agent": last_agent, "entry": self.settings.whatsapp.agent, **customer_ids(message)}
        self.store.save_answer(job.id, job.holder, job.sender, answer, turns, session=session)
        if attempt := current_attempt.get():
            attempt.answered()
        return answer

    def _agent_for(self, job: Job, session: dict) -> Agent:
        """The agent a handoff left the customer with, while it exists and the entry agent is the same; else
        the entry agent. A session remembers both, so a changed ``whatsapp.agent`` takes effect for everyone."""
        entry = self.settings.whatsapp.agent
        remembered = session.get("agent")
        if not remembered or remembered == entry:
            return self.agents[entry]
        if session.get("entry") != entry:
            log.info(
                "message %s: entry agent is now %s (was %s); starting there", tag(job.id), entry, session.get("entry")
            )
        elif remembered not in self.agents:
            log.warning("message %s: agent %r no longer exists; starting at %s", tag(job.id), remembered, entry)
        else:
            return self.agents[remembered]
        return self.agents[entry]

    @contextmanager
    def _typing_kept_up(self, message_id: str) -> Iterator[None]:
        """Renew "typing…" while the agent works: WhatsApp hides it after about 25 seconds."""
        if not self.settings.whatsapp.typing_indicator:
            yield
            return
        attempt = current_attempt.get()
        elapsed = time.time() - attempt.record.claimed_at if attempt else 0.0
        token = self._typing.keep_up(message_id, until=time.monotonic() + self.settings.worker.job_timeout - elapsed)
        try:
            yield
        finally:
            self._typing.stop(message_id, token)

    def _with_media(self, items: list[dict]) -> list[dict]:
        return [{**item, "content": self._with_media_content(item["content"])} for item in items]

    def _with_media_content(self, content: object) -> object:
        """Stored ``media:<id>`` image references replaced by data URLs of the stored bytes."""
        if not isinstance(content, list):
            return content
        parts = []
        for part in content:
            url = part.get("image_url", {}).get("url", "") if part.get("type") == "image_url" else ""
            if not url.startswith(MEDIA_URL_PREFIX):
                parts.append(part)
                continue
            stored = self.store.media(url.removeprefix(MEDIA_URL_PREFIX))
            if stored is None:
                parts.append({"type": "text", "text": "[an earlier image, no longer kept]"})
                continue
            mime_type, data = stored
            data_url = f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"
            parts.append({"type": "image_url", "image_url": {"url": data_url}})
        return parts


def _unlogged(n: int, to: str, reply_to: str | None, part: str | Part) -> Reply:
    """A part sent outside a job (the command line), shaped like a reply-log entry."""
    body, message = (part.body, part.message) if isinstance(part, Part) else (part, None)
    return Reply(message_id="", slot=0, part=n, recipient=to, reply_to=reply_to, body=body, wamid=None, message=message)


def _threading(planned: Sequence[Reply], reply: Reply) -> str | None:
    """The message ``reply`` is threaded to: the customer's, for the first part that is not a reaction (a reaction
    points at its message itself and carries no context)."""
    first = next((r.part for r in planned if r.payload().get("type") != "reaction"), None)
    return reply.reply_to if reply.part == first else None


def replies_made(result: RunResult) -> list[RichReply]:
    """The rich replies a run made: returned by its tools or passed to ``ctx.reply()``, in the order made."""
    return [reply for reply in result.context_wrapper.replies if isinstance(reply, RichReply)]


def customer_ids(message: Message) -> dict[str, str]:
    """The ids a webhook gave for the customer, kept in the session: the phone number (``wa_id``), the business-scoped
    user id and the username, when Meta sent them (a username customer may come with the user id alone)."""
    ids = {"wa_id": message.wa_id, "user_id": message.from_user_id, "username": message.username}
    return {name: value for name, value in ids.items() if value}


def _graph_error_code(error: GraphAPIError) -> str:
    """Meta's code; ``http_<status>`` when the answer had none, ``transport`` when no answer came."""
    if error.code is not None:
        return str(error.code)
    return f"http_{error.status}" if error.status else "transport"
