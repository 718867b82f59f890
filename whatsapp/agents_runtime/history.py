"""Keeping a conversation's history within a token budget, so the per-turn cost stays flat however long it grows.

History is a list of Chat Completions messages without the system prompt (the runner adds it). It is cut into
turns, each starting at a user message and holding everything the turn added (tool calls with their results, the
answer), and only whole turns are kept, newest first. So the kept history always starts at a user message and a
tool call is never separated from its result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

IMAGE_TOKENS = 800  # what an image part is counted as, whatever the size of its data URL
IMAGE_STUB = "[an earlier image, no longer shown]"


def estimate_tokens(item: dict[str, Any]) -> int:
    """A cheap estimate of one message's size: about four characters of JSON a token, images a fixed amount."""
    content = item.get("content")
    if not isinstance(content, list):
        return _chars(item) // 4 + 4
    rest = {key: value for key, value in item.items() if key != "content"}
    tokens = _chars(rest) // 4 + 4
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            tokens += IMAGE_TOKENS
        else:
            tokens += _chars(part) // 4 + 1
    return tokens


def stub_old_images(items: Sequence[dict[str, Any]], keep_images: int = 3) -> list[dict[str, Any]]:
    """The items with all but the newest ``keep_images`` image parts of user messages replaced by a text stub.

    Messages that change are copied; the given ones are left as they are.
    """
    result = list(items)
    seen = 0
    for index in range(len(result) - 1, -1, -1):
        item = result[index]
        content = item.get("content")
        if item.get("role") != "user" or not isinstance(content, list):
            continue
        parts = list(content)
        changed = False
        for position in range(len(parts) - 1, -1, -1):
            part = parts[position]
            if not (isinstance(part, dict) and part.get("type") == "image_url"):
                continue
            seen += 1
            if seen > keep_images:
                parts[position] = {"type": "text", "text": IMAGE_STUB}
                changed = True
        if changed:
            result[index] = {**item, "content": parts}
    return result


def trim_history(items: Sequence[dict[str, Any]], budget_tokens: int, keep_images: int = 3) -> list[dict[str, Any]]:
    """The newest whole turns of ``items`` that fit in ``budget_tokens``, with old images stubbed.

    If even the newest turn is larger than the budget, that turn alone is kept: it is what the customer is most
    likely to ask about next (a document they just sent, say). A budget of 0 or less keeps nothing. Anything
    before the first user message, and tool calls whose results are incomplete, are dropped: the API rejects them.
    """
    if budget_tokens <= 0:
        return []
    turns = _turns(stub_old_images(items, keep_images))
    kept: list[list[dict[str, Any]]] = []
    used = 0
    for turn in reversed(turns):
        size = sum(estimate_tokens(item) for item in turn)
        if kept and used + size > budget_tokens:
            break
        kept.append(turn)
        used += size
        if used > budget_tokens:  # the newest turn alone is over budget
            break
    return [item for turn in reversed(kept) for item in turn]


def _turns(items: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Whole, valid turns: each starts at a user message; broken tool-call groups are left out."""
    turns: list[list[dict[str, Any]]] = []
    index = 0
    while index < len(items):
        item = items[index]
        role = item.get("role")
        if role == "user":
            turns.append([item])
            index += 1
            continue
        if role == "assistant" and item.get("tool_calls"):
            wanted = {call.get("id") for call in item["tool_calls"]}
            end = index + 1
            while end < len(items) and items[end].get("role") == "tool":
                end += 1
            answered = {result.get("tool_call_id") for result in items[index + 1 : end]}
            if turns and answered == wanted and end - index - 1 == len(wanted):
                turns[-1].extend(items[index:end])
            index = end
            continue
        if turns and role != "tool":  # an answer, or another role the caller stored
            turns[-1].append(item)
        index += 1
    return turns


def _chars(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str))
