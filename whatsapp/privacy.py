"""What logs may show of a customer, of anything a webhook sent, and of the operator's secrets.

A WhatsApp message id is no neutral key: Meta's wamids are base64 of a small protobuf that holds the customer's phone
number, so a log line with the id is a log line with the number. Logs name a message by :func:`tag`, a short stable
hash of its id; the store keeps the full id, and the command line accepts either (``Store.resolve``). Text a webhook
sent reaches a log line only through :func:`clean` (or as a tag), so that a newline in it cannot forge log lines.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

TAG_PREFIX = "m-"
_TAG = re.compile(r"m-[0-9a-f]{10}")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything that ends or bends a log line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def tag(message_id: str | None) -> str:
    """A message id as logs show it: ``m-`` and the first 10 hex digits of its SHA-256, the same in every process."""
    if not message_id:
        return "(no id)"
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()
    return TAG_PREFIX + digest[:10]


def is_tag(name: str) -> bool:
    """Whether ``name`` is a tag (as logs show an id) rather than an id."""
    return _TAG.fullmatch(name) is not None


def clean(text: object) -> str:
    """``text`` fit for one log line: control characters and line separators shown as ``?``, at most 200 characters."""
    return _CONTROL.sub("?", str(text))[:200]


def mask(phone: str | None) -> str:
    """A phone number (or business-scoped id) as logs show it: the last four characters only."""
    return f"…{clean(phone[-4:])}" if phone else "(unknown sender)"


def mask_secret(secret: str) -> str:
    """Enough of a token to tell which one is set, never enough to use it."""
    return f"{secret[:4]}…{secret[-4:]}" if len(secret) >= 16 else f"{len(secret)} characters"


def mask_url(url: str) -> str:
    """A store URL with its password replaced (``redis://:****@host:6379/0``); URLs without one are unchanged."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("://", 1)[0] + "://(unparseable URL)"
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))
