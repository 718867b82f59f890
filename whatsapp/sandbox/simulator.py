"""``/simulator``: a WhatsApp-like page, and the JSON API behind it under ``/sandbox/api``.

Each action on the page becomes what WhatsApp would deliver: a Meta-shaped webhook, signed with the sandbox's own
generated app secret over its exact bytes, POSTed to this app's own ``/whatsapp/webhook`` in-process (never to the
address a request names: a forged ``Host`` would otherwise have signed bodies sent anywhere). The POST is made from
a background thread, so the page is answered first. Replies come back through the fake Graph API's records, which
the page polls. Signatures are never handed out.

- ``GET  /sandbox/api/customers`` and ``POST`` (``{"wa_id", "name"}``, or ``{"kind": "username", "username",
  "name"}`` for a customer known only by a username: it gets a business-scoped user id, which keys it from then on):
  the simulated customers; ``DELETE /sandbox/api/customers/<wa_id>`` forgets one with its conversation.
- ``POST /sandbox/api/messages``: ``{"customer", "type", ...}``: text, button_reply, list_reply, reaction, location.
- ``POST /sandbox/api/media``: a multipart upload (``customer``, ``file``, ``caption``, ``voice``).
- ``GET  /sandbox/api/conversation?customer=…&after=…``: the customer's events after a cursor, and "typing…".
- ``POST /sandbox/api/seen``: the page displayed our messages: delivered and read, with status webhooks.
- ``POST /sandbox/api/send``: send any ``/messages`` payload as the business through the service's Graph client.
- ``GET  /sandbox/media/<id>``: an uploaded file, for the page to show (as an attachment, never sniffed).

Every route answers only as :mod:`.guard` allows; JSON bodies are read within ``JSON_CAP`` bytes and uploads within
``UPLOAD_CAP`` (chunked or sized), and a body that is not a JSON object gets a 400.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests
from flask import Blueprint, Response, abort, current_app, jsonify, redirect, request, send_from_directory, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..bodies import request_body
from ..cloud_api.sends import is_user_id
from ..cloud_api.shapes import dumps, new_media_id, sha256_b64, sign
from ..errors import BodyTooLarge, GraphAPIError
from ..extension import current_service
from . import ORIGIN, guard, payloads
from .records import Records, StoredMedia
from .state import current_sandbox

log = logging.getLogger("whatsapp.sandbox")

STATIC = os.path.join(os.path.dirname(__file__), "static")
bp = Blueprint("sandbox", __name__, static_folder="static", static_url_path="/sandbox/static")

#: What the WhatsApp app lets a customer send, in MB, and the simulator's own cap. Meta's media reference:
#: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media
MEDIA_LIMITS = {"image": 5, "sticker": 0.5, "audio": 16, "video": 16, "document": 100}
UPLOAD_CAP = 20 * 1024 * 1024
#: The multipart envelope around an upload (boundaries, headers, the caption) on top of the file itself.
FORM_OVERHEAD = 64 * 1024
#: The largest JSON body the simulator's API reads.
JSON_CAP = 256 * 1024
WEBHOOK_TIMEOUT = 10.0
WEBHOOK_PATH = "/whatsapp/webhook"
WEBHOOK_URL = ORIGIN + WEBHOOK_PATH  # answered in-process: the sandbox's session mounts ORIGIN on the app
#: A WhatsApp username: 3 to 35 lowercase letters, digits, dots and underscores, at least one letter.
USERNAME = re.compile(r"^(?=.*[a-z])[a-z0-9._]{3,35}$")

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


bp.before_request(guard.check)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error: HTTPException) -> ResponseReturnValue:
    return _problem(f"the simulator takes files up to {UPLOAD_CAP // (1024 * 1024)} MB", 413)


# the page ------------------------------------------------------------------------------------------------------


@bp.get("/")
def home() -> Response:
    """A newcomer opening the server's address finds the simulator."""
    return redirect(url_for("sandbox.page"))


@bp.get("/simulator")
def page() -> Response:
    response = send_from_directory(STATIC, "simulator.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


# customers -----------------------------------------------------------------------------------------------------


@bp.get("/sandbox/api/customers")
def customers() -> ResponseReturnValue:
    return jsonify({"customers": _records().customers()})


@bp.post("/sandbox/api/customers")
def add_customer() -> ResponseReturnValue:
    body = _json_object()
    name = str(body.get("name") or "").strip()[:60]
    if body.get("kind") == "username":
        username = str(body.get("username") or "").strip().removeprefix("@").lower() or _made_up_username()
        if not USERNAME.match(username):
            return _problem("a username has 3 to 35 letters, digits, dots or underscores (e.g. kerry.fisher)")
        user_id = payloads.new_user_id()
        _records().add_customer(user_id, name or username, username=username)
        return jsonify({"wa_id": user_id, "name": name or username, "username": username}), 201
    wa_id = _digits(str(body.get("wa_id") or ""))
    if not 6 <= len(wa_id) <= 15:
        return _problem("a phone number has 6 to 15 digits, country code first (e.g. 4915112345678)")
    _records().add_customer(wa_id, name or f"+{wa_id}")
    return jsonify({"wa_id": wa_id, "name": name or f"+{wa_id}", "username": None}), 201


@bp.delete("/sandbox/api/customers/<wa_id>")
def remove_customer(wa_id: str) -> ResponseReturnValue:
    if not _records().remove_customer(_customer_key(wa_id)):
        return _problem("no such customer", 404)
    return "", 204


# customer actions ----------------------------------------------------------------------------------------------


@bp.post("/sandbox/api/messages")
def send_message() -> ResponseReturnValue:
    """A customer's text, button or list tap, reaction or shared location, delivered as a signed webhook."""
    body = _json_object()
    customer = _customer_key(str(body.get("customer") or ""))
    if not customer:
        return _problem("customer is required")
    kind = body.get("type", "text")
    reply_to = body.get("reply_to") or None
    if kind == "text":
        text = str(body.get("text") or "")
        if not text.strip():
            return _problem("text is empty")
        message = payloads.message(customer, "text", {"body": text}, context_id=reply_to)
    elif kind in ("button_reply", "list_reply"):
        if not (body.get("id") and body.get("title") and reply_to):
            return _problem("a button or list reply needs id, title and reply_to (the interactive message)")
        choice = {"id": str(body["id"]), "title": str(body["title"])}
        if kind == "list_reply" and body.get("description"):
            choice["description"] = str(body["description"])
        message = payloads.message(customer, "interactive", {"type": kind, kind: choice}, context_id=reply_to)
    elif kind == "reaction":
        if not body.get("message_id"):
            return _problem("a reaction needs message_id")
        content = {"message_id": str(body["message_id"]), "emoji": str(body.get("emoji") or "")}
        message = payloads.message(customer, "reaction", content)
    elif kind == "location":
        try:
            latitude, longitude = float(body["latitude"]), float(body["longitude"])
        except (KeyError, TypeError, ValueError):
            return _problem("a location needs latitude and longitude")
        content = {"latitude": latitude, "longitude": longitude}
        content.update({k: str(body[k]) for k in ("name", "address") if body.get(k)})
        message = payloads.message(customer, "location", content, context_id=reply_to)
    else:
        return _problem(f"unknown type {kind!r}")
    return _deliver(customer, message)


@bp.post("/sandbox/api/media")
def send_media() -> ResponseReturnValue:
    """An image, document, video or voice note: stored for the fake Graph, then announced in a webhook."""
    # Parsing the form reads the body: stop (413) one byte past the cap, however it is sent.
    request.max_content_length = UPLOAD_CAP + FORM_OVERHEAD
    customer = _customer_key(request.form.get("customer", ""))
    upload = request.files.get("file")
    if not customer or upload is None:
        return _problem("customer and file are required")
    data = upload.read(UPLOAD_CAP + 1)
    if not data:
        return _problem("the file is empty")
    if len(data) > UPLOAD_CAP:
        return _problem(f"the simulator takes files up to {UPLOAD_CAP // (1024 * 1024)} MB", 413)
    mime_type = (upload.mimetype or "application/octet-stream").lower()
    voice = request.form.get("voice") == "true"
    kind = _media_kind(mime_type, voice)
    if len(data) > MEDIA_LIMITS[kind] * 1024 * 1024:
        return _problem(f"WhatsApp does not send a {kind} over {MEDIA_LIMITS[kind]:g} MB", 413)
    filename = os.path.basename(upload.filename or "") or None
    media = StoredMedia(
        id=new_media_id(),
        customer=customer,
        mime_type=mime_type,
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )
    _records().put_media(media)
    content: dict[str, Any] = {"mime_type": mime_type, "sha256": sha256_b64(data), "id": media.id}
    caption = request.form.get("caption", "").strip()
    if caption and kind in ("image", "video", "document"):
        content["caption"] = caption
    if kind == "document":
        content["filename"] = filename or "document"
    if kind == "audio":
        content["voice"] = voice
    if kind == "sticker":
        content["animated"] = False
    message = payloads.message(customer, kind, content, context_id=request.form.get("reply_to") or None)
    return _deliver(customer, message)


@bp.post("/sandbox/api/seen")
def seen() -> ResponseReturnValue:
    """The page showed our messages: record delivered and read, and tell the service with a status webhook."""
    body = _json_object()
    customer = _customer_key(str(body.get("customer") or ""))
    ids = body.get("ids") or []
    if not isinstance(ids, list):
        return _problem("ids must be a list of message ids")
    records = _records()
    statuses: list[tuple[str, str]] = []
    for wamid in ids:
        if not isinstance(wamid, str) or records.customer_of(wamid) != customer:
            continue
        for status in ("delivered", "read"):
            if not records.has_status(wamid, status):
                records.add_event(customer, "status", {"status": status}, wamid=wamid)
                statuses.append((wamid, status))
    if statuses:
        payload = payloads.status_webhook(statuses, customer, _settings().phone_number_id)
        _post_in_background(customer, None, payload)
    return jsonify({"statuses": [{"id": w, "status": s} for w, s in statuses]})


@bp.post("/sandbox/api/send")
def send_as_business() -> ResponseReturnValue:
    """Send any ``/messages`` payload through the service's own Graph client (try an interactive list, say)."""
    payload = _json_object()
    if not (payload.get("to") or payload.get("recipient")):
        return _problem("send a /messages payload with at least 'to' (or 'recipient') and 'type'")
    client = current_sandbox().client
    try:
        wamid = client.send(payload)
    except GraphAPIError as error:
        return jsonify({"error": {"code": error.code, "message": error.message, "details": error.details}}), 400
    return jsonify({"id": wamid})


# the conversation ----------------------------------------------------------------------------------------------


@bp.get("/sandbox/api/conversation")
def conversation() -> ResponseReturnValue:
    customer = _customer_key(request.args.get("customer", ""))
    try:
        after = int(request.args.get("after", "0"))
    except ValueError:
        after = 0
    records = _records()
    events = records.events(customer, after)
    cursor = events[-1]["seq"] if events else after
    return jsonify({"events": events, "cursor": cursor, "typing": records.typing(customer), "now": time.time()})


@bp.get("/sandbox/media/<media_id>")
def media(media_id: str) -> Response:
    found = _records().media(media_id)
    if found is None:
        return Response("no such media", status=404, mimetype="text/plain")
    response = Response(found.data, mimetype=found.mime_type)
    response.headers["Cache-Control"] = "private, max-age=86400"
    # What a customer uploaded never runs as a page of this origin: downloaded, not rendered, never sniffed.
    # (<img>, <audio> and <video> on the simulator page still show it.)
    name = quote(found.filename or f"{found.id}")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{name}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


# delivery ------------------------------------------------------------------------------------------------------


def _deliver(customer: str, message: dict[str, Any]) -> ResponseReturnValue:
    """Record the customer's message and POST its webhook to this server in the background."""
    records = _records()
    name, username = records.customer(customer) or (f"+{customer}", None)
    records.add_customer(customer, name, keep_name=True)
    payload = payloads.webhook(message, name, _settings().phone_number_id, username=username)
    records.add_event(customer, "inbound", {"message": message, "webhook": payload}, wamid=message["id"])
    _post_in_background(customer, message["id"], payload)
    return jsonify({"id": message["id"], "webhook": payload}), 202


def _post_in_background(customer: str, wamid: str | None, payload: dict[str, Any]) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    _pool().submit(_post_webhook, app, customer, wamid, payload)


def _post_webhook(app: Any, customer: str, wamid: str | None, payload: dict[str, Any]) -> None:
    """POST like Meta: the exact bytes, their signature, Meta's user agent; record status and time to ack.

    The POST goes to this app in-process, through the same WSGI stack a socket would reach; the signature is
    checked there and never recorded, so no visitor ever obtains one.
    """
    sandbox = current_sandbox(app)
    records: Records = sandbox.records
    secret = current_service(app).settings.whatsapp.app_secret or ""
    body = dumps(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        "X-Hub-Signature-256": sign(body, secret),
    }
    started = time.time()
    result: dict[str, Any] = {"url": WEBHOOK_PATH, "via": "in-process", "signed": True, "bytes": len(body)}
    try:
        answer = sandbox.webhooks.post(WEBHOOK_URL, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
        result.update(status=answer.status_code, answer=answer.text[:200])
    except requests.RequestException as error:  # pragma: no cover - in-process: only a bug in the app gets here
        log.warning("sandbox: could not POST the webhook in-process: %s", type(error).__name__)
        result.update(status=None, error=type(error).__name__)
    result["ms"] = round((time.time() - started) * 1000, 1)
    try:
        if wamid is None:
            result["statuses"] = [s["id"] for s in payload["entry"][0]["changes"][0]["value"]["statuses"]]
        records.add_event(customer, "ack" if wamid else "status_ack", result, wamid=wamid, at=started)
    except Exception:  # a background thread has nobody to raise to
        log.exception("sandbox: could not record a webhook acknowledgement")


def _pool() -> ThreadPoolExecutor:
    """One delivery thread per process: webhooks leave in the order the customer acted."""
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-webhook")
            _executor_pid = os.getpid()
        return _executor


# helpers -------------------------------------------------------------------------------------------------------


def _records() -> Records:
    return current_sandbox().records


def _settings() -> Any:
    return current_service().settings.whatsapp


def _problem(message: str, status: int = 400) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _json_object() -> dict[str, Any]:
    """The request's JSON object, read within ``JSON_CAP`` bytes; anything else is answered 400 (or 413) here."""
    try:
        body = json.loads(request_body(request, JSON_CAP) or b"null")
    except BodyTooLarge:
        abort(_problem(f"the body is over {JSON_CAP // 1024} KiB", 413))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        abort(_problem("the body is not valid JSON", 400))
    if not isinstance(body, dict):
        abort(_problem("the body must be a JSON object", 400))
    return body


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())[:20]


def _customer_key(text: str) -> str:
    """A customer as the page names it: a business-scoped user id as it is, else the digits of a phone number."""
    text = text.strip()
    return text if is_user_id(text) else _digits(text)


def _made_up_username() -> str:
    return f"customer_{secrets.randbelow(10**6):06d}"


def _media_kind(mime_type: str, voice: bool) -> str:
    if voice or mime_type.startswith("audio/"):
        return "audio"
    if mime_type in ("image/jpeg", "image/png"):
        return "image"
    if mime_type == "image/webp":
        return "sticker"
    if mime_type in ("video/mp4", "video/3gpp"):
        return "video"
    return "document"
