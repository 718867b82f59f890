"""Markdown -> WhatsApp conversion and splitting long answers into parts WhatsApp accepts."""

from __future__ import annotations

import re
import string
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whatsapp.formatting import MAX_TEXT, format_reply, split_message, to_whatsapp, utf16_len


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------------------------------------------------------
# Checks shared by the property and example tests
# ---------------------------------------------------------------------------------------------------------------


def assert_within_limit(parts: list[str], limit: int) -> None:
    for part in parts:
        assert part, "empty part"
        assert part == part.strip(), "part not trimmed"
        assert len(part) <= limit, f"{len(part)} code points > {limit}"
        assert utf16_len(part) <= limit, f"{utf16_len(part)} UTF-16 units > {limit}"


def assert_no_word_cut(text: str, parts: list[str], limit: int) -> None:
    """Every token of the text comes back whole and in order; only tokens longer than the limit are cut,
    and then only into consecutive pieces that concatenate back to the token."""
    got = [token for part in parts for token in part.split()]
    i = 0
    for token in text.split():
        if utf16_len(token) <= limit:
            assert got[i] == token, f"token {token!r} came back as {got[i]!r}"
            i += 1
            continue
        joined = ""
        while joined != token:
            joined += got[i]
            assert token.startswith(joined), f"long token {token[:20]!r}... reassembled wrongly"
            i += 1
    assert i == len(got), "parts hold extra text"


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _continues_cluster(char: str) -> bool:
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or code == 0x200D
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
    )


def assert_no_cluster_cut(parts: list[str]) -> None:
    for left, right in zip(parts, parts[1:], strict=False):
        assert not _continues_cluster(right[0]), f"part starts inside a cluster: {right[:3]!r}"
        assert left[-1] != "\u200d", "part ends with a zero-width joiner"
        if _regional(left[-1]) and _regional(right[0]):
            trailing = len(left) - len(left.rstrip("".join(chr(c) for c in range(0x1F1E6, 0x1F200))))
            assert trailing % 2 == 0, "a flag was cut in half"


# ---------------------------------------------------------------------------------------------------------------
# Text generators
# ---------------------------------------------------------------------------------------------------------------

EMOJI = ["😀", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵🇫🇷", "👍🏽", "1️⃣", "❤️", "🏳️‍🌈", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👩🏾‍💻"]
CJK = "中文字符的一是不了人我在有他这日本語ひらがなカタカナ한국어"
ACCENTED = [base + mark for base in "aeinouAE" for mark in ("\u0301", "\u0308", "\u0303", "\u0301\u0323")]
CLUSTERS = EMOJI + list(CJK) + ACCENTED + list("abc")

ascii_words = st.text(alphabet=string.ascii_letters + "'-,", min_size=1, max_size=12)
emoji_words = st.lists(st.sampled_from(EMOJI), min_size=1, max_size=6).map("".join)
cjk_words = st.text(alphabet=CJK + "。，", min_size=1, max_size=40)
accented_words = st.lists(st.sampled_from(ACCENTED + list("xyz")), min_size=1, max_size=10).map("".join)
long_words = st.text(alphabet=string.ascii_lowercase, min_size=30, max_size=400)
long_cluster_words = st.lists(st.sampled_from(CLUSTERS), min_size=20, max_size=300).map("".join)
words = st.one_of(
    ascii_words, ascii_words, ascii_words, emoji_words, cjk_words, accented_words, long_words, long_cluster_words
)
separators = st.sampled_from([" ", " ", " ", " ", ". ", "! ", "? ", "\n", "\n\n", "\n\n\n\n", "  \n", "\t"])
texts = st.lists(st.tuples(words, separators), min_size=1, max_size=150).map(
    lambda pairs: "".join(word + sep for word, sep in pairs)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, limit=st.integers(min_value=20, max_value=600))
def test_parts_fit_both_limits_and_keep_words_whole(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert_within_limit(parts, limit)
    assert_no_word_cut(text, parts, limit)
    assert_no_cluster_cut(parts)
    assert squash("".join(parts)) == squash(text)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, repeat=st.integers(min_value=1, max_value=40))
def test_long_answers_fit_the_real_limit_without_cutting_words(text: str, repeat: int) -> None:
    text = (text + "\n") * repeat
    parts = split_message(text)
    assert_within_limit(parts, MAX_TEXT)
    assert_no_word_cut(text, parts, MAX_TEXT)
    assert_no_cluster_cut(parts)
    assert squash("".join(parts)) == squash(text)


code_lines = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits + " =*_()[]{}:.#", max_size=60), min_size=1, max_size=80
)
code_blocks = code_lines.map(lambda lines: "```\n" + "\n".join(lines) + "\n```")
prose = st.lists(st.tuples(ascii_words, separators), min_size=1, max_size=40).map(
    lambda pairs: "".join(word + sep for word, sep in pairs)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.tuples(prose, code_blocks), min_size=1, max_size=6),
    limit=st.integers(min_value=30, max_value=1500),
)
def test_code_blocks_stay_whole_when_they_fit_and_every_part_renders_as_code(
    pieces: list[tuple[str, str]], limit: int
) -> None:
    text = "".join(words + "\n\n" + block + "\n\n" for words, block in pieces)
    parts = split_message(text, limit)
    assert_within_limit(parts, limit)
    for part in parts:
        assert part.count("```") % 2 == 0, f"unbalanced fence in {part!r}"
    for _, block in pieces:
        if utf16_len(block) <= limit:
            assert any(block in part for part in parts), "a code block that fits was cut"
    assert squash("".join(parts)).replace("```", "") == squash(text).replace("```", "")


# ---------------------------------------------------------------------------------------------------------------
# Splitting: examples
# ---------------------------------------------------------------------------------------------------------------


def prose_answer(length: int) -> str:
    sentence = "The agent checked the order status and found that the parcel left the warehouse today. "
    paragraphs = []
    while sum(len(p) + 2 for p in paragraphs) < length:
        paragraphs.append((sentence * 5).strip())
    return "\n\n".join(paragraphs)[:length].rstrip(" .") + "."


def test_a_ten_thousand_character_answer_becomes_three_full_parts() -> None:
    text = prose_answer(10_000)
    parts = split_message(text)
    assert len(parts) == 3
    assert_within_limit(parts, MAX_TEXT)
    assert all(len(part) > MAX_TEXT // 2 for part in parts[:-1])
    assert all(part.endswith(".") for part in parts), "parts should end at paragraph or sentence ends"
    assert "\n\n".join(parts) == text


def test_text_of_exactly_the_limit_is_one_part() -> None:
    text = ("word " * 1000)[: MAX_TEXT - 1] + "x"
    assert len(text) == MAX_TEXT
    assert split_message(text) == [text]


def test_one_character_over_the_limit_gives_two_parts_cut_between_words() -> None:
    text = ("word " * 1000)[:MAX_TEXT] + "x"
    assert len(text) == MAX_TEXT + 1
    parts = split_message(text)
    assert len(parts) == 2
    assert_no_word_cut(text, parts, MAX_TEXT)


def test_emoji_count_two_utf16_units_so_a_part_holds_at_most_2048() -> None:
    parts = split_message("😀" * 4096)
    assert [len(part) for part in parts] == [2048, 2048]
    spaced = split_message("😀 " * 4096)
    assert_within_limit(spaced, MAX_TEXT)
    assert all(len(part.split()) <= 1366 for part in spaced)  # 3 units per "😀 " pair, less the final space


def test_a_long_paragraph_is_cut_after_a_sentence_not_mid_sentence() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    parts = split_message(text, 300)
    assert len(parts) > 1
    assert all(part.endswith(".") for part in parts)
    assert_no_word_cut(text, parts, 300)


def test_lines_are_preferred_over_words() -> None:
    text = "\n".join(f"- item {i} with a few more words" for i in range(60))
    parts = split_message(text, 250)
    assert all(part.endswith("words") and part.startswith("- item") for part in parts)


def test_a_paragraph_break_is_not_taken_when_it_would_leave_the_part_nearly_empty() -> None:
    text = "Short intro.\n\n" + " ".join(["lorem ipsum dolor sit amet"] * 40)
    parts = split_message(text, 400)
    assert len(parts[0]) > 200
    assert_no_word_cut(text, parts, 400)


def test_a_word_longer_than_the_limit_is_cut_between_graphemes_only() -> None:
    for word, limit in [
        ("👨‍👩‍👧‍👦" * 30, 25),
        ("🇫🇷" * 30, 21),
        ("👍🏽" * 30, 23),
        ("1️⃣" * 30, 20),
        ("e\u0301" * 200, 21),
        ("🏴󠁧󠁢󠁳󠁣󠁴󠁿" * 10, 30),
    ]:
        parts = split_message(word, limit)
        assert len(parts) > 1
        assert_within_limit(parts, limit)
        assert_no_cluster_cut(parts)
        assert "".join(parts) == word


def test_cjk_without_spaces_is_cut_after_sentence_punctuation() -> None:
    text = "今天天气很好我们去公园散步吧。" * 50
    parts = split_message(text, 100)
    assert all(part.endswith("。") for part in parts)
    assert "".join(parts) == text


def test_a_code_block_that_fits_is_kept_in_one_part() -> None:
    block = "```\n" + "\n".join(f"    total = total + item_{i}  # add" for i in range(60)) + "\n```"
    text = prose_answer(3000) + "\n\n" + block + "\n\n" + prose_answer(1500)
    parts = split_message(text)
    assert len(block) < MAX_TEXT
    assert sum(block in part for part in parts) == 1
    assert_within_limit(parts, MAX_TEXT)


def test_a_code_block_larger_than_the_limit_is_split_at_lines_and_refenced() -> None:
    lines = [f"    result_{i} = compute(value_{i}) * 2" for i in range(400)]
    text = "Here is the script:\n\n```\n" + "\n".join(lines) + "\n```\n\nRun it daily."
    parts = split_message(text)
    assert_within_limit(parts, MAX_TEXT)
    code_parts = [part for part in parts if "```" in part]
    assert len(code_parts) >= 3
    for part in code_parts:
        assert part.count("```") == 2
    for part in parts[1:-1]:
        assert part.startswith("```\n") and part.endswith("\n```")
    for line in lines:  # indentation inside code survives the cut
        assert sum(("\n" + line + "\n") in part for part in parts) == 1
    assert squash("".join(parts)).replace("```", "") == squash(text).replace("```", "")


def test_blank_input_gives_no_parts() -> None:
    assert split_message("") == []
    assert split_message(" \n\n\t ") == []
    assert format_reply("") == []
    assert format_reply("  \n ") == []


def test_a_limit_too_small_for_one_emoji_is_refused() -> None:
    with pytest.raises(ValueError):
        split_message("😀😀", 1)


def test_format_reply_converts_then_splits() -> None:
    markdown = "# Report\n\n" + "\n\n".join(f"**Point {i}:** the value is *fine*." for i in range(400))
    parts = format_reply(markdown)
    assert parts[0].startswith("*Report*\n\n*Point 0:* the value is _fine_.")
    assert len(parts) >= 3
    assert_within_limit(parts, MAX_TEXT)
    assert not any("**" in part for part in parts)


# ---------------------------------------------------------------------------------------------------------------
# Markdown -> WhatsApp
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("this is **bold** text", "this is *bold* text"),
        ("this is __bold__ text", "this is *bold* text"),
        ("this is *italic* text", "this is _italic_ text"),
        ("this is _italic_ text", "this is _italic_ text"),
        ("***both***", "*_both_*"),
        ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
        ("~~gone~~", "~gone~"),
        ("5 * 3 * 2 = 30", "5 * 3 * 2 = 30"),
        ("call my_func_name or a__b__c here", "call my_func_name or a__b__c here"),
        ("# Title", "*Title*"),
        ("### Third level ###", "*Third level*"),
        ("## **Already bold** heading", "*Already bold heading*"),
        ("#hashtag stays", "#hashtag stays"),
        ("Setext\n======", "*Setext*"),
        ("[the docs](https://example.com/a_b)", "the docs (https://example.com/a_b)"),
        ("[https://example.com](https://example.com)", "https://example.com"),
        ("[example.com](https://example.com/)", "https://example.com/"),
        ("<https://example.com/x>", "https://example.com/x"),
        ("![a cat](https://img.example/cat.png)", "a cat (https://img.example/cat.png)"),
        ("see https://example.com/some__path__here now", "see https://example.com/some__path__here now"),
        ("* one\n+ two\n- three", "- one\n- two\n- three"),
        ("* *italic* item", "- _italic_ item"),
        ("  * nested", "  - nested"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("above\n\n---\n\nbelow", "above\n\n\nbelow"),
        ("above\n\n***\n\nbelow", "above\n\n\nbelow"),
        ("a\n\n\n\n\n\nb", "a\n\n\nb"),
        ("> quoted **bold**", "> quoted *bold*"),
        ("| a | **b** |\n|---|---|\n| 1 | 2 |", "| a | *b* |\n|---|---|\n| 1 | 2 |"),
        ("use `**kwargs` here", "use `**kwargs` here"),
        ("2 \\* 3", "2 * 3"),
        ("\n\n# Top\n\n", "*Top*"),
    ],
)
def test_markdown_becomes_whatsapp_formatting(markdown: str, expected: str) -> None:
    assert to_whatsapp(markdown) == expected


def test_fenced_code_is_kept_verbatim_without_the_language_tag() -> None:
    markdown = (
        "Try this:\n\n```python\ndef f(**kwargs):\n    # **not bold** [x](y)\n\n\n\n    return *args\n```\n\n**Done**"
    )
    assert to_whatsapp(markdown) == (
        "Try this:\n\n```\ndef f(**kwargs):\n    # **not bold** [x](y)\n\n\n\n    return *args\n```\n\n*Done*"
    )


def test_tilde_fences_and_unclosed_fences_are_code_too() -> None:
    assert to_whatsapp("~~~\n**x**\n~~~") == "```\n**x**\n```"
    assert to_whatsapp("text\n```js\nlet a = **b**;") == "text\n```\nlet a = **b**;\n```"


def test_markdown_in_inline_code_is_not_touched() -> None:
    assert to_whatsapp("run `rm -rf *tmp*` and `__init__` then **go**") == (
        "run `rm -rf *tmp*` and `__init__` then *go*"
    )
