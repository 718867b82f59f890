"""Reading the text out of a document a customer sent: PDFs in a bounded child process, plain text directly.

Every way a document can fail to be read ends in :class:`UnreadableDocument`, which is permanent: the customer is told
at once and the message is never retried (the same bytes fail the same way). A PDF is read by ``pdf_reader.py`` in a
child process within a page, character, CPU-time and memory budget, so a hostile file costs at most that budget, and
never the webhook's latency: the parsing holds no lock of this process. At most :data:`CONCURRENT_READERS` children
run at once per process, so the memory a burst of documents can take is bounded too.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from . import texts
from .errors import UnreadableDocument

log = logging.getLogger("whatsapp.documents")

TEXT_TYPES = ("text/", "application/json", "application/csv", "application/x-ndjson", "application/xml")
TEXT_SUFFIXES = (".txt", ".csv", ".json", ".md", ".markdown", ".tsv", ".log", ".xml", ".yaml", ".yml")
READER = Path(__file__).with_name("pdf_reader.py")
CONCURRENT_READERS = 2
#: What the customer is told for each problem ``pdf_reader.py`` reports.
_PDF_PROBLEMS = {"encrypted": texts.PDF_ENCRYPTED, "damaged": texts.PDF_DAMAGED, "too complex": texts.PDF_TOO_COMPLEX}
_readers = threading.BoundedSemaphore(CONCURRENT_READERS)


@dataclass(frozen=True)
class Budget:
    """What reading one PDF may cost. The wall-clock limit also covers waiting for the disk or a loaded machine."""

    pages: int = 50
    chars: int = 100_000
    cpu_seconds: int = 5
    wall_seconds: float = 15.0
    memory: int = 256 * 1024 * 1024  # address space of the child, interpreter included (~32 MiB)


def readable(mime_type: str | None, filename: str | None) -> bool:
    """Whether we know how to read this kind of document at all (so it is worth downloading)."""
    mime = (mime_type or "").split(";")[0].strip().lower()
    name = (filename or "").lower()
    return mime == "application/pdf" or name.endswith(".pdf") or _is_text(mime, name)


def read_text(data: bytes, mime_type: str | None, filename: str | None, budget: Budget = Budget()) -> str:
    """The document's text, at most ``budget.chars + 1`` characters (so a caller sees it was cut); raises
    :class:`UnreadableDocument` for encrypted, damaged, too costly or unknown files."""
    mime = (mime_type or "").split(";")[0].strip().lower()
    name = (filename or "").lower()
    if mime == "application/pdf" or name.endswith(".pdf"):
        return _pdf_text(data, budget)
    if _is_text(mime, name):
        return data[: (budget.chars + 1) * 4].decode("utf-8", errors="replace")[: budget.chars + 1]
    raise UnreadableDocument(texts.DOCUMENT_FORMAT_NOT_READ)


def _is_text(mime: str, name: str) -> bool:
    return mime.startswith(TEXT_TYPES) or name.endswith(TEXT_SUFFIXES)


def _pdf_text(data: bytes, budget: Budget) -> str:
    command = [sys.executable, "-I", str(READER), str(budget.cpu_seconds), str(budget.memory)]
    command += [str(budget.pages), str(budget.chars)]
    with _readers:
        try:
            child = subprocess.run(command, input=data, capture_output=True, timeout=budget.wall_seconds, check=False)
        except subprocess.TimeoutExpired:
            log.warning("PDF of %d bytes: not read within %gs", len(data), budget.wall_seconds)
            raise UnreadableDocument(texts.PDF_TOO_SLOW) from None
    try:
        result = json.loads(child.stdout) if child.returncode == 0 else {}
    except ValueError:
        result = {}
    if "unreadable" in result:
        log.info("PDF of %d bytes: unreadable: %s", len(data), result["unreadable"])
        raise UnreadableDocument(_PDF_PROBLEMS.get(result["unreadable"], texts.PDF_TOO_COMPLEX))
    if "text" not in result:
        why = f"killed by signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
        last = child.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        log.warning("PDF of %d bytes: the reader stopped (%s): %s", len(data), why, last[0][:200])
        raise UnreadableDocument(texts.PDF_TOO_COMPLEX)
    text = result["text"]
    if result["read"] < result["pages"]:
        text += f"\n\n[Only the first {result['read']} of {result['pages']} pages were read.]"
    if not text.strip():
        raise UnreadableDocument(texts.PDF_WITHOUT_TEXT)
    return text
