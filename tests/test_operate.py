"""Operating it: a message's story from the store, delivery statuses, the latest failures.

The real service under gunicorn answers, Meta-shaped status webhooks report on the parts it sent, and the operator's
commands run as a person runs them (``flask --app app whatsapp ...`` in a subprocess, on the same store).
"""

from __future__ import annotations

import json
import os

from tests.test_cli import flask
from whatsapp.testing import webhooks as wh
from whatsapp.testing.openai_server import Fail

CUSTOMER = "16315551234"
LONG_ANSWER = " ".join(["Our opening hours are long."] * 200)  # about 5,600 characters: two parts


def test_show_tells_the_state_the_reply_ids_and_the_delivery_status_a_webhook_reported(service, fakes, tmp_path):
    graph, model = fakes
    model.reply_with(LONG_ANSWER)
    message = wh.text_message("When do you open?")
    assert service.post(wh.webhook(message)).status_code == 200
    first, second = graph.wait_for_texts(2)
    service.wait_until_idle()

    statuses = [
        wh.status(first["wamid"], "delivered", timestamp="1700000001"),
        wh.status(first["wamid"], "read", timestamp="1700000002"),
        wh.status(second["wamid"], "failed", errors=[wh.error(131047, "Re-engagement message")]),
    ]
    assert service.post(wh.webhook(statuses=statuses)).status_code == 200
    assert service.post(wh.webhook(statuses=[statuses[0]])).status_code == 200  # late, out of order: kept "read"

    shown = flask(["show", message["id"]], service.env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"message {message['id']}" in text
    assert "state     done" in text
    assert "agent     general" in text
    assert f"answer part 1: {first['wamid']}  read at 2023-11-14 22:13:22 UTC" in text
    assert f"answer part 2: {second['wamid']}  failed 131047 Re-engagement message" in text
    assert "#1 " in text and "model " in text and "2 part(s) sent" in text and "-> done" in text
    assert CUSTOMER not in text and "…1234" in text  # phone numbers as the logs show them

    as_json = flask(["show", message["id"], "--json"], service.env, tmp_path)
    told = json.loads(as_json.stdout)
    assert (told["state"], told["agent"]) == ("done", "general")
    assert [(r["wamid"], r["status"], r["error_code"]) for r in told["replies"]] == [
        (first["wamid"], "read", None),
        (second["wamid"], "failed", 131047),
    ]
    [attempt] = told["attempts"]
    assert attempt["outcome"] == "done" and attempt["sends"] == 2 and attempt["model_seconds"] > 0
    assert 0 < told["answer_seconds"] < 10

    listed = flask(["failed"], service.env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"{second['wamid']} to …1234 (answering {message['id']}): 131047 Re-engagement message" in listed.stdout


def test_a_failed_message_is_listed_with_its_reason_and_show_names_it(start_service, fakes, tmp_path):
    graph, model = fakes
    service = start_service(AK_WORKER__MAX_ATTEMPTS="1")
    model.reply_with(Fail(status=400))  # a permanent model error: failed at once, with an apology
    message = wh.text_message("Hello?")
    assert service.post(wh.webhook(message)).status_code == 200
    graph.wait_for_texts(1)
    service.wait_until_idle()

    listed = json.loads(flask(["failed", "--json", "--limit", "5"], service.env, tmp_path).stdout)
    [failed] = listed["messages"]
    assert failed["id"] == message["id"] and "BadRequestError" in failed["reason"]
    shown = flask(["show", message["id"]], service.env, tmp_path).stdout
    assert "state     failed (BadRequestError" in shown
    assert "apology part 1: wamid." in shown
    assert "-> failed after" in shown


def test_show_of_an_unknown_message_says_so(tmp_path, fakes):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AK_", "OPENAI_", "REDIS_"))}
    env["AK_STORE__URL"] = f"sqlite:///{tmp_path}/w.db"
    result = flask(["show", "wamid.nothing"], env, tmp_path)
    assert result.returncode == 1
    assert "no message wamid.nothing in the store" in result.stderr
