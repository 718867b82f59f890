"""No phone number in the logs, in any form: messages run through the real service, then every log line is read.

Meta's message ids are base64 of a protobuf that holds the customer's number (``webhooks.new_wamid`` builds them the
same way), so a log line with an id is a log line with the number. Logs name a message by its tag; the command line
takes the tag back.
"""

from __future__ import annotations

import base64

from tests.test_cli import flask
from whatsapp.privacy import tag
from whatsapp.testing import webhooks as wh

CUSTOMER = "447700900123"


def windows(text: str, size: int = 12) -> set[str]:
    return {text[i : i + size] for i in range(0, max(1, len(text) - size + 1))}


def assert_nothing_leaks(logs: str, ids: list[str]) -> None:
    """No line holds the number (beyond the last four digits logs may show), an id, or any 12 characters of one."""
    leaked = {piece for message_id in ids for piece in windows(message_id)}
    for line in logs.splitlines():
        assert CUSTOMER[:-4] not in line, line
        assert base64.b64encode(CUSTOMER.encode()).decode()[:12] not in line, line
        assert not any(piece in line for piece in leaked), line


def test_no_log_line_shows_the_customers_number_or_a_message_id(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WORKER__RETRY_DELAY="0.1")
    graph.fail_next(1, status=500)  # the client's error line names the message it replies to
    first = wh.text_message("Hello", sender=CUSTOMER)
    assert service.post(wh.webhook(first)).status_code == 200
    [reply] = graph.wait_for_texts(1)
    assert service.post(wh.webhook(first)).status_code == 200  # a duplicate delivery is logged too
    failed = wh.status(reply["wamid"], "failed", CUSTOMER, errors=[wh.error(131026, "Message undeliverable")])
    assert service.post(wh.envelope(statuses=[failed])).status_code == 200
    other_number = wh.text_message("for another number", sender=CUSTOMER)
    assert service.post(wh.webhook(other_number, phone_number_id="999")).status_code == 200
    second = wh.text_message("/reset", sender=CUSTOMER)
    assert service.post(wh.webhook(second)).status_code == 200
    graph.wait_for_texts(2)
    service.wait_until_idle()

    logs = service.logs()
    assert f"message {tag(first['id'])}: received from …0123" in logs
    assert f"message {tag(first['id'])}: done" in logs
    assert tag(reply["wamid"]) in logs  # "answered part 1 (m-…)" and the failed status
    assert_nothing_leaks(logs, [first["id"], second["id"], other_number["id"], reply["wamid"]])


def test_a_newline_in_anything_a_webhook_sent_cannot_forge_a_log_line(service, fakes):
    graph, model = fakes
    forged = "\n1999-01-01 00:00:00,000 ERROR [1] whatsapp: FORGED"
    message = wh.text_message("hi", id="wamid.X" + forged, sender="4477009001\n\u202823")
    odd_status = wh.status("wamid.Y" + forged, "failed", errors=[wh.error(1, "title" + forged)])
    payload = wh.combine(
        wh.webhook(message),
        wh.webhook(wh.text_message("elsewhere", sender=CUSTOMER), phone_number_id="1" + forged),
        wh.webhook(wh.image_message("photo" + forged, sender="15550001111")),  # its lookup fails and is logged
        wh.envelope(statuses=[odd_status], errors=[wh.error(2, "account" + forged)]),
    )
    assert service.post(payload).status_code == 200
    service.wait_until_idle()  # answered or failed: Graph may refuse a reply to such a sender
    logs = service.logs()
    assert "?1999-01-01 00:00:00,000 ERROR [1] whatsapp: FORGED" in logs  # logged, on the line it belongs to
    assert not [line for line in logs.splitlines() if line.startswith("1999-01-01")]
    assert "…??23" in logs and "\u2028" not in logs


def test_the_command_line_takes_the_tag_the_logs_show(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_service(AK_WORKER__MAX_ATTEMPTS="1")
    model.always_fail(400)
    message = wh.text_message("please try again", sender=CUSTOMER)
    service.post(wh.webhook(message))
    graph.wait_for_texts(1)
    service.wait_until_idle()
    [failed_line] = [line for line in service.logs().splitlines() if ": failed: " in line]
    logged = failed_line.split("message ", 1)[1].split(":", 1)[0]  # what an operator copies from the log

    model.reset()
    shown = flask(["show", logged], service.env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert message["id"] in shown.stdout
    replayed = flask(["replay", logged], service.env, tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    _, answer = graph.wait_for_texts(2)
    assert answer["body"] == "You said: please try again"
    assert flask(["replay", "m-0000000000"], service.env, tmp_path).returncode == 1
