"""Three gunicorn workers racing for the same messages: one answer per message id, one customer at a time."""

from __future__ import annotations

from tests.reliability.conftest import inbox_row, post_concurrently
from whatsapp.privacy import tag
from whatsapp.testing import webhooks as wh
from whatsapp.testing.openai_server import text_of

ADA = "4915112345678"
BOB = "447700900123"


def last_user_text(request: dict) -> str:
    return text_of([m for m in request["messages"] if m["role"] == "user"][-1]["content"])


def test_eight_concurrent_deliveries_to_three_workers_are_answered_once(start_service, fakes):
    graph, model = fakes
    service = start_service(workers=3, threads=8)
    model.hold_first()
    message = wh.text_message("one answer, please")
    body = wh.dumps(wh.webhook(message))
    assert post_concurrently(service, [body] * 8) == [200] * 8
    model.wait_for_requests(1)
    assert post_concurrently(service, [body] * 8) == [200] * 8  # again, while the answer is being worked out
    model.release()
    graph.wait_for_texts(1)
    health = service.wait_until_idle()

    assert [r["body"] for r in graph.sent_texts()] == ["You said: one answer, please"]
    assert len(model.chat_requests()) == 1
    assert health["store"]["messages"]["done"] == 1
    assert service.logs().count(f"message {tag(message['id'])}: received from") == 1


def test_one_customers_messages_keep_their_order_while_another_customer_is_not_held_up(start_service, fakes):
    graph, model = fakes
    service = start_service(workers=3, threads=8)
    model.hold_first()  # Ada's first question is slow
    ada = [wh.text_message(f"question {n}", sender=ADA, timestamp=str(wh.RECENT + n)) for n in range(5)]
    assert service.post(wh.webhook(ada[0])).status_code == 200
    model.wait_for_requests(1)
    # The rest arrive out of order and all at once, while her first one is held: Meta's timestamp decides.
    later = [ada[3], ada[1], ada[4], ada[2]]
    assert post_concurrently(service, [wh.dumps(wh.webhook(m)) for m in later]) == [200] * 4

    assert service.post(wh.webhook(wh.text_message("quick one", sender=BOB))).status_code == 200
    [bobs] = graph.wait_for_texts(1, to=BOB)
    assert bobs["body"] == "You said: quick one"
    assert graph.sent_texts(to=ADA) == []
    assert [last_user_text(r) for r in model.chat_requests()] == ["question 0", "quick one"]

    model.release()
    replies = graph.wait_for_texts(5, to=ADA, timeout=20)
    service.wait_until_idle()
    assert [r["body"] for r in replies] == [f"You said: question {n}" for n in range(5)]
    assert [r["reply_to"] for r in replies] == [m["id"] for m in ada]
    asked = [r for r in model.requests if r.path == "/v1/chat/completions" and last_user_text(r.json) != "quick one"]
    assert [last_user_text(r.json) for r in asked] == [f"question {n}" for n in range(5)]
    for reply, next_question in zip(replies, asked[1:], strict=False):
        assert reply["at"] < next_question.at  # one at a time: each asked only after the previous was answered


def test_with_preload_the_jobs_run_in_the_worker_processes_not_in_the_gunicorn_master(start_service, fakes):
    graph, model = fakes
    service = start_service(workers=3, GUNICORN_CMD_ARGS="--preload")
    model.hold_first()
    message = wh.text_message("who answers me?")
    assert service.post(wh.webhook(message)).status_code == 200
    model.wait_for_requests(1)
    holder_pid = int(inbox_row(service, message["id"])["holder"].split(":")[1])
    model.release()
    graph.wait_for_texts(1)
    assert holder_pid != service.process.pid, "the gunicorn master claimed the message"
