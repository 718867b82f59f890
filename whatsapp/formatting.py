"""Markdown -> WhatsApp text, and splitting long answers into parts WhatsApp accepts.

LLMs answer in Markdown; WhatsApp has its own, smaller markup (``*bold*``, ``_italic_``, ``~strike~``,
````` ```code``` `````, ``- `` lists, ``> `` quotes) and a body limit of 4096 that Meta does not define as bytes
or code points. So every part we send is kept within 4096 code points *and* 4096 UTF-16 code units, and a long
answer is cut where a reader would pause (paragraph, line, sentence, word), never inside a word or an emoji.

Stdlib only, and nothing else from the project: the handler calls :func:`format_reply` and sends the parts.
"""

from __future__ import annotations

import bisect
import re
import unicodedata

__all__ = ["MAX_TEXT", "format_reply", "split_message", "to_whatsapp"]

MAX_TEXT = 4096
"""WhatsApp Cloud API text body limit (per part; see module docstring for the unit)."""

# --------------------------------------------------------------------------------------------------------------
# Markdown -> WhatsApp
# --------------------------------------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?:(?P<fence>`{3,})[^`]*|(?P<tilde>~{3,}).*)$")
_FENCE_CLOSE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*$")
_QUOTE = re.compile(r"^(?:[ \t]*>)+[ \t]?")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[*+-][ \t]+(?P<rest>.*)$")
_ORDERED_OR_TABLE = re.compile(r"^[ \t]*(?:\d{1,9}[.)][ \t]|\|)")

_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_URL = r"<?(?P<url>(?:[^\s()<>]|\([^\s()<>]*\))+)>?(?:[ \t]+(?:\"[^\"]*\"|'[^']*'))?[ \t]*"
_IMAGE = re.compile(r"!\[(?P<label>[^\[\]\n]*)\]\(" + _URL + r"\)")
_LINK = re.compile(r"\[(?P<label>(?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]\(" + _URL + r"\)")
_AUTOLINK = re.compile(r"<(?P<url>(?:https?://|mailto:)[^\s<>]+)>")
_BARE_URL = re.compile(r"(?<![\w/])https?://[^\s<>]*[^\s<>.,;:!?)\]'\"*_~]")
_SAME_URL_NOISE = re.compile(r"^(?:https?://|mailto:)?(?:www\.)?")
_EMPHASIS = re.compile(
    r"\*\*\*(?=\S)(?P<bi>.+?)(?<=\S)\*\*\*"
    r"|(?<!\w)___(?=\S)(?P<bu>.+?)(?<=\S)___(?!\w)"
    r"|\*\*(?=\S)(?P<b>.+?)(?<=\S)\*\*"
    r"|(?<!\w)__(?=\S)(?P<u>.+?)(?<=\S)__(?!\w)"
    r"|(?<![\w*])\*(?=[^\s*])(?P<i>.+?)(?<=[^\s*])\*(?![\w*])"
    r"|~~(?=\S)(?P<s>.+?)(?<=\S)~~"
)


def to_whatsapp(markdown: str) -> str:
    """Convert the Markdown an LLM writes into WhatsApp's formatting.

    Bold, italic, strikethrough, headings, links, images, bullets and rules are rewritten; fenced code blocks
    and inline code are carried over byte for byte, because rewriting ``**`` inside code would change the code.
    """
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[tuple[str, bool]] = []  # (line, is_code): blank-line collapsing must not touch code
    fence: tuple[str, int, int] | None = None  # (marker char, length, indent) while inside a fenced block
    code: list[str] = []
    paragraph: str | None = None  # the previous line, when it was plain paragraph text (setext headings)
    for line in lines:
        if fence is not None:
            close = _FENCE_CLOSE.match(line)
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= fence[1]:
                _emit_code(out, code)
                fence, code = None, []
            else:
                code.append(_dedent(line, fence[2]))
            continue
        opening = _FENCE_OPEN.match(line)
        if opening:
            marker = opening.group("fence") or opening.group("tilde")
            fence = (marker[0], len(marker), len(opening.group("indent").expandtabs(4)))
            paragraph = None
            continue
        converted, paragraph, replaces_previous = _convert_line(line, paragraph)
        if replaces_previous and out:
            out[-1] = (converted, False)
        else:
            out.append((converted, False))
    if fence is not None:  # an unclosed fence still holds code: keep it verbatim rather than reformat it
        _emit_code(out, code)
    return _join_lines(out)


def _dedent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading spaces: the fence's own indentation is not part of the code."""
    removable = len(line) - len(line.lstrip(" "))
    return line[min(removable, indent) :]


def _emit_code(out: list[tuple[str, bool]], code: list[str]) -> None:
    if not any(line.strip() for line in code):
        return  # an empty block would show as bare backticks in WhatsApp
    out.append(("```", True))
    out.extend((line, True) for line in code)
    out.append(("```", True))


def _convert_line(line: str, paragraph: str | None) -> tuple[str, str | None, bool]:
    """Convert one non-code line; returns (text, paragraph text for a setext underline, replaces previous)."""
    quote = _QUOTE.match(line)
    prefix = quote.group(0) if quote else ""
    body = line[len(prefix) :]
    if not body.strip():
        return prefix.rstrip(), None, False
    if not prefix and paragraph is not None and _SETEXT.match(body):
        return _heading(paragraph), None, True
    if _RULE.match(body):
        return prefix.rstrip(), None, False
    heading = _HEADING.match(body)
    if heading:
        return prefix + _heading(heading.group("text") or ""), None, False
    bullet = _BULLET.match(body)
    if bullet:
        return (prefix + bullet.group("indent") + "- " + _inline(bullet.group("rest"))).rstrip(), None, False
    converted = (prefix + _inline(body)).rstrip()
    if prefix or _ORDERED_OR_TABLE.match(body):
        return converted, None, False
    return converted, body, False


def _heading(text: str) -> str:
    """A heading becomes a bold line; bold inside it is dropped since WhatsApp cannot nest ``*``."""
    text = _inline(text, heading=True).strip()
    return f"*{text}*" if text else ""


def _join_lines(out: list[tuple[str, bool]]) -> str:
    lines: list[str] = []
    blanks = 0
    for line, is_code in out:
        if not is_code and not line.strip():
            blanks += 1
            if blanks <= 2:
                lines.append("")
            continue
        blanks = 0
        lines.append(line)
    while lines and lines[0] == "":
        lines.pop(0)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


def _inline(text: str, heading: bool = False) -> str:
    """Rewrite inline Markdown; code spans, escapes and URLs are set aside first so nothing inside changes."""
    kept: list[str] = []
    sentinel = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
    placeholder = re.compile(f"{sentinel}(\\d+){sentinel}")

    def keep(value: str) -> str:
        kept.append(value)
        return f"{sentinel}{len(kept) - 1}{sentinel}"

    def image(m: re.Match[str]) -> str:
        label = m.group("label").strip()
        return f"{label} ({keep(m.group('url'))})" if label else keep(m.group("url"))

    def link(m: re.Match[str]) -> str:
        label, url = m.group("label").strip(), m.group("url")
        if not label or _same_url(label, url):
            return keep(url)
        return f"{label} ({keep(url)})"

    text = _CODE_SPAN.sub(lambda m: keep(m.group(0)), text)
    text = _ESCAPE.sub(lambda m: keep(m.group(1)), text)
    text = _IMAGE.sub(image, text)
    text = _LINK.sub(link, text)
    text = _AUTOLINK.sub(lambda m: keep(m.group("url")), text)
    text = _BARE_URL.sub(lambda m: keep(m.group(0)), text)
    text = _emphasis(text, heading)
    while sentinel in text:  # a kept URL may itself hold a kept escape
        text = placeholder.sub(lambda m: kept[int(m.group(1))], text)
    return text


def _same_url(label: str, url: str) -> bool:
    def norm(value: str) -> str:
        return _SAME_URL_NOISE.sub("", value.strip()).rstrip("/").lower()

    return norm(label) == norm(url)


def _emphasis(text: str, heading: bool) -> str:
    def convert(m: re.Match[str]) -> str:
        kind = m.lastgroup or ""
        inner = _emphasis(m.group(kind), heading)
        if kind in ("bi", "bu"):
            return f"_{inner}_" if heading else f"*_{inner}_*"
        if kind in ("b", "u"):
            return inner if heading else f"*{inner}*"
        if kind == "i":
            return f"_{inner}_"
        return f"~{inner}~"

    return _EMPHASIS.sub(convert, text)


# --------------------------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------------------------

_SPACE_RUN = re.compile(r"\s+")
_NON_SPACE = re.compile(r"\S")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_FENCE = re.compile("```")
_SENTENCE_END = frozenset(".!?…。！？")
_CLOSERS = frozenset("\"')]}”’»」』）】")
_CJK_LETTER = "\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7a3\U00020000-\U0003134f"
_CJK_AFTER = "、。，．！？：；」』）】〉》〕｝"
_CJK_SMALL = "ーぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶ"
# "(?s).*X" matched from a window's start finds the *last* X in the window (greedy, then backtracking in C).
_LAST_CJK_SENTENCE = re.compile(r"(?s).*[。！？．][」』）】〉》”’]*")
_LAST_CJK_BREAK = re.compile(rf"(?s).*(?<=[{_CJK_LETTER}{_CJK_AFTER}])(?=[{_CJK_LETTER}])(?![{_CJK_SMALL}])")
_ZWJ, _ZWNJ = 0x200D, 0x200C
_MIN_CODE_ROOM = 8  # below this, re-fencing a huge code block would make parts of mostly backticks


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit in which WhatsApp may count: astral characters count 2."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split text into parts each <= limit code points AND <= limit UTF-16 code units.

    Cuts at the best boundary that keeps a part at least half full: a blank line, else a line end, else a
    sentence end, else any space. A word is cut only when it alone exceeds the limit, and then between grapheme
    clusters (never inside an emoji sequence). A ``` code block stays in one part when it fits; a larger one is
    cut at line ends and each piece re-fenced. Whitespace at a cut (and at both ends) is dropped, nothing else.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2: an emoji outside the BMP takes 2 UTF-16 units")
    text = text.strip()
    if not text:
        return []
    if utf16_len(text) <= limit:
        return [text]
    text, spans = _protect_code(text, limit)
    return _split(text, limit, spans)


def format_reply(markdown: str, limit: int = MAX_TEXT) -> list[str]:
    """to_whatsapp then split_message: the parts to send, in order; empty or blank input gives []."""
    if not markdown.strip():
        return []
    return split_message(to_whatsapp(markdown), limit)


class _Spans:
    """Sorted, disjoint [start, end) ranges that must not be cut (code blocks that fit in one part)."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.starts = [start for start, _ in ranges]
        self.ends = [end for _, end in ranges]

    def start_around(self, pos: int) -> int | None:
        """The start of the range that ``pos`` lies strictly inside (cutting at ``pos`` would split it)."""
        i = bisect.bisect_right(self.starts, pos) - 1
        if i >= 0 and self.starts[i] < pos < self.ends[i]:
            return self.starts[i]
        return None


class _Measure:
    """UTF-16 cost of text[s:e] in O(log n): code points plus one per astral character."""

    def __init__(self, text: str) -> None:
        self.n = len(text)
        has_astral = utf16_len(text) != self.n
        self.astral = [m.start() for m in _ASTRAL.finditer(text)] if has_astral else []

    def cost(self, s: int, e: int) -> int:
        if not self.astral:
            return e - s
        return e - s + bisect.bisect_left(self.astral, e) - bisect.bisect_left(self.astral, s)

    def reach(self, s: int, limit: int) -> int:
        """The largest e with cost(s, e) <= limit."""
        lo, hi = s, min(self.n, s + limit)
        if self.cost(s, hi) <= limit:
            return hi
        while lo < hi:  # invariant: cost(s, lo) <= limit < cost(s, hi)
            mid = (lo + hi + 1) // 2
            if self.cost(s, mid) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return lo


def _split(text: str, limit: int, spans: _Spans) -> list[str]:
    measure = _Measure(text)
    n = len(text)
    parts: list[str] = []
    s = 0
    while s < n:
        e = measure.reach(s, limit)
        if e >= n:
            parts.append(text[s:].rstrip())
            break
        cut = _choose_cut(text, s, e, spans)
        part = text[s:cut].rstrip()
        if part:
            parts.append(part)
        nxt = _NON_SPACE.search(text, cut)
        s = nxt.start() if nxt else n
    return [part for part in parts if part]


def _choose_cut(text: str, s: int, e: int, spans: _Spans) -> int:
    """Where the part starting at ``s`` ends (exclusive), given it may reach up to ``e``; always > s."""
    half = s + (e - s) // 2
    para = line = sentence = word = -1
    for m in _SPACE_RUN.finditer(text, half, min(len(text), e + 64)):
        pos = m.start()
        if pos > e:
            break
        if pos <= s or spans.start_around(pos) is not None:
            continue
        newlines = m.group().count("\n")
        if newlines >= 2:
            para = pos
        elif newlines == 1:
            line = pos
        elif _ends_sentence(text, s, pos):
            sentence = pos
        else:
            word = pos
    for best in (para, max(para, line), max(para, line, sentence), max(para, line, sentence, word)):
        if best > s:
            return best
    word = _last_space(text, s + 1, half, spans)
    if word is not None:
        return word
    # No space at all: the text from s is one "word" longer than the limit, so it has to be cut somewhere.
    cut = _last_match(_LAST_CJK_SENTENCE, text, max(s, half - 1), e, spans)
    if cut is not None and cut > s:
        return cut
    cut = _last_match(_LAST_CJK_BREAK, text, s + 1, e + 1, spans)
    if cut is not None and cut > s:
        return cut
    return _hard_cut(text, s, e, spans)


def _ends_sentence(text: str, s: int, pos: int) -> bool:
    i = pos - 1
    while i > s and text[i] in _CLOSERS:
        i -= 1
    return text[i] in _SENTENCE_END


def _last_space(text: str, lo: int, hi: int, spans: _Spans) -> int | None:
    """The last whitespace position in [lo, hi) outside protected spans."""
    found = None
    for m in _SPACE_RUN.finditer(text, lo, hi):
        if spans.start_around(m.start()) is None:
            found = m.start()
    return found


def _last_match(pattern: re.Pattern[str], text: str, lo: int, endpos: int, spans: _Spans) -> int | None:
    """End of the last match of a ``(?s).*X`` pattern within text[lo:endpos], outside protected spans."""
    while endpos > lo:
        m = pattern.match(text, lo, endpos)
        if m is None:
            return None
        start = spans.start_around(m.end())
        if start is None:
            return m.end()
        endpos = start + 1 if pattern is _LAST_CJK_BREAK else start
    return None


def _hard_cut(text: str, s: int, e: int, spans: _Spans) -> int:
    pos = e
    while pos > s:
        start = spans.start_around(pos)
        if start is not None:
            pos = start
        elif _is_grapheme_boundary(text, pos):
            return pos
        else:
            pos -= 1
    return e  # one grapheme cluster longer than the limit: no clean cut exists


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _is_grapheme_boundary(text: str, pos: int) -> bool:
    """Whether text may be cut before ``pos`` without splitting a user-perceived character.

    A compact subset of UAX #29 that covers what chat text holds: combining marks, variation selectors,
    ZWJ sequences, skin tones, emoji tag sequences, keycaps, flag pairs and CR LF.
    """
    if pos <= 0 or pos >= len(text):
        return True
    prev, cur = text[pos - 1], text[pos]
    code = ord(cur)
    if prev == "\r" and cur == "\n":
        return False
    if ord(prev) == _ZWJ or code in (_ZWJ, _ZWNJ):
        return False
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return False
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:  # skin tones, emoji tag sequences
        return False
    if 0x1160 <= code <= 0x11FF or 0xD7B0 <= code <= 0xD7FF:  # Hangul medial vowels and final consonants
        return False
    if unicodedata.category(cur) in ("Mn", "Me", "Mc"):  # combining marks, incl. the keycap U+20E3
        return False
    if _is_regional_indicator(cur) and _is_regional_indicator(prev):
        run = 0
        i = pos - 1
        while i >= 0 and _is_regional_indicator(text[i]):
            run += 1
            i -= 1
        return run % 2 == 0
    return True


def _protect_code(text: str, limit: int) -> tuple[str, _Spans]:
    """Mark ``` blocks that fit as uncuttable; cut larger ones at line ends into re-fenced pieces."""
    ticks = [m.start() for m in _FENCE.finditer(text)]
    if len(ticks) < 2:
        return text, _Spans([])
    out: list[str] = []
    ranges: list[tuple[int, int]] = []
    length = 0  # length of "".join(out)
    prev = 0
    for open_at, close_at in zip(ticks[0::2], ticks[1::2], strict=False):
        end = close_at + 3
        out.append(text[prev:open_at])
        length += open_at - prev
        pieces = _refence(text[open_at:end], limit)
        for i, piece in enumerate(pieces):
            if i:
                out.append("\n")
                length += 1
            ranges.append((length, length + len(piece)))
            out.append(piece)
            length += len(piece)
        prev = end
    out.append(text[prev:])
    return "".join(out), _Spans(ranges)


def _refence(block: str, limit: int) -> list[str]:
    """The block itself when it fits; else pieces that each fit and each open and close with ```."""
    if utf16_len(block) <= limit:
        return [block]
    inner = block[3:-3]
    lead, trail = "```", "```"
    if inner.startswith("\n"):
        lead, inner = "```\n", inner[1:]
    if inner.endswith("\n"):
        trail, inner = "\n```", inner[:-1]
    room = limit - utf16_len(lead) - utf16_len(trail)
    if room < _MIN_CODE_ROOM:
        return [block]  # left unprotected: cut like prose rather than into parts of bare fences
    return [lead + chunk + trail for chunk in _pack_lines(inner.split("\n"), room) if chunk.strip()]


def _pack_lines(lines: list[str], room: int) -> list[str]:
    """Greedily join lines into chunks of at most ``room`` UTF-16 units; an over-long line is split alone."""
    chunks: list[str] = []
    current: list[str] = []
    used = -1  # the cost of "\n".join(current); -1 so that the first line's separator costs nothing
    for line in lines:
        cost = utf16_len(line)
        if used + 1 + cost <= room:
            current.append(line)
            used += 1 + cost
            continue
        if current:
            chunks.append("\n".join(current))
        current, used = [], -1
        if cost <= room:
            current, used = [line], cost
        else:
            chunks.extend(_split(line, room, _Spans([])))
    if current:
        chunks.append("\n".join(current))
    return chunks
