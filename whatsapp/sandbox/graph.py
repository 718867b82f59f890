"""The fake Graph API: the outbound calls Meta documents, answered like Meta and recorded.

Meta's references: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages and /reference/media.

Mounted under ``/sandbox/graph``: ``POST /<version>/<phone_number_id>/messages`` (send, mark read, typing indicator),
``GET /<version>/<media_id>`` (media lookup), ``GET /media-download/<media_id>`` (the download URL the lookup hands
out, valid 5 minutes) and ``GET /<version>/<phone_number_id>``. Every call is recorded in the sandbox's records with
its customer, start time and duration, so the simulator can show what the service asked of "Meta". The access token
is checked but never recorded. Request bodies are read within ``BODY_CAP`` bytes (a send is a few KiB), chunked or
sized, and only as :mod:`.guard` allows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any

from flask import Blueprint, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..bodies import BodyTooLarge, request_body
from ..extension import current_service
from . import guard
from .payloads import DISPLAY_PHONE_NUMBER, VERIFIED_NAME, new_media_id, new_wamid
from .records import Records, StoredMedia
from .state import current_sandbox

bp = Blueprint("sandbox_graph", __name__, url_prefix="/sandbox/graph")
bp.before_request(guard.check)

BODY_CAP = 256 * 1024
UPLOAD_CAP = 101 * 1024 * 1024

TEXT_LIMIT = 4096
MEDIA_URL_SECONDS = 300
_VERSION = re.compile(r"^v\d+\.\d+$")
_SEND_TYPES = frozenset(
    {
        "text",
        "interactive",
        "reaction",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "template",
    }
)
_INTERACTIVE_TYPES = ("button", "list", "cta_url", "location_request_message")
_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
_TITLES = {
    100: "Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
}


class GraphFailure(Exception):
    """A call Meta would refuse: answered in Meta's error envelope."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str | None = None,
        *,
        details: str | None = None,
        type_: str = "OAuthException",
        subcode: int | None = None,
    ) -> None:
        super().__init__(message or _TITLES.get(code, "Error"))
        self.status = status
        self.code = code
        self.message = message or f"(#{code}) {_TITLES.get(code, 'Error')}"
        self.details = details
        self.type = type_
        self.subcode = subcode

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)[:22]
        return {"error": error}


def _state() -> tuple[Records, Any]:
    return current_sandbox().records, current_service().settings.whatsapp


def _json(status: int, payload: Any) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _check_token(whatsapp: Any) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = whatsapp.access_token or ""
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise GraphFailure(401, 190)


def _missing_node(node: str) -> GraphFailure:
    return GraphFailure(
        400,
        100,
        f"Unsupported {request.method.lower()} request. Object with ID '{node}' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        type_="GraphMethodException",
        subcode=33,
    )


def _record(
    records: Records,
    customer: str,
    kind: str,
    started: float,
    status: int,
    answer: Any,
    *,
    wamid: str | None = None,
    **extra: Any,
) -> None:
    request_json = _body() if request.method == "POST" else None
    data = {
        "method": request.method,
        "path": request.path,
        "request": request_json,
        "status": status,
        "response": answer,
        "ms": round((time.time() - started) * 1000, 1),
        **extra,
    }
    records.add_event(customer, kind, data, wamid=wamid, at=started)


@bp.post("/<version>/<node>/messages")
def messages(version: str, node: str) -> Response:
    """Send a message, or mark one read (with the typing indicator)."""
    started = time.time()
    records, whatsapp = _state()
    try:
        body = _body()
    except BodyTooLarge:
        failure = GraphFailure(413, 100, f"(#100) The request body is over {BODY_CAP} bytes")
        return _json(failure.status, failure.envelope())
    is_read = isinstance(body, dict) and "status" in body
    customer = _customer(records, body, is_read)
    kind = "read" if is_read else "send"
    try:
        _check_token(whatsapp)
        if not _VERSION.match(version) or node != whatsapp.phone_number_id:
            raise _missing_node(node)
        _validate_read(body) if is_read else _validate_send(body)
    except GraphFailure as failure:
        answer = failure.envelope()
        _record(records, customer, kind, started, failure.status, answer, typing=False)
        return _json(failure.status, answer)
    if is_read:
        typing = (body.get("typing_indicator") or {}).get("type") == "text"
        answer = {"success": True}
        _record(records, customer, kind, started, 200, answer, wamid=body["message_id"], typing=typing)
        return _json(200, answer)
    to = str(body.get("to") or body["recipient"])
    wamid = new_wamid(to)
    contact = {"input": to, "wa_id": _digits(to)} if "to" in body else {"input": to, "user_id": to}
    answer = {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
    records.add_customer(customer, "+" + customer if "to" in body else customer, keep_name=True)
    _record(records, customer, kind, started, 200, answer, wamid=wamid)
    return _json(200, answer)


@bp.post("/<version>/<node>/media")
def upload(version: str, node: str) -> Response:
    """Upload a file for a reply by media id (multipart: file, type, messaging_product); the simulator shows it.

    The form is read within ``UPLOAD_CAP`` (Meta's largest media, a 100 MB document), never into ``_body()``.
    """
    started = time.time()
    records, whatsapp = _state()
    g.sandbox_graph_body = None
    request.max_content_length = UPLOAD_CAP
    try:
        _check_token(whatsapp)
        if not _VERSION.match(version) or node != whatsapp.phone_number_id:
            raise _missing_node(node)
        upload = request.files.get("file")
        mime_type = request.form.get("type", "")
        if request.form.get("messaging_product") != "whatsapp":
            raise GraphFailure(400, 100, "(#100) The parameter messaging_product is required and must be whatsapp.")
        if upload is None or not mime_type:
            raise GraphFailure(400, 131008, details="The parameters file and type are required.")
        data = upload.read()
        media = StoredMedia(
            id=new_media_id(),
            customer="",
            mime_type=mime_type,
            filename=upload.filename or None,
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
        records.put_media(media)
    except RequestEntityTooLarge:
        failure = GraphFailure(413, 100, f"(#100) The upload is over {UPLOAD_CAP} bytes")
        _record(records, "", "upload", started, failure.status, failure.envelope())
        return _json(failure.status, failure.envelope())
    except GraphFailure as failure:
        answer = failure.envelope()
        _record(records, "", "upload", started, failure.status, answer)
        return _json(failure.status, answer)
    answer = {"id": media.id}
    _record(records, "", "upload", started, 200, answer, media_id=media.id)
    return _json(200, answer)


@bp.get("/<version>/<node>")
def node(version: str, node: str) -> Response:
    """The business phone number's record, or a media lookup (the download URL lives 5 minutes)."""
    started = time.time()
    records, whatsapp = _state()
    media = records.media(node)
    customer = media.customer if media else ""
    kind = "media_lookup" if media or node != whatsapp.phone_number_id else "phone_number"
    try:
        _check_token(whatsapp)
        if not _VERSION.match(version):
            raise _missing_node(node)
        if kind == "phone_number":
            answer: dict[str, Any] = {
                "verified_name": VERIFIED_NAME,
                "code_verification_status": "VERIFIED",
                "display_phone_number": _display(DISPLAY_PHONE_NUMBER),
                "quality_rating": "GREEN",
                "platform_type": "CLOUD_API",
                "throughput": {"level": "STANDARD"},
                "id": node,
            }
        elif media is None:
            raise _missing_node(node)
        else:
            expires = int(time.time()) + MEDIA_URL_SECONDS
            answer = {
                "messaging_product": "whatsapp",
                "url": f"{request.url_root}sandbox/graph/media-download/{media.id}?expires={expires}"
                f"&sig={_url_signature(media.id, expires)}",
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": len(media.data),
                "id": media.id,
            }
    except GraphFailure as failure:
        answer = failure.envelope()
        _record(records, customer, kind, started, failure.status, answer, media_id=node)
        return _json(failure.status, answer)
    _record(records, customer, kind, started, 200, answer, media_id=node if media else None)
    return _json(200, answer)


@bp.get("/media-download/<media_id>")
def download(media_id: str) -> Response:
    """The bytes, for the same bearer token; 404 once the URL expired (look the media id up again)."""
    started = time.time()
    records, whatsapp = _state()
    media = records.media(media_id)
    customer = media.customer if media else ""
    try:
        _check_token(whatsapp)
    except GraphFailure as failure:
        answer = failure.envelope()
        _record(records, customer, "media_download", started, failure.status, answer, media_id=media_id)
        return _json(failure.status, answer)
    expires = request.args.get("expires", "")
    valid = expires.isdigit() and hmac.compare_digest(
        request.args.get("sig", ""), _url_signature(media_id, int(expires))
    )
    if media is None or not valid or int(expires) < time.time():
        _record(records, customer, "media_download", started, 404, "URL signature expired", media_id=media_id)
        return Response("URL signature expired", status=404, mimetype="text/plain")
    summary = {"bytes": len(media.data), "mime_type": media.mime_type}
    _record(records, customer, "media_download", started, 200, summary, media_id=media_id)
    return Response(media.data, status=200, mimetype=media.mime_type)


# validation ----------------------------------------------------------------------------------------------------


def _body() -> Any:
    """The request's JSON (``None`` when it is not JSON), read once within ``BODY_CAP`` bytes."""
    if "sandbox_graph_body" not in g:
        raw = request_body(request, BODY_CAP)
        try:
            g.sandbox_graph_body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            g.sandbox_graph_body = None
    return g.sandbox_graph_body


def _customer(records: Records, body: Any, is_read: bool) -> str:
    if not isinstance(body, dict):
        return ""
    if is_read:
        return records.customer_of(str(body.get("message_id") or "")) or ""
    return _digits(str(body["to"])) if body.get("to") else str(body.get("recipient") or "")


def _common(body: Any) -> None:
    if not isinstance(body, dict):
        raise GraphFailure(400, 100, "(#100) The request body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise GraphFailure(400, 100, "(#100) The parameter messaging_product is required and must be whatsapp.")


def _validate_read(body: Any) -> None:
    _common(body)
    if body.get("status") != "read":
        raise GraphFailure(400, 100, "(#100) Param status must be one of {READ}")
    if not body.get("message_id"):
        raise GraphFailure(400, 131008, details="The parameter message_id is required.")
    indicator = body.get("typing_indicator")
    if indicator is not None and (not isinstance(indicator, dict) or indicator.get("type") != "text"):
        raise GraphFailure(400, 131009, details="typing_indicator['type'] must be text.")


def _invalid(details: str) -> GraphFailure:
    return GraphFailure(400, 131009, details=details)


def _validate_send(body: Any) -> None:
    _common(body)
    if bool(body.get("to")) == bool(body.get("recipient")):
        raise GraphFailure(400, 131008, details="One of the parameters to and recipient is required.")
    type_ = body.get("type", "text")
    if type_ not in _SEND_TYPES:
        raise _invalid(f"Param type must be one of {sorted(_SEND_TYPES)}; got {type_!r}.")
    content = body.get(type_)
    if not (isinstance(content, list) and content if type_ == "contacts" else isinstance(content, dict)):
        raise GraphFailure(400, 131008, details=f"The parameter {type_} is required.")
    context = body.get("context")
    if context is not None and not (isinstance(context, dict) and context.get("message_id")):
        raise _invalid("The parameter context['message_id'] is invalid.")
    if type_ == "text":
        text = content.get("body")
        if not isinstance(text, str) or not text:
            raise GraphFailure(400, 131008, details="The parameter text['body'] is required.")
        if len(text) > TEXT_LIMIT or len(text.encode("utf-16-le")) // 2 > TEXT_LIMIT:
            raise GraphFailure(400, 100, f"(#100) Param text['body'] must be at most {TEXT_LIMIT} characters long.")
    elif type_ == "interactive":
        _validate_interactive(content)
    elif type_ == "reaction":
        if not content.get("message_id"):
            raise GraphFailure(400, 131008, details="The parameter reaction['message_id'] is required.")
    elif type_ in _MEDIA_TYPES and not (content.get("id") or content.get("link")):
        raise GraphFailure(400, 131008, details=f"The parameter {type_}['id'] or {type_}['link'] is required.")
    elif type_ in ("image", "video", "document") and len(content.get("caption") or "") > 1024:
        raise _invalid(f"{type_}['caption'] must be at most 1024 characters.")
    elif type_ == "template" and not (content.get("name") and (content.get("language") or {}).get("code")):
        raise GraphFailure(
            400, 131008, details="The parameters template['name'] and ['language']['code'] are required."
        )
    elif type_ == "location" and not all(isinstance(content.get(k), int | float) for k in ("latitude", "longitude")):
        raise GraphFailure(400, 131008, details="The parameters location['latitude'] and ['longitude'] are required.")


def _validate_interactive(content: dict[str, Any]) -> None:
    kind = content.get("type")
    text = (content.get("body") or {}).get("text")
    if kind not in _INTERACTIVE_TYPES:
        raise _invalid(f"interactive['type'] must be one of {', '.join(_INTERACTIVE_TYPES)}.")
    if not isinstance(text, str) or not text:
        raise GraphFailure(400, 131008, details="The parameter interactive['body']['text'] is required.")
    if len(text) > 1024:
        raise _invalid("interactive['body']['text'] must be at most 1024 characters.")
    action = content.get("action") or {}
    if kind == "cta_url":
        parameters = action.get("parameters") or {}
        text, url = parameters.get("display_text"), parameters.get("url")
        if (
            action.get("name") != "cta_url"
            or not text
            or len(text) > 20
            or not str(url).startswith(("http://", "https://"))
        ):
            raise _invalid(
                "A cta_url needs action name cta_url, display_text of 1 to 20 characters and an http(s) url."
            )
        return
    if kind == "location_request_message":
        if action != {"name": "send_location"}:
            raise _invalid("A location request's action must be {'name': 'send_location'}.")
        return
    if kind == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise _invalid("interactive['action']['buttons'] must hold 1 to 3 buttons.")
        ids = set()
        for button in buttons:
            reply = button.get("reply") if isinstance(button, dict) else None
            if button.get("type") != "reply" or not isinstance(reply, dict) or not reply.get("id"):
                raise _invalid("Each button needs type 'reply' and reply['id'].")
            if not reply.get("title") or len(reply["title"]) > 20:
                raise _invalid("A button title must be 1 to 20 characters.")
            ids.add(reply["id"])
        if len(ids) != len(buttons):
            raise _invalid("Button ids must be unique.")
        return
    label = action.get("button")
    if not isinstance(label, str) or not label or len(label) > 20:
        raise _invalid("interactive['action']['button'] must be 1 to 20 characters.")
    sections = action.get("sections")
    if not isinstance(sections, list) or not sections:
        raise GraphFailure(400, 131008, details="The parameter interactive['action']['sections'] is required.")
    rows = [row for section in sections if isinstance(section, dict) for row in section.get("rows") or []]
    if not 1 <= len(rows) <= 10:
        raise _invalid("A list must hold 1 to 10 rows in all.")
    for row in rows:
        if not isinstance(row, dict) or not row.get("id") or not row.get("title") or len(row["title"]) > 24:
            raise _invalid("Each row needs an id and a title of 1 to 24 characters.")
        if len(row.get("description") or "") > 72:
            raise _invalid("A row description must be at most 72 characters.")


def _url_signature(media_id: str, expires: int) -> str:
    secret = current_service().settings.whatsapp.app_secret or ""
    return hmac.new(secret.encode(), f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def _display(number: str) -> str:
    return f"+{number[0]} {number[1:4]}-{number[4:7]}-{number[7:]}"
