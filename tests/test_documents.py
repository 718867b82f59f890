"""Documents are read within a budget: hostile PDFs built in tests/pdfs.py cost a bounded time and memory, are
never retried, and the customer hears at once why, with the caption still answered."""

from __future__ import annotations

import resource

import pytest

from tests.pdfs import flate_bomb_pdf, pdf_claiming_pages, pdf_with_text
from tests.test_body_limits import peak_memory, workers_of
from whatsapp import UnreadableDocument
from whatsapp.documents import Budget, read_text
from whatsapp.testing import webhooks as wh

MiB = 1024 * 1024


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children: what reading costs, however loaded the machine."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def timed_read(data: bytes, budget: Budget | None = None) -> tuple[str | UnreadableDocument, float]:
    """The text (or the reason it is unreadable) and the CPU seconds the reading cost."""
    started = cpu_seconds()
    try:
        result: str | UnreadableDocument = read_text(data, "application/pdf", "hostile.pdf", budget or Budget())
    except UnreadableDocument as why:
        result = why
    return result, cpu_seconds() - started


def test_a_page_tree_claiming_30000_pages_is_read_up_to_the_page_budget():
    data = pdf_claiming_pages()
    assert len(data) < 3000
    text, took = timed_read(data)
    assert isinstance(text, str)
    assert text.count("The same page again.") == Budget().pages
    assert text.endswith(f"[Only the first {Budget().pages} of 30000 pages were read.]")
    assert took < 3, f"cost {took:.1f}s of CPU"  # every page: ten seconds and more


def test_reading_stops_at_the_cpu_budget():
    endless = Budget(pages=10**6, chars=10**9, cpu_seconds=1)
    why, took = timed_read(pdf_claiming_pages(), endless)
    assert isinstance(why, UnreadableDocument)
    assert str(why) == "the PDF is too complex for me to read"
    assert took < 2, f"cost {took:.1f}s of CPU"


def test_reading_stops_at_the_wall_clock_budget():
    why, _ = timed_read(pdf_with_text("fine"), Budget(wall_seconds=0.001))
    assert str(why) == "the PDF takes too long to read"


@pytest.mark.parametrize("memory", [Budget().memory, 96 * MiB])
def test_a_flate_bomb_is_unreadable_within_the_memory_budget(memory):
    data = flate_bomb_pdf()
    assert len(data) < 256 * 1024  # 210 MB once inflated
    why, took = timed_read(data, Budget(memory=memory))
    assert isinstance(why, UnreadableDocument)
    assert str(why) == "the PDF is too complex for me to read"
    assert took < 3, f"cost {took:.1f}s of CPU"


def test_the_character_budget_cuts_a_long_document():
    text, _ = timed_read(pdf_with_text(*["a line of text"] * 40), Budget(chars=100))
    assert isinstance(text, str) and len(text) == 101


def test_a_hostile_pdf_with_a_caption_is_answered_once_with_the_notice_first(start_service, fakes):
    graph, model = fakes
    service = start_service(workers=1, AK_WORKER__RETRY_DELAY="0.1")
    [worker] = workers_of(service.process.pid)
    before = peak_memory(worker)
    model.reply_with("Your invoice total is usually on page one.")
    graph.add_media("bomb-1", flate_bomb_pdf(), "application/pdf")
    message = wh.document_message("bomb-1", "invoice.pdf", caption="What is the total of this invoice?")
    assert service.post(wh.webhook(message)).status_code == 200

    [reply] = graph.wait_for_texts(1, timeout=20)
    assert reply["body"] == (
        "Sorry, I can't read invoice.pdf: the PDF is too complex for me to read.\n\n"
        "Your invoice total is usually on page one."
    )
    [request] = model.chat_requests()
    asked = request["messages"][-1]["content"]
    assert "could not be read" in asked and asked.endswith("What is the total of this invoice?")
    service.wait_until_idle()
    assert len(graph.media_downloads()) == 1, "the document was read again: retried"
    assert "retrying" not in service.logs()
    assert peak_memory(worker) - before < 64 * MiB  # the bomb went off in the reader's process, not here


def test_an_unreadable_pdf_without_a_caption_gets_the_notice_alone_and_no_model_call(service, fakes):
    graph, model = fakes
    graph.add_media("bomb-2", flate_bomb_pdf(), "application/pdf")
    assert service.post(wh.webhook(wh.document_message("bomb-2", "scan.pdf"))).status_code == 200
    [reply] = graph.wait_for_texts(1, timeout=20)
    assert reply["body"] == "Sorry, I can't read scan.pdf: the PDF is too complex for me to read."
    service.wait_until_idle()
    assert model.chat_requests() == [] and len(graph.media_downloads()) == 1
