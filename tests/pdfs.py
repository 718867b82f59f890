"""Small real PDFs for tests: text that pypdf extracts, a password-protected one, and hostile ones.

The hostile ones are what an attacker sends as a document: tiny files that cost a reader minutes of CPU or hundreds
of megabytes of memory. They are written by hand, object by object, with a correct xref table.
"""

from __future__ import annotations

import io
import zlib

from pypdf import PdfWriter

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def pdf_with_text(*lines: str) -> bytes:
    """A one-page PDF (Helvetica, one text line per argument)."""
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            _page(parent=2, contents=b"4 0 R", font=5),
            _stream(_text_content(lines)),
            FONT,
        ]
    )


def pdf_claiming_pages(fanout: int = 10, depth: int = 4, roots: int = 3) -> bytes:
    """A page tree that names one text page ``roots * fanout ** depth`` times (30,000 by default) in 2-3 KiB: each
    level's ``/Kids`` repeats the one node below it ``fanout`` times, so the whole tree is a few small objects."""
    # 1 catalog, 2 root, 3.. one node per level, then the page, its content and its font
    first_level = 3
    page = first_level + depth
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    objects.append(_pages(parent=None, kid=first_level, times=roots, count=roots * fanout**depth))
    for level in range(depth):
        number = first_level + level
        kid = number + 1
        count = fanout ** (depth - level)
        objects.append(_pages(parent=number - 1 if level else 2, kid=kid, times=fanout, count=count))
    objects.append(_page(parent=page - 1, contents=b"%d 0 R" % (page + 1), font=page + 2))
    objects.append(_stream(_text_content(["The same page again."])))
    objects.append(FONT)
    return _pdf(objects)


def flate_bomb_pdf(streams: int = 3, each: int = 70_000_000) -> bytes:
    """One page whose contents are ``streams`` Flate streams of ``each`` bytes of spaces: ~70 KiB apiece on the wire,
    just under pypdf's own 75 MB limit per stream, 210 MB together once inflated."""
    contents = b" ".join(b"%d 0 R" % (5 + n) for n in range(streams))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        _page(parent=2, contents=b"[" + contents + b"]", font=4),
        FONT,
    ]
    squeezed = zlib.compress(b" " * each, 9)
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(squeezed) + squeezed + b"\nendstream"
    objects += [stream] * streams
    return _pdf(objects)


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.encrypt("secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _text_content(lines: list[str] | tuple[str, ...]) -> bytes:
    shown = " ".join(f"({_escape(line)}) Tj 0 -16 Td" for line in lines)
    return f"BT /F1 12 Tf 50 740 Td {shown} ET".encode("latin-1")


def _stream(content: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"


def _page(parent: int, contents: bytes, font: int) -> bytes:
    return (
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %s" % (parent, contents)
        + b" /Resources << /Font << /F1 %d 0 R >> >> >>" % font
    )


def _pages(parent: int | None, kid: int, times: int, count: int) -> bytes:
    kids = b" ".join([b"%d 0 R" % kid] * times)
    up = b" /Parent %d 0 R" % parent if parent else b""
    return b"<< /Type /Pages%s /Kids [%s] /Count %d >>" % (up, kids, count)


def _pdf(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
