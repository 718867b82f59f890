"""Process faults under real gunicorn: ``kill -9`` of the whole server and SIGTERM, in the middle of a job.

A message answered 200 is ours alone: these tests kill the server at the worst moments and check that, after a
restart on the same SQLite file, the customer gets exactly one answer, soon, and the model is not asked again
for an answer that was already stored.
"""

from __future__ import annotations

import os
import re
import signal
import time

from tests.reliability.conftest import inbox_row, reply_rows, wait_for
from whatsapp.privacy import tag
from whatsapp.testing import webhooks as wh

CUSTOMER = wh.DEFAULT_SENDER


def test_kill_9_during_the_model_call_is_answered_once_soon_after_a_restart(start_service, fakes):
    graph, model = fakes
    service = start_service()  # default lease (30 s): only the dead-holder sweep can make it quick
    model.hold_first()
    message = wh.text_message("are my shoes ready?")
    assert service.post(wh.webhook(message)).status_code == 200
    model.wait_for_requests(1)
    assert inbox_row(service, message["id"])["state"] == "claimed"

    service.kill()
    restarted_at = time.monotonic()
    service.restart()
    booted_in = time.monotonic() - restarted_at
    [reply] = graph.wait_for_texts(1, timeout=30)
    answered_in = time.monotonic() - restarted_at
    print(f"after kill -9: restarted in {booted_in:.2f}s, answered {answered_in:.2f}s after the restart began")

    service.wait_until_idle()
    assert [r["body"] for r in graph.sent_texts()] == ["You said: are my shoes ready?"]
    assert reply["reply_to"] == message["id"]
    row = inbox_row(service, message["id"])
    assert (row["state"], row["attempts"]) == ("done", 2)
    assert answered_in < 15, "the dead holder's claim waited for its lease instead of being released at once"


def test_kill_9_between_reply_parts_resumes_with_the_missing_parts_and_no_second_model_call(start_service, fakes):
    graph, model = fakes
    words = [f"word{n:05d}" for n in range(1100)]
    model.reply_with(" ".join(words))  # about 11,000 characters: three parts
    service = start_service()
    graph.hold_sends(after=1)  # part 1 reaches "Meta"; part 2 is held at the door
    message = wh.text_message("tell me everything")
    assert service.post(wh.webhook(message)).status_code == 200
    graph.wait_for_held_send()
    [first] = graph.sent_texts()
    row = inbox_row(service, message["id"])
    assert row["state"] == "answered" and row["answer"] == " ".join(words)
    planned = reply_rows(service, message["id"])
    assert len(planned) == 3
    assert planned[0]["wamid"] == first["wamid"] and planned[1]["wamid"] is None

    service.kill()
    graph.release_sends(drop=True)  # the held part 2 never got through
    service.restart()
    graph.wait_for_texts(3, timeout=30)
    service.wait_until_idle()

    sent = graph.sent_texts()
    assert [r["body"] for r in sent] == [p["body"] for p in planned]  # each part once, in order
    assert " ".join(r["body"] for r in sent).split() == words
    assert [r["reply_to"] for r in sent] == [message["id"], None, None]
    assert len(model.chat_requests()) == 1  # the stored answer was sent, not asked for again
    assert inbox_row(service, message["id"])["state"] == "done"


def test_sigterm_mid_job_releases_the_claim_and_the_next_process_answers_once(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WORKER__SHUTDOWN_TIMEOUT="2")  # well inside gunicorn's graceful timeout (10 s)
    model.hold_first()
    message = wh.text_message("still there?")
    assert service.post(wh.webhook(message)).status_code == 200
    model.wait_for_requests(1)

    returncode = service.stop(signal.SIGTERM)
    assert returncode == 0, "gunicorn did not stop within its graceful timeout"
    row = inbox_row(service, message["id"])
    assert (row["state"], row["holder"], row["attempts"]) == ("received", None, 0)  # released, attempt refunded
    assert f"message {tag(message['id'])}: released at shutdown" in service.logs()
    assert graph.sent_texts() == []

    service.start()
    [reply] = graph.wait_for_texts(1, timeout=15)
    service.wait_until_idle()
    assert reply["body"] == "You said: still there?"
    assert len(graph.sent_texts()) == 1
    assert len(model.chat_requests()) == 2  # the first call died with its process; no answer was stored


def test_sigterm_mid_job_lets_the_running_job_finish_before_the_process_exits(start_service, fakes):
    graph, model = fakes
    service = start_service()
    model.hold_first()
    message = wh.text_message("almost done?")
    assert service.post(wh.webhook(message)).status_code == 200
    model.wait_for_requests(1)
    holder_pid = int(inbox_row(service, message["id"])["holder"].split(":")[1])

    os.killpg(service.process.pid, signal.SIGTERM)
    # The worker's HTTP side has shut down and it is now in its exit handlers, with the job still running.
    wait_for(lambda: f"Worker exiting (pid: {holder_pid})" in service.logs(), 15, "the worker beginning to exit")
    assert service.process.poll() is None
    model.release()
    assert service.process.wait(20) == 0

    [reply] = graph.sent_texts()
    assert reply["body"] == "You said: almost done?"
    assert inbox_row(service, message["id"])["state"] == "done"
    assert re.search(rf"\[{holder_pid}\] whatsapp.worker: worker stopped", service.logs())

    service.start()  # the next process finds nothing left to do
    service.wait_until_idle()
    assert len(graph.sent_texts()) == 1 and len(model.chat_requests()) == 1
