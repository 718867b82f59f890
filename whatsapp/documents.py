"""Reading the text out of a document a customer sent: PDFs with pypdf, plain text formats directly."""

from __future__ import annotations

import io
import logging

log = logging.getLogger("whatsapp.documents")

TEXT_TYPES = ("text/", "application/json", "application/csv", "application/x-ndjson", "application/xml")
TEXT_SUFFIXES = (".txt", ".csv", ".json", ".md", ".markdown", ".tsv", ".log", ".xml", ".yaml", ".yml")


class UnreadableDocument(Exception):
    """The document's text cannot be read; the message says why, in words a customer understands."""


def readable(mime_type: str | None, filename: str | None) -> bool:
    """Whether we know how to read this kind of document at all (so it is worth downloading)."""
    mime = (mime_type or "").split(";")[0].strip().lower()
    name = (filename or "").lower()
    return mime == "application/pdf" or name.endswith(".pdf") or _is_text(mime, name)


def read_text(data: bytes, mime_type: str | None, filename: str | None) -> str:
    """The document's text; raises :class:`UnreadableDocument` for encrypted, damaged or unknown files."""
    mime = (mime_type or "").split(";")[0].strip().lower()
    name = (filename or "").lower()
    if mime == "application/pdf" or name.endswith(".pdf"):
        return _pdf_text(data)
    if _is_text(mime, name):
        return data.decode("utf-8", errors="replace")
    raise UnreadableDocument("I can only read PDFs and plain text files such as .txt, .csv, .json or .md")


def _is_text(mime: str, name: str) -> bool:
    return mime.startswith(TEXT_TYPES) or name.endswith(TEXT_SUFFIXES)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableDocument("the PDF is password-protected, so I cannot open it")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableDocument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        log.info("unreadable PDF: %s", error)
        raise UnreadableDocument("the PDF seems damaged, so I cannot read it") from None
    text = "\n\n".join(f"[page {n}]\n{page.strip()}" for n, page in enumerate(pages, 1) if page.strip())
    if not text:
        raise UnreadableDocument("the PDF has no text I can read (it may be scanned images)")
    return text
