"""A local stand-in for Meta's Graph API (WhatsApp Cloud API): messages, media and errors as Meta documents them
(https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages, /reference/media, /support/error-codes).

The service is pointed at it with ``AK_WHATSAPP__GRAPH_URL=<fake.url>`` and talks to it over real HTTP, so
what the tests see is exactly what Meta would have received: every call is recorded with its arrival time and
the answer given. Failures are scripted with ``fail_next`` and served in Meta's error envelope.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from typing import Any

from ..cloud_api import shapes
from ..cloud_api.errors import GraphFailure, bad_token, missing_node
from ..cloud_api.sends import is_read, validate_read, validate_send, validate_upload
from .http import FakeServer, Recorded, Request, Response
from .webhooks import DISPLAY_NUMBER, PHONE_NUMBER_ID

VERIFIED_NAME = "Test Business"

_VERSION = r"v\d+\.\d+"
_MESSAGES_PATH = re.compile(rf"^/(?P<version>{_VERSION})/(?P<node>[^/]+)/messages/?$")
_MEDIA_PATH = re.compile(rf"^/(?P<version>{_VERSION})/(?P<node>[^/]+)/media/?$")
_NODE_PATH = re.compile(rf"^/(?P<version>{_VERSION})/(?P<node>[^/]+)/?$")
_DOWNLOAD_PATH = re.compile(r"^/media-download/(?P<media_id>[^/]+)$")

_CODE_FOR_STATUS = {401: 190, 429: 130429, 500: 131000, 503: 131016}


@dataclass(frozen=True)
class ScriptedFailure:
    """A canned error answer for the next send (or mark-read). ``raw`` replaces the JSON envelope (a proxy page)."""

    status: int
    code: int
    message: str
    subcode: int | None = None
    details: str | None = None
    retry_after: float | None = None
    raw: bytes | None = None


@dataclass(frozen=True)
class FakeMedia:
    """Media the fake can serve; ``sha256_b64`` is the form webhooks carry, ``sha256`` the form the lookup gives."""

    id: str
    data: bytes
    mime_type: str
    declared_size: int | None = None
    size_as_string: bool = False
    url: str | None = None  # what the lookup answers as the download URL; None: the fake's own

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def sha256_b64(self) -> str:
        return shapes.sha256_b64(self.data)


def graph_error(failure: GraphFailure, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """Meta's error envelope (doc section 7) as the fake's answer."""
    return Response.of_json(failure.status, failure.envelope(), headers=headers)


class FakeGraph(FakeServer):
    """Meta's Graph API for one business phone number: sends, mark-read, media, phone-number info."""

    def __init__(self, access_token: str = "test-token", phone_number_id: str = PHONE_NUMBER_ID) -> None:
        super().__init__()
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self._cond = threading.Condition()
        self._calls: list[Recorded] = []
        self._send_failures: deque[ScriptedFailure | None] = deque()  # None lets one call through
        self._read_failures: deque[ScriptedFailure | None] = deque()
        self._media: dict[str, FakeMedia] = {}
        self._expired_media: set[str] = set()

    # -- scripting ---------------------------------------------------------------------------------------

    def add_media(
        self,
        media_id: str,
        data: bytes,
        mime_type: str,
        declared_size: int | None = None,
        size_as_string: bool = False,
        url: str | None = None,
    ) -> FakeMedia:
        """Make ``media_id`` resolvable and downloadable; ``declared_size`` lets ``file_size`` lie, ``url`` replaces the
        download URL the lookup answers (one the service must refuse)."""
        media = FakeMedia(media_id, data, mime_type, declared_size, size_as_string, url)
        with self._cond:
            self._media[media_id] = media
            self._expired_media.discard(media_id)
        return media

    def expire_media_urls(self) -> None:
        """Download URLs handed out so far answer 404 until the media is looked up again (they live 5 minutes)."""
        with self._cond:
            self._expired_media.update(self._media)

    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        code: int | None = None,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        subcode: int | None = None,
        details: str | None = None,
        raw: bytes | None = None,
        reads: bool = False,
        after: int = 0,
    ) -> None:
        """Answer the next ``n`` sends (or mark-reads, with ``reads=True``) with this error instead.

        ``code`` defaults from the status (429 -> 130429, 500 -> 131000, 503 -> 131016, 401 -> 190, else 100).
        ``after`` lets that many calls through first (fail the third part of a reply: ``after=2``).
        """
        code = code if code is not None else _CODE_FOR_STATUS.get(status, 100)
        if message is not None and not message.startswith("("):
            message = f"(#{code}) {message}"
        failure = ScriptedFailure(status, code, message or "", subcode, details, retry_after, raw)
        with self._cond:
            (self._read_failures if reads else self._send_failures).extend([None] * after + [failure] * n)

    def reset(self) -> None:
        """Forget recorded calls and pending failures; registered media stay."""
        with self._cond:
            self._calls.clear()
            self._send_failures.clear()
            self._read_failures.clear()

    # -- queries -----------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Recorded]:
        """Every call in arrival order; ``extra["kind"]`` is send, read, media_lookup, media_download, ..."""
        with self._cond:
            return list(self._calls)

    def sends(self, to: str | None = None, type: str | None = None) -> list[Recorded]:
        """Successful sends of any type, in order."""
        return [c for c in self.calls if _is_delivered_send(c, to, type)]

    def sent_texts(self, to: str | None = None) -> list[dict[str, Any]]:
        """Successful text sends, in order: dicts with to, body, reply_to, wamid, at."""
        with self._cond:
            return self._texts(to)

    def failed_sends(self) -> list[Recorded]:
        """Send attempts answered with an error (scripted or a validation error)."""
        return [c for c in self.calls if c.extra.get("kind") == "send" and c.status != 200]

    def reads(self) -> list[dict[str, Any]]:
        """Successful mark-read calls: dicts with message_id, typing (bool), at."""
        with self._cond:
            return self._reads()

    def media_lookups(self) -> list[dict[str, Any]]:
        """Every media-id lookup: dicts with media_id, status, at."""
        return self._media_calls("media_lookup")

    def media_downloads(self) -> list[dict[str, Any]]:
        """Every download attempt: dicts with media_id, status, authorized, at."""
        return self._media_calls("media_download")

    def wait_for_texts(self, count: int, to: str | None = None, timeout: float = 10) -> list[dict[str, Any]]:
        """Block until at least ``count`` texts were delivered (to ``to``), then return them all."""
        return self._wait(lambda: self._texts(to), count, timeout, f"text(s) to {to or 'anyone'}")

    def wait_for_reads(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Block until at least ``count`` mark-read calls succeeded."""
        return self._wait(self._reads, count, timeout, "mark-read call(s)")

    # -- internals ---------------------------------------------------------------------------------------

    def _texts(self, to: str | None) -> list[dict[str, Any]]:
        return [
            {
                "to": shapes.recipient_of(c.json),
                "body": c.json["text"]["body"],
                "reply_to": (c.json.get("context") or {}).get("message_id"),
                "wamid": c.extra["wamid"],
                "at": c.at,
            }
            for c in self._calls
            if _is_delivered_send(c, to, "text")
        ]

    def _reads(self) -> list[dict[str, Any]]:
        return [
            {
                "message_id": c.json["message_id"],
                "typing": (c.json.get("typing_indicator") or {}).get("type") == "text",
                "at": c.at,
            }
            for c in self._calls
            if c.extra.get("kind") == "read" and c.status == 200
        ]

    def _media_calls(self, kind: str) -> list[dict[str, Any]]:
        return [
            {"media_id": c.extra["media_id"], "status": c.status, "authorized": c.extra["authorized"], "at": c.at}
            for c in self.calls
            if c.extra.get("kind") == kind
        ]

    def _wait(self, collect: Callable[[], list[Any]], count: int, timeout: float, what: str) -> list[Any]:
        with self._cond:
            if self._cond.wait_for(lambda: len(collect()) >= count, timeout=timeout):
                return collect()
            got = collect()
            failed = [
                (c.status, (c.response or {}).get("error", {}).get("code")) for c in self._calls if c.status != 200
            ]
        raise AssertionError(
            f"expected {count} {what} within {timeout}s, got {len(got)}: {got!r}; "
            f"failed calls (status, code): {failed!r}"
        )

    def _record(self, request: Request, response: Response, **extra: Any) -> Response:
        with self._cond:
            self._calls.append(Recorded.of(request, response, **extra))
            self._cond.notify_all()
        return response

    def handle(self, request: Request) -> Response:
        if match := _DOWNLOAD_PATH.match(request.path):
            return self._download(request, match["media_id"])
        if request.bearer() != self.access_token:
            kind = "other"
            if request.path.endswith("/messages"):
                kind = "read" if is_read(request.json()) else "send"
            return self._record(request, graph_error(bad_token()), kind=kind, wamid=None)
        if (match := _MESSAGES_PATH.match(request.path)) and request.method == "POST":
            return self._messages(request, match["node"])
        if (match := _MEDIA_PATH.match(request.path)) and request.method == "POST":
            return self._upload(request, match["node"])
        if (match := _NODE_PATH.match(request.path)) and request.method == "GET":
            return self._node(request, match["node"])
        response = graph_error(GraphFailure(400, 2500, f"Unknown path components: {request.path}"))
        return self._record(request, response, kind="other")

    def _messages(self, request: Request, node: str) -> Response:
        body = request.json()
        read = is_read(body)
        kind = "read" if read else "send"
        try:
            if node != self.phone_number_id:
                raise missing_node(node, "POST")
            validate_read(body) if read else validate_send(body)
        except GraphFailure as failure:
            return self._record(request, graph_error(failure), kind=kind, wamid=None)
        with self._cond:
            queue = self._read_failures if read else self._send_failures
            scripted = queue.popleft() if queue else None
        if scripted is not None:
            return self._record(request, _scripted_response(scripted), kind=kind, wamid=None, scripted=True)
        if read:
            return self._record(request, Response.of_json(200, {"success": True}), kind=kind, wamid=None)
        wamid = shapes.new_wamid(shapes.recipient_of(body))
        return self._record(request, Response.of_json(200, shapes.sent(body, wamid)), kind=kind, wamid=wamid)

    def _upload(self, request: Request, node: str) -> Response:
        """``POST /<phone_number_id>/media`` (multipart: file, type, messaging_product): the media becomes
        resolvable and downloadable under a new id, as Meta's uploads are."""
        fields = _multipart(request)
        try:
            if node != self.phone_number_id:
                raise missing_node(node, "POST")
            product = fields.get("messaging_product", (b"", ""))[0].decode(errors="replace")
            validate_upload(product, "file" in fields, fields.get("type", (b"", ""))[0].decode(errors="replace"))
        except GraphFailure as failure:
            return self._record(request, graph_error(failure), kind="upload")
        data, mime_type = fields["file"]
        media_id = shapes.new_media_id()
        self.add_media(media_id, data, fields["type"][0].decode())
        return self._record(
            request, Response.of_json(200, {"id": media_id}), kind="upload", media_id=media_id, mime_type=mime_type
        )

    def uploads(self) -> list[Recorded]:
        """Every upload call, in order; ``extra`` holds the media id and the file's declared type."""
        return [c for c in self.calls if c.extra.get("kind") == "upload"]

    def _node(self, request: Request, node: str) -> Response:
        if node == self.phone_number_id:
            info = shapes.phone_number_record(node, VERIFIED_NAME, DISPLAY_NUMBER)
            return self._record(request, Response.of_json(200, info), kind="phone_number")
        with self._cond:
            media = self._media.get(node)
            self._expired_media.discard(node)
        if media is None:
            response = graph_error(missing_node(node, "GET"))
            return self._record(request, response, kind="media_lookup", media_id=node, authorized=True)
        size: int | str = media.declared_size if media.declared_size is not None else len(media.data)
        url = media.url or f"{self.url}/media-download/{media.id}"
        size = str(size) if media.size_as_string else size
        answer = shapes.media_record(media.id, url, media.mime_type, media.sha256, size)
        return self._record(request, Response.of_json(200, answer), kind="media_lookup", media_id=node, authorized=True)

    def _download(self, request: Request, media_id: str) -> Response:
        authorized = request.bearer() == self.access_token
        with self._cond:
            media = self._media.get(media_id)
            expired = media_id in self._expired_media
        if not authorized:
            response = graph_error(bad_token())
        elif media is None or expired:
            response = Response(404, b"URL signature expired", content_type="text/plain")
        else:
            response = Response(200, media.data, content_type=media.mime_type)
        self._record(request, response, kind="media_download", media_id=media_id, authorized=authorized)
        return response


def _multipart(request: Request) -> dict[str, tuple[bytes, str]]:
    """The fields of a multipart/form-data body: name -> (bytes, the part's content type)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    parsed = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
    )
    fields = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_payload(decode=True) or b"", part.get_content_type())
    return fields


def _is_delivered_send(call: Recorded, to: str | None, type_: str | None) -> bool:
    if call.extra.get("kind") != "send" or call.status != 200:
        return False
    addressed = to is None or shapes.recipient_of(call.json) == to
    return addressed and (type_ is None or call.json.get("type", "text") == type_)


def _scripted_response(scripted: ScriptedFailure) -> Response:
    headers = (("Retry-After", f"{scripted.retry_after:g}"),) if scripted.retry_after is not None else ()
    if scripted.raw is not None:
        return Response(scripted.status, scripted.raw, content_type="text/html", headers=headers)
    failure = GraphFailure(
        scripted.status, scripted.code, scripted.message or None, subcode=scripted.subcode, details=scripted.details
    )
    return graph_error(failure, headers)
