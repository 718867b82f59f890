"""The original design's extension points: subclass the handler, override _handle_message or _send_message."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from unittest import mock

import pytest
from flask import Flask

from whatsapp import AgentWhatsAppRequestHandler, create_app, messages
from whatsapp.config import OpenAISettings, Settings, StoreSettings, WhatsAppSettings, WorkerSettings
from whatsapp.extension import current_service
from whatsapp.store import Job
from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import ACCESS_TOKEN, APP_SECRET, ROOT, VERIFY_TOKEN

HANDLER_MODULE = textwrap.dedent(
    """
    from whatsapp import AgentWhatsAppRequestHandler


    class Polite(AgentWhatsAppRequestHandler):
        def _send_message(self, to, text, reply_to=None):
            super()._send_message(to, text + " -- have a nice day", reply_to)


    class Greeter(AgentWhatsAppRequestHandler):
        def _handle_message(self, message, value):
            name = value["contacts"][0]["profile"]["name"]
            self._send_message(message["from"], f"Hello {name}!", message["id"])
            self._send_message(message["from"], "One moment please.")
            super()._handle_message(message, value)
    """
)


def start_with_handler(start_service, tmp_path, name):
    (tmp_path / "myhandlers.py").write_text(HANDLER_MODULE)
    return start_service(AK_WHATSAPP__HANDLER=f"myhandlers:{name}", PYTHONPATH=str(tmp_path))


def test_an_overridden_send_message_shapes_every_reply(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_with_handler(start_service, tmp_path, "Polite")
    service.post(wh.webhook(wh.text_message("hi")))
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "You said: hi -- have a nice day"


def test_an_overridden_handle_message_sends_each_of_its_messages_once(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_with_handler(start_service, tmp_path, "Greeter")
    message = wh.text_message("what's new?")
    service.post(wh.webhook(message, profile_name="Kerry Fisher"))
    replies = graph.wait_for_texts(3)
    service.post(wh.webhook(message))  # a duplicate delivery changes nothing
    service.wait_until_idle()
    assert [r["body"] for r in graph.sent_texts()] == [
        "Hello Kerry Fisher!",
        "One moment please.",
        "You said: what's new?",
    ]
    assert [r["reply_to"] for r in replies] == [message["id"], None, message["id"]]


def test_a_handler_that_cannot_be_imported_stops_the_service_with_one_sentence(start_service, tmp_path):
    try:
        start_service(AK_WHATSAPP__HANDLER="nowhere:Nothing")
    except AssertionError as failure:
        expected = "whatsapp.handler 'nowhere:Nothing' could not be imported as module:Class: there is no module"
        assert expected in str(failure)
    else:
        raise AssertionError("the service started with a handler that does not exist")


def test_a_handler_module_that_fails_to_import_stops_the_service_with_one_sentence_and_exit_3(tmp_path):
    """`import app` as gunicorn and `flask` do: exit 3 (gunicorn stops instead of rebooting workers), one line."""
    (tmp_path / "brokenhandler.py").write_text("import whatsapp\n\nx = undefined_name\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
        "AK_WHATSAPP__HANDLER": "brokenhandler:Polite",
        "AK_STORE__URL": f"sqlite:///{tmp_path}/w.db",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import app"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Configuration error: whatsapp.handler 'brokenhandler:Polite' could not be imported: "
        "NameError: name 'undefined_name' is not defined (brokenhandler.py, line 3)."
    )


# in process: one message parsed once per attempt ---------------------------------------------------------------


class Watching(AgentWhatsAppRequestHandler):
    """Keeps what each step of the pipeline was handed, and counts the messages parsed while it runs."""

    def __init__(self, **wiring) -> None:
        super().__init__(**wiring)
        self.seen: list[tuple[str, object]] = []
        self.parsed: list[int] = []  # messages parsed per attempt

    def process(self, job: Job) -> None:
        with mock.patch.object(messages, "_build", wraps=messages._build) as build:  # every parse goes through it
            try:
                super().process(job)
            finally:
                self.parsed.append(build.call_count)

    def _handle_message(self, message, value):
        self.seen.append(("raw", message))
        super()._handle_message(message, value)

    def _answer_message(self, message):
        self.seen.append(("pipeline", message))
        super()._answer_message(message)

    def _answer(self, job, message):
        self.seen.append(("answer", message))
        return super()._answer(job, message)


class Rewriting(AgentWhatsAppRequestHandler):
    """Passes the pipeline a message of its own making, as a subclass of the original design could."""

    def _handle_message(self, message, value):
        super()._handle_message({**message, "text": {"body": "rewritten by the subclass"}}, value)


class EditingInPlace(AgentWhatsAppRequestHandler):
    """Edits the dict it was given, then passes it on: the other way a subclass of the original design rewrites."""

    def _handle_message(self, message, value):
        message["text"]["body"] = "rewritten by the subclass"
        super()._handle_message(message, value)


def in_process(tmp_path, fakes, handler: type[AgentWhatsAppRequestHandler]) -> Flask:
    """The app with ``handler``, its worker not started: the test runs each attempt with ``run_once``."""
    graph, model = fakes
    whatsapp = WhatsAppSettings(
        access_token=ACCESS_TOKEN,
        verify_token=VERIFY_TOKEN,
        app_secret=APP_SECRET,
        phone_number_id=wh.PHONE_NUMBER_ID,
        graph_url=graph.url,
    )
    settings = Settings(
        whatsapp=whatsapp,
        store=StoreSettings(url=f"sqlite:///{tmp_path / 'whatsapp.db'}"),
        worker=WorkerSettings(threads=1, retry_delay=0.0),
        openai=OpenAISettings(base_url=model.url + "/v1", api_key="sk-test"),
    )
    return create_app(settings, handler=handler, serve=False)


def receive(app: Flask, message: dict) -> None:
    body = wh.dumps(wh.webhook(message))
    headers = {"X-Hub-Signature-256": wh.sign(body, APP_SECRET), "Content-Type": "application/json"}
    assert app.test_client().post("/whatsapp/webhook", data=body, headers=headers).status_code == 200


def test_a_claimed_message_is_parsed_once_per_attempt_and_every_step_reads_that_message(tmp_path, fakes):
    graph, model = fakes
    app = in_process(tmp_path, fakes, Watching)
    service = current_service(app)
    message = wh.text_message("when do you open?")
    receive(app, message)
    graph.fail_next(status=400, code=131056)  # a throttled send (Graph says try later): the answer is kept

    assert service.worker.run_once() is not None
    assert graph.sent_texts() == [] and len(graph.failed_sends()) == 1
    assert service.worker.run_once() is not None  # the retry, due at once

    handler = service.handler
    assert handler.parsed == [1, 1]
    # attempt one: the hook got the stored dict, and each step the one typed message parsed from it
    (_, raw), (_, typed), (_, answered), (_, raw_again), (_, typed_again) = handler.seen
    assert [step for step, _ in handler.seen] == ["raw", "pipeline", "answer", "raw", "pipeline"]
    assert raw == message and typed.raw == raw and answered is typed
    assert isinstance(typed, messages.Text) and typed.body == "when do you open?"
    assert raw_again == message and typed_again.raw == raw_again and typed_again is not typed
    # what the customer and the model saw: one question, one answer, sent on the second attempt
    assert [m["content"] for m in model.chat_requests()[0]["messages"] if m["role"] == "user"] == ["when do you open?"]
    assert len(model.chat_requests()) == 1
    [reply] = graph.sent_texts()
    assert (reply["body"], reply["reply_to"]) == ("You said: when do you open?", message["id"])


@pytest.mark.parametrize("handler", [Rewriting, EditingInPlace])
def test_a_subclass_that_passes_its_own_message_is_answered_for_that_message(tmp_path, fakes, handler):
    graph, model = fakes
    app = in_process(tmp_path, fakes, handler)
    message = wh.text_message("the customer's words")
    receive(app, message)
    assert current_service(app).worker.run_once() is not None
    [request] = model.chat_requests()
    assert [m["content"] for m in request["messages"] if m["role"] == "user"] == ["rewritten by the subclass"]
    [reply] = graph.sent_texts()
    assert (reply["body"], reply["reply_to"]) == ("You said: rewritten by the subclass", message["id"])
