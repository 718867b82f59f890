"""``GET /metrics`` under gunicorn with two workers: totals that add up whichever worker answers the scrape."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import time

from prometheus_client.parser import text_string_to_metric_families

from whatsapp.testing import webhooks as wh
from whatsapp.testing.openai_server import Fail
from whatsapp.testing.service import Service

# A scrape is a fresh connection (whatsapp.testing.service.fresh_connections): each one may land on either worker.
SCRAPES = 12


def scrape(service: Service, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """One scrape as {(sample name, sorted labels): value}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = service.http.get(service.url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def receiving_workers(service: Service) -> set[str]:
    """The pids of the worker processes whose webhook recorded a message, from the log lines."""
    return set(re.findall(r"\[(\d+)\] whatsapp\.webhook:.*received from", service.logs()))


def worker_processes(service: Service) -> set[str]:
    """The pids of the worker processes that started their threads so far."""
    return set(re.findall(r"worker started: \d+ threads in process (\d+)", service.logs()))


def test_totals_add_up_across_two_workers_on_every_scrape(start_service, fakes):
    graph, model = fakes
    model.reply_with("Noted.")
    service = start_service(workers=2, threads=4)
    posted = []

    def post_one(n: int) -> None:
        # one customer each: the rate limit (20 a minute per customer) must not turn an answer into a notice
        message = wh.text_message(f"question {n}", sender=f"1555000{n:04d}")
        assert service.post(wh.webhook(message)).status_code == 200
        posted.append(message)

    # Post concurrently until both workers have recorded messages: the totals must then come from two processes.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len(receiving_workers(service)) < 2:
            assert len(posted) < 200, "every webhook landed on one worker"
            list(pool.map(post_one, range(len(posted), len(posted) + 8)))
    for message in posted[:3]:  # Meta delivers some twice
        assert service.post(wh.webhook(message)).status_code == 200
    graph.wait_for_texts(len(posted))
    service.wait_until_idle()

    scrapes = [scrape(service) for _ in range(SCRAPES)]
    first = scrapes[0]
    n = len(posted)
    assert first[("whatsapp_messages_received_total", ())] == n
    assert first[("whatsapp_duplicate_deliveries_total", ())] == 3
    assert first[("whatsapp_messages_answered_total", ())] == n
    assert first[("whatsapp_webhook_ack_seconds_count", ())] == n + 3
    assert first[("whatsapp_model_seconds_count", ())] == n
    assert first[("whatsapp_answer_seconds_count", ())] == n
    assert first[("whatsapp_messages", (("state", "done"),))] == n
    assert first[("whatsapp_queue_depth", ())] == 0
    assert first[("whatsapp_claims_held", ())] == 0
    assert first[("whatsapp_oldest_waiting_seconds", ())] == 0
    assert first[("whatsapp_store_up", ())] == 1
    for later in scrapes[1:]:
        assert later == first  # nothing happened between scrapes: every worker tells the same totals


def test_failures_retries_graph_errors_and_unreadable_documents_are_counted(start_service, fakes):
    graph, model = fakes
    service = start_service(workers=2, threads=2, AK_WORKER__RETRY_DELAY="0.1")

    model.reply_queue([Fail(status=500)] * 3)  # the SDK tries 3 times; then "Noted." in our second attempt
    model.reply_with("Noted.")
    assert service.post(wh.webhook(wh.text_message("retried", sender="15550001"))).status_code == 200
    graph.wait_for_texts(1, to="15550001")
    service.wait_until_idle()

    graph.fail_next(1, status=400, code=131047, message="Re-engagement message")  # permanent: failed at once
    assert service.post(wh.webhook(wh.text_message("too late", sender="15550002"))).status_code == 200
    service.wait_until_idle()

    document = wh.document_message("media-zip", "archive.zip", mime_type="application/zip", sender="15550003")
    assert service.post(wh.webhook(document)).status_code == 200
    graph.wait_for_texts(1, to="15550003")  # "Sorry, I can't read archive.zip..."
    service.wait_until_idle()

    failed_delivery = wh.status(graph.sent_texts("15550001")[0]["wamid"], "failed", recipient_id="15550001")
    failed_delivery["errors"] = [wh.error(131026, "Message undeliverable")]
    assert service.post(wh.webhook(statuses=[failed_delivery])).status_code == 200

    for metrics in [scrape(service) for _ in range(4)]:
        assert metrics[("whatsapp_retries_total", ())] == 1
        assert metrics[("whatsapp_messages_failed_total", (("reason", "graph"),))] == 1
        assert metrics[("whatsapp_graph_send_errors_total", (("code", "131047"),))] == 1
        assert metrics[("whatsapp_documents_unreadable_total", ())] == 1
        assert metrics[("whatsapp_delivery_statuses_total", (("status", "failed"),))] == 1
        assert metrics[("whatsapp_messages_answered_total", ())] == 2
        assert metrics[("whatsapp_messages", (("state", "failed"),))] == 1


def test_a_metrics_token_is_required_when_set(start_service):
    service = start_service(workers=1, threads=2, AK_API__METRICS_TOKEN="scrape-token-123")
    assert service.get("/metrics").status_code == 401
    wrong = service.http.get(service.url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert (wrong.status_code, wrong.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert scrape(service, token="scrape-token-123")[("whatsapp_store_up", ())] == 1
    assert "scrape-token-123" not in service.logs()


def test_a_killed_worker_still_counts_after_gunicorn_replaces_it(start_service, fakes):
    graph, model = fakes
    model.reply_with("Noted.")
    service = start_service(workers=2, threads=2)
    messages = [wh.text_message(f"question {n}", sender=f"1555000{n:04d}") for n in range(6)]
    for message in messages:
        assert service.post(wh.webhook(message)).status_code == 200
    graph.wait_for_texts(len(messages))
    service.wait_until_idle()
    before = scrape(service)[("whatsapp_messages_received_total", ())]
    assert before == len(messages)

    booted = worker_processes(service)
    os.kill(int(receiving_workers(service).pop()), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not worker_processes(service) - booted:  # gunicorn replaces the worker, which starts from zero
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.1)
    for _ in range(SCRAPES):
        assert scrape(service)[("whatsapp_messages_received_total", ())] == before
