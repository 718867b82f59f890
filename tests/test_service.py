"""The core promises, end to end: the real service under gunicorn, signed webhooks, local Graph and OpenAI peers.

Duplicates, per-customer order, Graph's failures and crashes have their own tests under ``tests/reliability/``.
"""

from __future__ import annotations

import base64
import time

from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import VERIFY_TOKEN

CUSTOMER = "16315551234"


def user_texts(request: dict) -> list[str]:
    """The text of every user turn the model was sent, in order."""
    texts = []
    for message in request["messages"]:
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if part.get("type") == "text")
        texts.append(content)
    return texts


def assert_nothing_recorded_or_sent(service, graph, model) -> None:
    """The webhook records a message before it answers, and only what the store holds is ever answered: once the
    store holds nothing at all, nothing can reach the model or the Graph API later, with no need to wait."""
    counts = service.wait_until_idle()["store"]["messages"]
    assert counts == dict.fromkeys(counts, 0), counts
    assert graph.calls == [] and model.chat_requests() == []


# verification and signatures ------------------------------------------------------------------------------------


def test_verify_challenge_is_echoed_and_wrong_token_refused(service):
    ok = service.get(
        "/whatsapp/webhook",
        **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert ok.headers["Content-Type"].startswith("text/plain")
    wrong = service.get(
        "/whatsapp/webhook", **{"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    )
    assert wrong.status_code == 403
    missing = service.get("/whatsapp/webhook", **{"hub.mode": "subscribe"})
    assert missing.status_code == 400


def test_signed_text_is_answered_with_the_models_reply_threaded_to_it(service, fakes):
    graph, model = fakes
    model.reply_with("Our shop opens at nine.")
    message = wh.text_message("When do you open?")
    assert service.post(wh.webhook(message)).status_code == 200
    [reply] = graph.wait_for_texts(1)
    assert reply["to"] == CUSTOMER
    assert reply["body"] == "Our shop opens at nine."
    assert reply["reply_to"] == message["id"]
    [request] = model.chat_requests()
    assert request["messages"][0] == {
        "role": "system",
        "content": "You provide assistance with general queries. Give short and clear answers",
    }
    assert user_texts(request) == ["When do you open?"]
    assert [read["message_id"] for read in graph.reads()] == [message["id"]]
    assert graph.reads()[0]["typing"] is True
    assert graph.reads()[0]["at"] < reply["at"]  # "typing…" shown before the answer, never lingering after it


def test_unsigned_and_forged_webhooks_are_refused_and_produce_nothing(service, fakes):
    graph, model = fakes
    payload = wh.webhook(wh.text_message("forged"))
    assert service.post(payload, secret=None).status_code == 401
    assert service.post(payload, secret="not-the-secret").status_code == 403
    assert service.post(payload, signature="sha256=zz").status_code == 403
    assert service.post(payload, signature="md5=abc").status_code == 403
    assert_nothing_recorded_or_sent(service, graph, model)


# fast acknowledgement -------------------------------------------------------------------------------------------


def test_webhook_answers_200_before_the_model_has_answered(service, fakes):
    graph, model = fakes
    model.hold()
    started = time.monotonic()
    response = service.post(wh.webhook(wh.text_message("slow question")))
    acked_in = time.monotonic() - started
    assert response.status_code == 200
    model.wait_for_requests(1)  # the model was asked, and is still held: nothing was sent yet
    assert graph.sent_texts() == []
    model.release()
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "You said: slow question"
    print(f"acknowledged in {acked_in * 1000:.1f} ms while the model was held")


# long answers ---------------------------------------------------------------------------------------------------


def test_a_long_answer_arrives_in_parts_with_no_word_cut(service, fakes):
    graph, model = fakes
    words = [f"word{n:05d}" for n in range(1100)]
    answer = " ".join(words)  # 10,999 characters of prose with no paragraph breaks
    assert len(answer) > 10_000
    model.reply_with(answer)
    message = wh.text_message("tell me everything")
    service.post(wh.webhook(message))
    graph.wait_for_texts(3)
    service.wait_until_idle()
    parts = [r["body"] for r in graph.sent_texts()]
    assert len(parts) >= 3
    assert all(len(part) <= 4096 for part in parts)
    assert " ".join(parts).split() == words  # every word whole, none lost, in order
    assert graph.sent_texts()[0]["reply_to"] == message["id"]
    assert all(r["reply_to"] is None for r in graph.sent_texts()[1:])


def test_markdown_is_converted_to_whatsapp_formatting(service, fakes):
    graph, model = fakes
    model.reply_with("## Hours\n**Open** daily, ~~not~~ see [our site](https://example.com).")
    service.post(wh.webhook(wh.text_message("hours?")))
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "*Hours*\n*Open* daily, ~not~ see our site (https://example.com)."


# what reaches the agent ------------------------------------------------------------------------------------------


def test_button_list_and_template_replies_reach_the_agent_with_their_ids_and_titles(service, fakes):
    graph, model = fakes
    for message in (
        wh.button_reply("opt-1", "Track my order"),
        wh.list_reply("row-2", "Opening hours", description="When we are open"),
        wh.template_button("STOP_PROMOS", "Stop promotions"),
    ):
        service.post(wh.webhook(message))
    graph.wait_for_texts(3)
    asked = [user_texts(request)[-1] for request in model.chat_requests()]
    assert asked == [
        '[The customer tapped the button "Track my order" (id: opt-1)]',
        '[The customer chose "Opening hours" - When we are open (id: row-2) from the list]',
        '[The customer tapped the template button "Stop promotions" (payload: STOP_PROMOS)]',
    ]


def test_an_image_with_a_caption_is_downloaded_with_the_token_and_given_to_the_model(service, fakes):
    graph, model = fakes
    image = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
    graph.add_media("media-123", image, "image/jpeg")
    service.post(wh.webhook(wh.image_message("media-123", caption="What is this?")))
    graph.wait_for_texts(1)
    [lookup] = graph.media_lookups()
    [download] = graph.media_downloads()
    assert lookup["media_id"] == download["media_id"] == "media-123"
    assert download["authorized"] is True and download["status"] == 200  # the bearer token was sent
    [request] = model.chat_requests()
    parts = request["messages"][-1]["content"]
    assert {"type": "text", "text": "What is this?"} in parts
    [image_part] = [part for part in parts if part["type"] == "image_url"]
    assert image_part["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(image).decode()


def test_a_document_over_the_size_cap_is_never_downloaded_and_the_customer_is_told(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_API__MAX_FILE_SIZE="1000")
    graph.add_media("doc-9", b"%PDF-1.7 small", "application/pdf", declared_size=5_000_000)
    service.post(wh.webhook(wh.document_message("doc-9", "contract.pdf")))
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "Sorry, that document is 4.8 MB; I can only take files up to 1000 bytes."
    assert graph.media_downloads() == []
    assert model.chat_requests() == []


def test_the_acknowledgement_arrives_before_the_answer(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WHATSAPP__AGENT_ACKNOWLEDGEMENT="Got it, thinking…")
    model.hold()
    message = wh.text_message("a hard one")
    service.post(wh.webhook(message))
    [ack] = graph.wait_for_texts(1)
    assert ack["body"] == "Got it, thinking…" and ack["reply_to"] == message["id"]
    model.release()
    ack_again, answer = graph.wait_for_texts(2)
    assert answer["body"] == "You said: a hard one"
    assert ack_again["at"] < answer["at"]


# failures -------------------------------------------------------------------------------------------------------


def test_the_model_failing_gets_the_customer_a_short_apology(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WORKER__RETRY_DELAY="0.2", AK_WORKER__MAX_ATTEMPTS="2")
    model.always_fail(500)
    service.post(wh.webhook(wh.text_message("are you there?")))
    [reply] = graph.wait_for_texts(1, timeout=30)
    assert reply["body"].startswith("Sorry")
    health = service.wait_until_idle()
    assert health["store"]["messages"]["failed"] == 1


# no answers where none is due ----------------------------------------------------------------------------------


def test_status_webhooks_produce_no_outbound_message(service, fakes):
    graph, model = fakes
    statuses = [wh.status(wh.new_wamid(wh.DEFAULT_SENDER), s) for s in ("sent", "delivered", "read", "played")] + [
        wh.status(wh.new_wamid(wh.DEFAULT_SENDER), "failed", errors=[wh.error(131047, "Re-engagement message")])
    ]
    assert service.post(wh.envelope(statuses=statuses)).status_code == 200
    assert_nothing_recorded_or_sent(service, graph, model)
    assert "131047" in service.logs()


def test_the_second_question_carries_the_first_exchange_and_no_other_customers(service, fakes):
    graph, model = fakes
    service.post(wh.webhook(wh.text_message("My name is Ada.")))
    graph.wait_for_texts(1)
    service.post(wh.webhook(wh.text_message("I am Bob.", sender="447700900999")))
    graph.wait_for_texts(2)
    service.post(wh.webhook(wh.text_message("What is my name?")))
    graph.wait_for_texts(3)
    last = model.chat_requests()[-1]
    turns = [(m["role"], m["content"]) for m in last["messages"][1:]]
    assert turns == [
        ("user", "My name is Ada."),
        ("assistant", "You said: My name is Ada."),
        ("user", "What is my name?"),
    ]
