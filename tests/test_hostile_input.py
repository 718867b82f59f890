"""Webhooks an attacker (or a replay) could send, through the real service: each is answered 200, costs nothing
more than its due, and is never retried into a loop."""

from __future__ import annotations

import time

from tests.reliability.conftest import inbox_row
from tests.test_service import user_texts
from whatsapp.handler import RATE_LIMITED, AgentWhatsAppRequestHandler
from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import APP_SECRET

DAY = 86400


def test_a_lone_surrogate_is_replaced_at_parse_time_and_the_message_answered_once(service, fakes):
    graph, model = fakes
    message = wh.text_message("PLACEHOLDER")
    body = wh.dumps(wh.webhook(message)).replace(b"PLACEHOLDER", b"broken \\ud800 half, whole \\ud83d\\ude00")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": wh.sign(body, APP_SECRET)}
    assert service.http.post(service.url + "/whatsapp/webhook", data=body, headers=headers).status_code == 200
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "You said: broken \ufffd half, whole 😀"
    [request] = model.chat_requests()
    assert user_texts(request) == ["broken \ufffd half, whole 😀"]
    assert "retrying" not in service.logs()


def test_a_unicode_error_is_never_retried():
    assert not AgentWhatsAppRequestHandler.is_transient(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate"))
    assert not AgentWhatsAppRequestHandler.is_transient(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"))


def test_a_message_sent_before_the_retention_window_is_logged_and_dropped(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_STORE__RETENTION_DAYS="2")
    replayed = wh.text_message("an old message, replayed", timestamp=str(int(time.time()) - 3 * DAY))
    fresh = wh.text_message("a new one")
    assert service.post(wh.webhook(replayed, fresh)).status_code == 200
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "You said: a new one"
    service.wait_until_idle()
    assert service.health()["store"]["messages"]["done"] == 1
    assert "sent 3.0 days ago, before the retention window of 2 days; dropped" in service.logs()
    assert len(graph.sent_texts()) == 1


def test_media_from_a_host_off_the_allow_list_is_refused_at_once_and_the_customer_told(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_API__MEDIA_HOSTS="lookaside.fbsbx.com", AK_WORKER__RETRY_DELAY="0.1")
    graph.add_media("photo-1", b"\xff\xd8\xff\xe0photo", "image/jpeg")  # its URL is on 127.0.0.1
    assert service.post(wh.webhook(wh.image_message("photo-1", caption="what is this?"))).status_code == 200
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "Sorry, I couldn't download that image. Could you send it again?"
    service.wait_until_idle()
    assert graph.media_downloads() == [] and model.chat_requests() == []
    assert "media URL refused: 127.0.0.1 is not on api.media_hosts" in service.logs()
    assert "retrying" not in service.logs()


def test_a_media_url_that_is_no_valid_url_is_refused_on_the_first_attempt(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_API__MEDIA_HOSTS="*.fbsbx.com", AK_WORKER__RETRY_DELAY="0.1")
    bad_port = "https://lookaside.fbsbx.com:99999/whatsapp_business/attachments/?mid=1"
    graph.add_media("photo-1", b"\xff\xd8\xff\xe0photo", "image/jpeg", url=bad_port)
    message = wh.image_message("photo-1", caption="what is this?")
    assert service.post(wh.webhook(message)).status_code == 200
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "Sorry, I couldn't download that image. Could you send it again?"
    service.wait_until_idle()
    row = inbox_row(service, message["id"])
    assert (row["state"], row["attempts"]) == ("done", 1)  # a refusal is final: never retried as if transient
    assert graph.media_downloads() == [] and model.chat_requests() == []
    assert "media URL refused: not a valid URL (Port out of range 0-65535)" in service.logs()
    assert "retrying" not in service.logs()


def test_a_backlog_redelivered_after_an_outage_is_not_throttled(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WHATSAPP__RATE_LIMIT_PER_MINUTE="5")
    written = int(time.time()) - 600
    backlog = [wh.text_message(f"question {n}", timestamp=str(written + 20 * n)) for n in range(10)]  # 3 a minute
    assert service.post(wh.webhook(*backlog)).status_code == 200  # Meta delivers them all at once when we are back
    replies = graph.wait_for_texts(10, timeout=30)
    assert [r["body"] for r in replies] == [f"You said: question {n}" for n in range(10)]


def test_one_post_of_many_messages_from_one_sender_is_counted_message_by_message(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WHATSAPP__RATE_LIMIT_PER_MINUTE="5")
    burst = [wh.text_message(f"flood {n}") for n in range(8)]  # all in the same second
    assert service.post(wh.webhook(*burst)).status_code == 200
    service.wait_until_idle(timeout=30)
    bodies = [r["body"] for r in graph.sent_texts()]
    assert bodies == [f"You said: flood {n}" for n in range(5)] + [RATE_LIMITED]
    assert len(model.chat_requests()) == 5
