"""How log lines are written: text for people (the default), or one JSON object per line (``log.format: json``).

A JSON line carries, besides the text, what a log pipeline filters and graphs on: the message's tag (never its id,
which holds the customer's number), its state and the attempt's timings so far. Inside a job these come from the
worker's context (the message and the attempt it is running), so every line of the job has them, including lines
that agents and libraries write; a line outside a job may name them itself with ``extra={"tag": ..., "state": ...}``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from .attempts import current_attempt
from .privacy import tag
from .worker import current_message

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s:%(job)s %(message)s"
# Fields a log call may add with ``extra=`` and that a JSON line carries as they are.
EXTRA_FIELDS = ("tag", "state", "attempt", "holder", "duplicate", "wamid")


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Configure the root logger once per process (a host that configured logging itself keeps its own)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_name_the_message)
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in ("httpx", "httpx2", "urllib3"):  # one line per model call would drown the message lines
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _name_the_message(record: logging.LogRecord) -> bool:
    """Lines that agents and libraries log while a worker answers a message name that message (ours already do)."""
    message_id = current_message.get()
    record.job = f" message {tag(message_id)}:" if message_id and not record.name.startswith("whatsapp") else ""
    return True


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, pid, message (the text), then tag, state and timings."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        message_id = current_message.get()
        if message_id:
            line["tag"] = tag(message_id)
        attempt = current_attempt.get()
        if attempt is not None:
            so_far = attempt.record
            line.update(state=so_far.state, attempt=so_far.number, holder=so_far.holder)
            line["seconds"] = attempt.timings()
        for name in EXTRA_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
