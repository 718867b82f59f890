"""The service's errors: one tree under :class:`WhatsAppError`, as ``requests`` has ``RequestException``.

Every error the service defines is one (the agent runtime, which knows nothing of WhatsApp, keeps its own, and
:mod:`whatsapp.cloud_api` plays Meta's); each subclass is one failure a caller can act on. An error that is also a
built-in kind keeps that base too (``ReplyError`` is a ``ValueError``), so code that caught the built-in still does.
Import them from :mod:`whatsapp`. No message here ever holds a secret: the Graph client redacts the token before it
builds a :class:`GraphAPIError`, and :class:`ConfigError` names settings, never their secret values. This module
imports nothing of the service, so every module may import it.

::

    WhatsAppError
    ├── ConfigError            a setting is missing or invalid; the service must not start
    ├── GraphAPIError          a Graph API call failed (retryable or not, Meta's code, subcode, fbtrace_id)
    │   └── MediaRefused       a media URL goes somewhere media never comes from; never retried
    ├── MediaTooLarge          a media file is over api.max_file_size
    ├── UnreadableDocument     a document's text cannot be read; never retried
    ├── ReplyError             (also ValueError) a reply breaks one of Meta's limits
    ├── StoreUnavailable       the store cannot record or read right now; retried
    ├── LostClaim              another worker took the message over; stop without sending more
    └── BodyTooLarge           a request body is over its limit (the webhook answers 413)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests


class WhatsAppError(Exception):
    """The root of the service's errors."""


class ConfigError(WhatsAppError):
    """A setting is missing or invalid. The message is one sentence that says how to fix it.

    A setting read from ``config.yaml`` is located: ``path``, ``line`` and ``column`` (counted from 1, as editors
    do) say where, and the sentence says it too. They are None for a setting from the environment, ``.env`` or
    code. When several settings need fixing, ``problems`` holds one located error per setting.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        line: int | None = None,
        column: int | None = None,
        problems: tuple[ConfigError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
        self.problems = problems


# -- the Graph API -----------------------------------------------------------------------------------------------

_AUTH_CODES = frozenset({0, 190})
# Throttling (4, 80007, 130429, 131056, 131048) and transient service errors (1, 2, 131000, 131016).
_RETRYABLE_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056})
_PERMANENT_CODES = frozenset(
    {0, 3, 10, 100, 190, 368, 130472, 131008, 131009, 131021, 131026, 131031, 131042, 131047, 131049, 131053}
    | set(range(200, 300))
    | set(range(132000, 132070))
    | {133010}
)
# What a person must know to act on a permanent error, added to the failed message's reason.
_HINTS = {
    131047: "more than 24 hours since the customer last wrote, so only an approved template can be sent "
    "(./scripts/whatsapp template ...)",
    131026: "the message could not be delivered (the number is not on WhatsApp or its app is too old)",
    133010: "the business phone number is not registered with the Cloud API",
}


class GraphAPIError(WhatsAppError):
    """A Graph API call failed; carries Meta's error fields so the caller can act on ``code``.

    ``status`` is None when no HTTP answer arrived (a transport failure after urllib3's retries).
    ``response``, like ``requests.HTTPError.response``, is the final answer when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        details: str | None = None,
        response: requests.Response | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.details = details
        self.response = response
        super().__init__(str(self))

    @property
    def retryable(self) -> bool:
        """True when trying again later may succeed (throttling, transient trouble, no answer at all)."""
        if self.status is None:
            return True
        if self.code in _RETRYABLE_CODES:
            return True
        if self.code in _PERMANENT_CODES:
            return False
        return self.status == 429 or self.status >= 500

    @property
    def hint(self) -> str | None:
        """What the code means for the person operating the bot, when Meta's title does not say it plainly."""
        return _HINTS.get(self.code) if self.code is not None else None

    @property
    def auth_failed(self) -> bool:
        """True when Meta rejected the access token itself (it must be replaced)."""
        return self.code in _AUTH_CODES

    def __str__(self) -> str:
        code = f" {self.code}" if self.code is not None else ""
        where = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        trace = f" [fbtrace_id={self.fbtrace_id}]" if self.fbtrace_id else ""
        return f"Graph API error{code} ({where}): {self.message}{trace}"


class MediaRefused(GraphAPIError):
    """A media URL (or a redirect hop) goes somewhere media never comes from, or is no URL at all; trying again would
    go there again, so it is never retried."""

    @property
    def retryable(self) -> bool:
        return False


# -- the message pipeline ----------------------------------------------------------------------------------------


class MediaTooLarge(WhatsAppError):
    """A media file is bigger than we accept; ``size`` is the declared size or the bytes read so far."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"media of at least {size} bytes is over the limit of {limit} bytes")


class UnreadableDocument(WhatsAppError):
    """The document's text cannot be read; the message says why, in words a customer understands."""


class ReplyError(WhatsAppError, ValueError):
    """A reply breaks one of Meta's limits; the message names the limit and the offending value."""


class StoreUnavailable(WhatsAppError):
    """The store could not record or read something right now (locked, full, unreachable)."""


class LostClaim(WhatsAppError):
    """Another worker took this message over (our lease expired); stop without sending anything more."""


# -- the HTTP edge -----------------------------------------------------------------------------------------------


class BodyTooLarge(WhatsAppError):
    """The body is longer than the limit: answer 413. The rest stays unread; gunicorn then drains at most 64 KiB
    of it and closes the connection."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is over {limit} bytes")
        self.limit = limit
