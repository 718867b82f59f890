"""The original design's extension points: subclass the handler, override _handle_message or _send_message."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import ROOT

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
