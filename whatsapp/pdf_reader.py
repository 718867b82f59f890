"""The text of a PDF, read in a child process that cannot take more than its budget (run by ``documents.py``).

A PDF is a program as much as a file: 1 KiB whose page tree names one page 30,000 times costs ten seconds of CPU,
and 200 KiB of Flate streams inflate to hundreds of megabytes. So pypdf runs here, in its own process, with the
kernel holding it to a CPU time (``RLIMIT_CPU``) and an address space (``RLIMIT_AS``) set before anything is parsed,
and it reads at most so many pages and characters. Whatever goes wrong stays in this process.

Usage: ``python -I pdf_reader.py <cpu seconds> <memory bytes> <max pages> <max characters>``, the PDF on stdin.
Prints one JSON object: ``{"text": ..., "pages": <pages in the document>, "read": <pages read>}`` or
``{"unreadable": "encrypted" | "damaged" | "too complex"}`` (``documents.py`` tells the customer, in the words of
``texts.py``). Any other end (killed by the CPU limit, out of memory) is unreadable too.
"""

from __future__ import annotations

import io
import json
import resource
import sys


def main(argv: list[str]) -> int:
    cpu_seconds, memory, max_pages, max_chars = (int(arg) for arg in argv[1:5])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU at the soft limit
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    data = sys.stdin.buffer.read()
    try:
        result = read(data, max_pages, max_chars)
    except MemoryError:
        result = {"unreadable": "too complex"}
    sys.stdout.write(json.dumps(result))
    return 0


def read(data: bytes, max_pages: int, max_chars: int) -> dict:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return {"unreadable": "encrypted"}
        total = len(reader.pages)
        pages: list[str] = []
        size = 0
        for page in reader.pages[:max_pages]:
            text = (page.extract_text() or "").strip()
            pages.append(text)
            size += len(text)
            if size > max_chars:
                break
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, OverflowError):
        return {"unreadable": "damaged"}
    text = "\n\n".join(f"[page {n}]\n{page}" for n, page in enumerate(pages, 1) if page)
    return {"text": text[: max_chars + 1], "pages": total, "read": len(pages)}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
