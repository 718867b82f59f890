"""The fake Graph API: the outbound calls Meta documents, answered like Meta and recorded.

Meta's references: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages and /reference/media.

Mounted under ``/sandbox/graph``: ``POST /<version>/<phone_number_id>/messages`` (send, mark read, typing indicator),
``GET /<version>/<media_id>`` (media lookup), ``GET /media-download/<media_id>`` (the download URL the lookup hands
out, valid 5 minutes) and ``GET /<version>/<phone_number_id>``. Every call is recorded in the sandbox's records with
its customer, start time and duration, so the simulator can show what the service asked of "Meta". The access token
is checked but never recorded. What Meta would refuse is refused with Meta's error, as :mod:`whatsapp.cloud_api`
describes it (the tests' fake Graph API refuses alike). Request bodies are read within ``BODY_CAP`` bytes (a send is
a few KiB), chunked or sized, and only as :mod:`.guard` allows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

from flask import Blueprint, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..bodies import request_body
from ..cloud_api.errors import GraphFailure, bad_token, missing_node
from ..cloud_api.sends import is_read, validate_read, validate_send, validate_upload
from ..cloud_api.shapes import (
    media_record,
    new_media_id,
    new_wamid,
    phone_number_record,
    recipient_of,
    sent,
)
from ..errors import BodyTooLarge
from ..extension import current_service
from . import guard
from .payloads import DISPLAY_PHONE_NUMBER, VERIFIED_NAME
from .records import Records, StoredMedia
from .state import current_sandbox

bp = Blueprint("sandbox_graph", __name__, url_prefix="/sandbox/graph")
bp.before_request(guard.check)

BODY_CAP = 256 * 1024
UPLOAD_CAP = 101 * 1024 * 1024

MEDIA_URL_SECONDS = 300
_VERSION = re.compile(r"^v\d+\.\d+$")


def _state() -> tuple[Records, Any]:
    return current_sandbox().records, current_service().settings.whatsapp


def _json(status: int, payload: Any) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _check_token(whatsapp: Any) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = whatsapp.access_token or ""
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise bad_token()


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
    read = is_read(body)
    customer = _customer(records, body, read)
    kind = "read" if read else "send"
    try:
        _check_token(whatsapp)
        if not _VERSION.match(version) or node != whatsapp.phone_number_id:
            raise missing_node(node, request.method)
        validate_read(body) if read else validate_send(body)
    except GraphFailure as failure:
        answer = failure.envelope()
        _record(records, customer, kind, started, failure.status, answer, typing=False)
        return _json(failure.status, answer)
    if read:
        typing = (body.get("typing_indicator") or {}).get("type") == "text"
        answer = {"success": True}
        _record(records, customer, kind, started, 200, answer, wamid=body["message_id"], typing=typing)
        return _json(200, answer)
    wamid = new_wamid(recipient_of(body))
    answer = sent(body, wamid)
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
            raise missing_node(node, request.method)
        upload = request.files.get("file")
        mime_type = request.form.get("type", "")
        validate_upload(request.form.get("messaging_product"), upload is not None, mime_type)
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
        answer = failure.envelope()
        _record(records, "", "upload", started, failure.status, answer)
        return _json(failure.status, answer)
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
            raise missing_node(node, request.method)
        if kind == "phone_number":
            answer = phone_number_record(node, VERIFIED_NAME, DISPLAY_PHONE_NUMBER)
        elif media is None:
            raise missing_node(node, request.method)
        else:
            expires = int(time.time()) + MEDIA_URL_SECONDS
            url = (
                f"{request.url_root}sandbox/graph/media-download/{media.id}?expires={expires}"
                f"&sig={_url_signature(media.id, expires)}"
            )
            answer = media_record(media.id, url, media.mime_type, media.sha256, len(media.data))
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


# the request -----------------------------------------------------------------------------------------------------


def _body() -> Any:
    """The request's JSON (``None`` when it is not JSON), read once within ``BODY_CAP`` bytes."""
    if "sandbox_graph_body" not in g:
        raw = request_body(request, BODY_CAP)
        try:
            g.sandbox_graph_body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            g.sandbox_graph_body = None
    return g.sandbox_graph_body


def _customer(records: Records, body: Any, read: bool) -> str:
    if not isinstance(body, dict):
        return ""
    if read:
        return records.customer_of(str(body.get("message_id") or "")) or ""
    return _digits(str(body["to"])) if body.get("to") else str(body.get("recipient") or "")


def _url_signature(media_id: str, expires: int) -> str:
    secret = current_service().settings.whatsapp.app_secret or ""
    return hmac.new(secret.encode(), f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())
