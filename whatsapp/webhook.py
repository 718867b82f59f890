"""The HTTP edge: ``GET /whatsapp/webhook`` answers Meta's verification, ``POST`` records messages.

The request thread verifies, parses, records each message in the durable inbox and hands off to the worker. It never
calls the model or the Graph API. Anything that parses is answered 200, however odd its shape (a 5xx makes Meta
redeliver for days); the only 5xx is a 503 when the store cannot record, so that Meta redelivers what we could not
keep.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from flask import Blueprint, Response, request

from . import metrics
from .bodies import request_body
from .errors import BodyTooLarge, StoreUnavailable
from .extension import current_service
from .messages import Webhook, load_json, parse_webhook
from .privacy import clean, mask, tag
from .store import Delivery, InboxEntry, State, Store

log = logging.getLogger("whatsapp.webhook")

MAX_BODY = 4 * 1024 * 1024

bp = Blueprint("whatsapp", __name__, url_prefix="/whatsapp")


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.get("/webhook")
def verify() -> Response:
    """Meta's subscription check: echo ``hub.challenge`` when the verify token matches."""
    settings = current_service().settings
    mode = request.args.get("hub.mode")
    token = request.args.get("hub.verify_token")
    challenge = request.args.get("hub.challenge")
    if mode is None or token is None or challenge is None:
        return _text("missing hub.mode, hub.verify_token or hub.challenge", 400)
    expected = settings.whatsapp.verify_token or ""
    if mode == "subscribe" and expected and hmac.compare_digest(token.encode(), expected.encode()):
        log.info("webhook verify challenge answered")
        return _text(challenge, 200)
    log.warning("webhook verification refused: wrong verify token or mode")
    return _text("verification failed", 403)


@bp.post("/webhook")
@metrics.WEBHOOK_ACK.time()
def receive() -> Response:
    service = current_service()
    try:
        body = request_body(request, MAX_BODY)
    except BodyTooLarge:
        log.warning("webhook refused: the body is over %d bytes", MAX_BODY)
        return _text("body too large", 413)

    app_secret = service.settings.whatsapp.app_secret
    if app_secret:
        header = request.headers.get("X-Hub-Signature-256")
        if header is None:
            log.warning("webhook refused: no X-Hub-Signature-256 header")
            return _text("missing signature", 401)
        if not signature_matches(body, header, app_secret):
            log.warning("webhook refused: the signature does not match the body")
            return _text("invalid signature", 403)

    try:
        payload = load_json(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        log.warning("webhook refused: the body is not JSON (%d bytes)", len(body))
        return _text("invalid JSON", 400)
    if not isinstance(payload, dict):
        log.warning("webhook refused: the JSON is a %s, not an object", type(payload).__name__)
        return _text("JSON must be an object", 400)

    update = parse_webhook(payload)
    settings = service.settings
    entries = _inbox_entries(update, settings.whatsapp.phone_number_id, settings.store.retention_days)
    try:
        created = _record(service.store, entries)
        deliveries = _deliveries(update, service.settings.whatsapp.phone_number_id)
        service.store.record_deliveries(deliveries)
    except StoreUnavailable as error:
        log.error("webhook answered 503: could not record %d message(s): %s", len(entries), error)
        return _text("store unavailable, please redeliver", 503)

    for entry, new in zip(entries, created, strict=True):
        if new:
            log.info(
                "message %s: received from %s",
                tag(entry.id),
                mask(entry.sender),
                extra={"tag": tag(entry.id), "state": State.RECEIVED},
            )
        else:
            log.info(
                "message %s: duplicate delivery ignored",
                tag(entry.id),
                extra={"tag": tag(entry.id), "state": State.RECEIVED, "duplicate": True},
            )
    metrics.RECEIVED.inc(sum(created))
    metrics.DUPLICATES.inc(len(created) - sum(created))
    for delivery in deliveries:
        metrics.DELIVERY_STATUSES.labels(status=delivery.status).inc()
    if any(created):
        service.worker.notify()
    _log_the_rest(update)
    return _text("OK", 200)


def signature_matches(body: bytes, header: str, app_secret: str) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body keyed with the app secret."""
    scheme, _, received = header.partition("=")
    if scheme != "sha256" or not received:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), received.strip().lower().encode())


def _record(store: Store, entries: list[InboxEntry]) -> list[bool]:
    """Record the entries in one go; if one cannot be stored as sent (nested too deep to serialise, say), record
    the others one by one and skip it with a log line, so that one bad message does not cost the rest a 200."""
    if not entries:
        return []
    try:
        return store.record(entries)
    except (ValueError, TypeError, RecursionError) as error:
        log.warning(
            "a batch of %d message(s) could not be stored as sent (%s); recording one by one", len(entries), error
        )
    created = []
    for entry in entries:
        try:
            created += store.record([entry])
        except (ValueError, TypeError, RecursionError) as error:
            log.warning("message %s: cannot be stored (%s); ignored", tag(entry.id), type(error).__name__)
            created.append(False)
    return created


def _inbox_entries(update: Webhook, phone_number_id: str | None, retention_days: float) -> list[InboxEntry]:
    entries = []
    received_at = time.time()
    oldest = received_at - retention_days * 86400
    for message in update.messages:
        if phone_number_id and message.phone_number_id != phone_number_id:
            log.info(
                "message %s: for phone number id %s, not ours; ignored",
                tag(message.id),
                clean(message.phone_number_id or "?"),
            )
            continue
        if not message.id:
            log.warning("a message without an id cannot be deduplicated; ignored")
            continue
        if not message.sender:
            log.warning("message %s: has neither 'from' nor 'from_user_id'; ignored", tag(message.id))
            continue
        if 0 < message.timestamp < oldest:
            # Past the dedupe window its id is forgotten: a replay of a signed old delivery would be answered again.
            log.warning(
                "message %s: sent %.1f days ago, before the retention window of %g days; dropped",
                tag(message.id),
                (received_at - message.timestamp) / 86400,
                retention_days,
            )
            continue
        payload = {"message": message.raw, "value": message.value}
        entries.append(
            InboxEntry(
                id=message.id,
                sender=message.sender,
                timestamp=message.timestamp,
                payload=payload,
                received_at=received_at,
            )
        )
    return entries


def _deliveries(update: Webhook, phone_number_id: str | None) -> list[Delivery]:
    """The statuses of messages we sent from our number, to be kept against the reply parts they name."""
    deliveries = []
    for status in update.statuses:
        if not status.id or not status.status or (phone_number_id and status.phone_number_id != phone_number_id):
            continue
        error = status.errors[0] if status.errors else None
        deliveries.append(
            Delivery(
                wamid=status.id,
                status=status.status,
                timestamp=status.timestamp,
                recipient=status.recipient_id,
                error_code=error.code if error else None,
                error_title=(error.title or error.message) if error else None,
            )
        )
    return deliveries


def _log_the_rest(update: Webhook) -> None:
    """Statuses, account errors and oddities: logged, never answered."""
    for status in update.statuses:
        if status.status == "failed":
            codes = ", ".join(f"{e.code} {e.title or e.message or ''}".strip() for e in status.errors) or "no code"
            log.warning(
                "status: our message %s to %s failed (%s)", tag(status.id), mask(status.recipient_id), clean(codes)
            )
        else:
            log.debug("status: our message %s is %s", tag(status.id), clean(status.status))
    for error in update.errors:
        log.warning("webhook reports an account error %s: %s", error.code, clean(error.title or error.message or ""))
    for problem in update.problems:
        log.info("webhook: %s", clean(problem))
