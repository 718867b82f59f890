"""``flask --app app whatsapp ...``: doctor, send, template, chat, replay."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import click
import openai
from flask import current_app
from flask.cli import AppGroup

from .config import Settings, how_to_set
from .errors import GraphAPIError, ReplyError, StoreUnavailable
from .extension import WhatsAppService, current_service
from .privacy import mask_secret, mask_url
from .replies import Template
from .store import FINISHED_STATES, Store
from .story import failed, show

if TYPE_CHECKING:  # the service module imports this one
    from .sandbox.records import Records


@click.group("whatsapp", cls=AppGroup)
def whatsapp() -> None:
    """Check, send and replay WhatsApp messages with this app's settings."""


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    fix: str = ""
    warning: bool = False  # works, but worth fixing; does not fail the doctor

    def line(self) -> str:
        if self.warning:
            mark = click.style("!", fg="yellow")
        else:
            mark = click.style("✔", fg="green") if self.ok else click.style("✘", fg="red")
        fix = f"\n      fix: {self.fix}" if self.fix and (self.warning or not self.ok) else ""
        return f"  {mark} {self.what}{fix}"


@whatsapp.command()
def doctor() -> None:
    """Check the settings, the Graph API credentials, the webhook, the store and the model."""
    service = current_service()
    sections: list[tuple[str, Callable[[], list[Check]]]] = [
        ("Settings", lambda: _settings_checks(service.settings)),
        ("Graph API", lambda: [_graph_check(service)]),
        ("Webhook", lambda: [_webhook_check(service.settings)]),
        ("Store", lambda: [_store_check(service)]),
        ("Model", lambda: [_model_check(service.settings)]),
    ]
    failed = 0
    for title, run in sections:
        click.echo(click.style(title, bold=True))
        for check in run():
            click.echo(check.line())
            failed += not check.ok
    click.echo()
    click.echo("All checks passed." if not failed else f"{failed} check(s) failed; see the fixes above.")
    sys.exit(1 if failed else 0)


def _settings_checks(settings: Settings) -> list[Check]:
    whatsapp_settings = settings.whatsapp
    checks = [Check(True, f"mode: {settings.mode}")]
    if settings.mode == "sandbox":
        # The sandbox generated the credentials Meta would have given: none of them is the user's to set.
        checks.append(
            Check(True, "no access token: the local simulator and a fake Graph API stand in for Meta (/simulator)")
        )
        checks.append(Check(True, "access token, verify token and app secret: generated for the sandbox"))
        checks.append(Check(True, f"agent: {whatsapp_settings.agent}"))
        return checks
    for key in ("access_token", "verify_token", "phone_number_id", "app_secret"):
        value = getattr(whatsapp_settings, key)
        if value:
            shown = value if key == "phone_number_id" else mask_secret(value)
            checks.append(Check(True, f"whatsapp.{key} is set ({shown})"))
        elif key == "app_secret" and settings.mode == "live":
            # Only reachable with whatsapp.allow_unsigned: the service starts, and this line fails every time.
            unchecked = "whatsapp.app_secret is not set (whatsapp.allow_unsigned): webhook signatures are NOT checked"
            checks.append(Check(False, unchecked, how_to_set("whatsapp", key)))
        else:
            checks.append(Check(False, f"whatsapp.{key} is not set", how_to_set("whatsapp", key)))
    checks.append(Check(True, f"agent: {whatsapp_settings.agent}; Graph API {whatsapp_settings.api_version}"))
    return checks


def _graph_check(service: WhatsAppService) -> Check:
    client = service.handler.client
    try:
        number = client.phone_number()
    except GraphAPIError as error:
        return Check(False, f"GET /{{phone_number_id}} failed: {error}", _graph_fix(error))
    name = number.get("verified_name", "?")
    return Check(True, f"token and phone number id work: {name} ({number.get('display_phone_number', '?')})")


def _graph_fix(error: GraphAPIError) -> str:
    if error.auth_failed:
        return f"replace the access token with a valid permanent one: {how_to_set('whatsapp', 'access_token')}"
    if error.code == 100 or error.status == 404:
        return (
            "whatsapp.phone_number_id must be the id shown in WhatsApp > API Setup, not the phone number: "
            + how_to_set("whatsapp", "phone_number_id")
        )
    if error.status is None:
        return f"the Graph API could not be reached; check the network and {how_to_set('whatsapp', 'graph_url')}"
    return "see Meta's error message above"


def _webhook_check(settings: Settings) -> Check:
    token = settings.whatsapp.verify_token or ""
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "8675309"}
    response = current_app.test_client().get("/whatsapp/webhook", query_string=query)
    if response.status_code == 200 and response.get_data(as_text=True) == "8675309":
        return Check(True, "GET /whatsapp/webhook answers Meta's verify challenge")
    return Check(
        False,
        f"GET /whatsapp/webhook answered {response.status_code} to the verify challenge",
        how_to_set("whatsapp", "verify_token"),
    )


def _store_check(service: WhatsAppService) -> Check:
    url = mask_url(service.settings.store.url)
    try:
        counts = service.store.stats().counts
    except StoreUnavailable as error:
        return Check(False, f"store {url} is not reachable: {error}", how_to_set("store", "url"))
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "empty"
    return Check(True, f"store {url} is reachable ({summary})")


def _model_check(settings: Settings) -> Check:
    config = settings.openai
    if not (config.api_key or config.base_url):
        return Check(
            True,
            "no model configured: the offline demonstration model answers "
            "(set OPENAI_API_KEY, or OPENAI_BASE_URL for a local OpenAI-compatible server)",
        )
    client = openai.OpenAI(
        api_key=config.api_key or "no-key-needed", base_url=config.base_url, timeout=10, max_retries=0
    )
    where = config.base_url or "api.openai.com"
    try:
        names = [model.id for model in client.models.list()]
    except openai.AuthenticationError:
        return Check(False, f"the model endpoint {where} refused the API key", "set a valid OPENAI_API_KEY")
    except openai.OpenAIError as error:
        return Check(
            False, f"the model endpoint {where} did not answer: {type(error).__name__}", "check OPENAI_BASE_URL"
        )
    listed = "listed" if config.model in names else "not listed; check the name"
    return Check(True, f"the model endpoint {where} answers; {config.model} is {listed}")


@whatsapp.command()
@click.argument("to")
@click.argument("text")
def send(to: str, text: str) -> None:
    """Send TEXT to TO: a WhatsApp number (digits, with country code) or a business-scoped user id."""
    customer = recipient(to)
    handler = current_service().handler
    try:
        handler._send_message(customer, text)
    except GraphAPIError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"sent to {to}")


def recipient(text: str) -> str:
    """``+1 (555) 123-4567`` as WhatsApp wants it (``15551234567``), a business-scoped user id as it is
    (``US.13491208655302741918``), or a usage error saying what TO may be."""
    if re.fullmatch(r"[A-Z]{2}\.[0-9]{6,40}", text):
        return text
    digits = "".join(ch for ch in text if ch not in " +-().")
    if not (digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 15):
        raise click.BadParameter(
            f"{text!r} is not a phone number: give its digits with the country code, e.g. 15551234567 "
            "(or a business-scoped user id such as US.13491208655302741918)",
            param_hint="TO",
        )
    return digits


@whatsapp.command()
@click.argument("to")
@click.argument("name")
@click.argument("parameters", nargs=-1)
@click.option("--language", default="en_US", show_default=True, help="The template's language code.")
def template(to: str, name: str, parameters: tuple[str, ...], language: str) -> None:
    """Send the approved template NAME to TO, filling its body's {{1}}, {{2}}... with PARAMETERS.

    Templates are the only messages WhatsApp delivers more than 24 hours after the customer last wrote.
    """
    customer = recipient(to)
    handler = current_service().handler
    try:
        handler.send_reply(customer, Template(name, language, parameters))
    except ReplyError as error:
        raise click.BadParameter(str(error)) from None
    except GraphAPIError as error:
        hint = f" ({error.hint})" if error.hint else ""
        raise click.ClickException(f"{error}{hint}") from None
    click.echo(f"sent template {name} to {to}")


@whatsapp.command()
@click.argument("message_id")
def replay(message_id: str) -> None:
    """Process a stored inbound message again (for instance a failed one); a running server answers it.

    MESSAGE_ID is the WhatsApp message id, or the tag the logs show for it (m-0123456789)."""
    store = current_service().store
    message_id = store.resolve(message_id)
    stored = store.get(message_id)
    if stored is None:
        raise click.ClickException(f"no message {message_id} in the store")
    if not store.requeue(message_id):
        raise click.ClickException(f"message {message_id} is {stored.state}: only done or failed ones can be replayed")
    click.echo(f"message {message_id} was {stored.state}; it is received again and the next free worker answers it")


CHAT_TIMEOUT = 180.0  # seconds to wait for one answer, retries included


@whatsapp.command()
@click.option("--number", default="15550009999", show_default=True, help="The customer's phone number.")
@click.option("--name", default="Terminal", show_default=True, help="The customer's profile name.")
def chat(number: str, name: str) -> None:
    """Talk to the configured agent in the terminal, through the same pipeline, with no WhatsApp.

    Messages go as signed webhooks to /whatsapp/webhook of a local sandbox copy of this app (its own store,
    instance/chat.db; the real agent and model settings), and the replies the Graph API would have received
    are printed. Ctrl-D or /quit ends the chat.
    """
    from .cloud_api.shapes import dumps, sign
    from .sandbox import current_sandbox
    from .sandbox.payloads import message, webhook
    from .service import create_app

    settings = current_service().settings
    sandboxed = replace(
        settings,
        sandboxed=True,
        whatsapp=replace(
            settings.whatsapp,
            access_token=None,
            app_secret=None,
            verify_token=None,
            phone_number_id=None,
            allowed_senders=(),
        ),
        store=replace(settings.store, url=f"sqlite:///{current_app.instance_path}/chat.db"),
    )
    app = create_app(sandboxed, serve=False)  # not a server: no start-up notices, the worker started here
    service = current_service(app)
    records = current_sandbox(app).records
    secret = service.settings.whatsapp.app_secret
    web = app.test_client()
    logging.getLogger().setLevel(logging.WARNING)  # the terminal is for the conversation
    service.worker.start()
    cursor = max((event["seq"] for event in records.events(number)), default=0)
    click.echo(f"Chatting with agent {settings.whatsapp.agent!r} as {name} (+{number}). /quit to stop.")
    try:
        while True:
            try:
                line = input(click.style("you> ", fg="green"))
            except EOFError:
                break
            if line.strip() in ("/quit", "/exit"):
                break
            if not line.strip():
                continue
            inbound = message(number, "text", {"body": line})
            body = dumps(webhook(inbound, name, service.settings.whatsapp.phone_number_id))
            response = web.post(
                "/whatsapp/webhook",
                data=body,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)},
            )
            if response.status_code != 200:
                click.echo(f"the webhook answered {response.status_code}: {response.get_data(as_text=True)}")
                continue
            cursor = _print_replies(service.store, records, number, inbound["id"], cursor)
    finally:
        service.worker.stop()


def _print_replies(store: Store, records: Records, number: str, message_id: str, cursor: int) -> int:
    """Print what was sent to ``number`` once ``message_id`` is done or failed; returns the new cursor."""
    deadline = time.monotonic() + CHAT_TIMEOUT
    while time.monotonic() < deadline:
        stored = store.get(message_id)
        if stored and stored.state in FINISHED_STATES:
            break
        time.sleep(0.05)
    else:
        click.echo("(no answer yet; it will be sent when the model answers)")
    for event in records.events(number, after=cursor):
        cursor = event["seq"]
        sent = event.get("request") or {}
        if event["kind"] != "send" or event.get("status") != 200:
            continue
        text = (sent.get("text") or {}).get("body") or (sent.get("interactive") or {}).get("body", {}).get("text")
        click.echo(click.style("bot> ", fg="cyan") + (text or f"[{sent.get('type')} message]"))
    return cursor


whatsapp.add_command(show)  # the story commands live with the story (whatsapp/story.py)
whatsapp.add_command(failed)
