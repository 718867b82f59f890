"""An attempt that never returns: a tool blocked forever must not keep its message, nor its customer, claimed.

The tool here makes an HTTP call without a timeout to a server the test holds, as a real tool calling a stuck API
would. Past ``worker.job_timeout`` the worker gives the claim up as a transient failure; after the retry budget
the customer gets the apology, and their next message is answered. A stuck thread cannot be killed: when it
finally returns, nothing of it may reach the customer or the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.agent_modules import agent_project
from tests.reliability.conftest import inbox_row, query, reply_rows, wait_for
from tests.test_metrics import scrape
from whatsapp.config import WorkerSettings
from whatsapp.handler import APOLOGY
from whatsapp.privacy import tag
from whatsapp.store import InboxEntry, Job
from whatsapp.store.sqlite import SQLiteStore
from whatsapp.testing import webhooks as wh
from whatsapp.testing.openai_server import tool_call
from whatsapp.worker import Worker

ADA = "4915112345678"

COURIER = """
    import os
    import urllib.request

    from agents import Agent, function_tool


    @function_tool
    def track_parcel(number: str) -> str:
        \"\"\"Where a parcel is, from the courier's API.\"\"\"
        with urllib.request.urlopen(os.environ["COURIER_URL"] + "/" + number) as response:  # no timeout
            return response.read().decode()


    courier = Agent(name="courier", instructions="You track parcels.", tools=[track_parcel])
"""


class StuckApi:
    """An HTTP server whose every request waits until :meth:`answer`: the courier's API, hanging."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.calls = 0
        self.responses = 0
        self._cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with api._cond:
                    api.calls += 1
                    api._cond.notify_all()
                api.answered.wait(60)
                body = b"in the van"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with api._cond:
                    api.responses += 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_calls(self, n: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.calls >= n, timeout):
                raise AssertionError(f"{n} calls to the stuck API expected within {timeout}s, got {self.calls}")

    def answer(self) -> None:
        self.answered.set()

    def stop(self) -> None:
        self.answered.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stuck_api() -> Iterator[StuckApi]:
    api = StuckApi()
    yield api
    api.stop()


def test_an_attempt_past_job_timeout_is_retried_then_apologised_for_and_the_customer_is_answered_again(
    start_service, fakes, tmp_path, stuck_api
):
    graph, model = fakes
    service = start_service(
        workers=1,
        project=agent_project(tmp_path, {"courier.py": COURIER}),
        COURIER_URL=stuck_api.url,
        AK_WHATSAPP__AGENT="courier",
        AK_WORKER__JOB_TIMEOUT="1",
        AK_WORKER__MAX_ATTEMPTS="2",
        AK_WORKER__RETRY_DELAY="0.01",
    )
    track = {"content": None, "tool_calls": [tool_call("track_parcel", {"number": "PX1"})]}
    model.reply_queue([track, track])  # both attempts call the tool, which never returns
    stuck = wh.text_message("Where is my parcel PX1?", sender=ADA)
    service.post(wh.webhook(stuck))
    service.post(wh.webhook(wh.text_message("Hello? Anyone there?", sender=ADA)))

    texts = graph.wait_for_texts(2, to=ADA, timeout=30)
    assert [text["body"] for text in texts] == [APOLOGY, "You said: Hello? Anyone there?"]
    service.wait_until_idle()
    assert stuck_api.calls == 2  # one stuck call per attempt, both still stuck
    row = inbox_row(service, stuck["id"])
    assert row["state"] == "failed" and row["attempts"] == 3
    assert "attempt ran past worker.job_timeout (1 s)" in row["reason"]
    logs = service.logs()
    assert logs.count(f"message {tag(stuck['id'])}: attempt") >= 2
    assert logs.count("ran past worker.job_timeout (1 s); released for a retry") == 2
    assert stuck["id"] not in logs and ADA not in logs

    def attempt_records() -> list[dict]:
        return query(service, "SELECT * FROM attempts WHERE message_id = ? ORDER BY number", stuck["id"])

    attempts = wait_for(lambda: len(attempt_records()) == 3 and attempt_records(), 10, "the last attempt's record")
    assert [json.loads(a["data"])["outcome"] for a in attempts] == ["retry", "retry", "failed"]
    metrics = scrape(service)
    assert metrics[("whatsapp_retries_total", ())] == 2  # each attempt given up is a retry, as a model timeout is
    assert metrics[("whatsapp_messages_failed_total", (("reason", "crashed"),))] == 1
    graph_calls = len(graph.calls)
    replies = reply_rows(service, stuck["id"])
    stuck_api.answer()  # the courier answers at last: both stuck threads return into the agent's run
    wait_for(lambda: stuck_api.responses == 2, 15, "the stuck API answering")
    model.wait_for_requests(5)  # 2 tool calls, the next message, and each returning run asking the model again
    wait_for(lambda: service.logs().count("returned after worker.job_timeout gave it up") == 2, 15, "threads back")

    assert len(graph.calls) == graph_calls  # no late answer, no apology, no "typing…"
    assert reply_rows(service, stuck["id"]) == replies  # nothing planned after the claim was given up
    assert attempt_records() == attempts
    counted = scrape(service)  # not counted twice: no retry, no failure more
    assert counted[("whatsapp_retries_total", ())] == 2
    assert counted[("whatsapp_messages_failed_total", (("reason", "crashed"),))] == 1
    assert inbox_row(service, stuck["id"])["state"] == "failed"
    assert [text["body"] for text in graph.sent_texts(to=ADA)] == [APOLOGY, "You said: Hello? Anyone there?"]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_process_whose_every_thread_is_stuck_says_so_and_a_thread_back_late_changes_nothing(tmp_path):
    store = SQLiteStore(tmp_path / "inbox.db")
    tool_answers = threading.Event()
    calls: list[str] = []
    gave_up: list[Job] = []

    class StuckHandler:
        def process(self, job: Job) -> None:
            calls.append(job.holder)
            tool_answers.wait(30)
            raise ConnectionError("the courier's API hung up")  # transient: would be retried, were it still held

        def give_up(self, job: Job, error: BaseException | None) -> None:
            gave_up.append(job)

        def is_transient(self, error: BaseException) -> bool:
            return True

    lines = Lines()
    logging.getLogger("whatsapp.worker").addHandler(lines)
    settings = WorkerSettings(threads=1, job_timeout=0.3, max_attempts=1, retry_delay=0.01)
    worker = Worker(store, StuckHandler(), settings)
    message = wh.text_message("Where is my parcel?", sender=ADA)
    store.record([InboxEntry(message["id"], ADA, int(message["timestamp"]), {"message": message}, time.time())])
    worker.start()
    try:
        wait_for(lambda: store.get(message["id"]).reason, 15, "the deadline giving the attempt up")
        released = store.get(message["id"])
        assert (released.state, released.holder) == ("received", None)
        assert released.reason == "attempt ran past worker.job_timeout (0.3 s)"
        wait_for(lambda: any("every one of the 1 worker threads is stuck" in line for line in lines.lines), 5, "log")
        assert calls == [worker.holder(0)]  # the one slot is stuck: nothing else was claimed
        assert [a.outcome for a in store.attempts(message["id"])] == ["retry"]

        tool_answers.set()  # the thread returns with a transient error: no second retry, no second count
        wait_for(lambda: store.get(message["id"]).state == "failed", 15, "the next claim failing the message")
        failed = store.get(message["id"])
        assert failed.reason == "gave up after 1 attempts; last: attempt ran past worker.job_timeout (0.3 s)"
        assert [job.attempts for job in gave_up] == [2] and len(calls) == 1
        wait_for(lambda: len(store.attempts(message["id"])) == 2, 5, "the failing attempt's record")
        assert [a.outcome for a in store.attempts(message["id"])] == ["retry", "failed"]
        assert sum("retrying in" in line for line in lines.lines) == 0
        assert sum("returned after worker.job_timeout gave it up" in line for line in lines.lines) == 1
    finally:
        tool_answers.set()
        worker.stop(5)
        logging.getLogger("whatsapp.worker").removeHandler(lines)
        store.close()
