"""A tiny deterministic stand-in for a chat model, used when no model endpoint is configured (the sandbox).

It does not understand anything, and says so. It shows the pipeline working: it reflects the question, describes
what was attached, calls a tool when the message names it ("order status 1234" -> ``order_status``), follows a
handoff when the message mentions the other agent or its subject ("refund" -> billing), calls a tool when the message
names part of it and holds every argument it needs ("are you open on sunday?" -> ``opening_hours(day="sunday")``),
and puts a tool's result in a sentence. It answers through ``openai``'s own ``ChatCompletion`` type, so the runner
cannot tell it from the SDK.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from typing import Any

from openai.types.chat import ChatCompletion

HANDOFF_PREFIX = "transfer_to_"
OFFLINE_NOTE = (
    "I am the offline demo model: I can repeat what you sent, describe attachments, call a tool when you name it "
    "and hand you over to another agent, but I do not understand the conversation. To connect a real model, set "
    "OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server) and restart."
)
SHORT_NOTE = "(Offline demo model: set OPENAI_API_KEY or OPENAI_BASE_URL for real answers.)"
QUOTE_LIMIT = 200  # characters of the question repeated back; a document's text can be long

# Words that say nothing about what a tool or an agent is for.
_STOPWORDS = frozenset(
    """a an and are as at be by can could do does for from get has have how i in is it its me my of on or our
    please show the their this to was what when where which who why will with would you your
    agent agents handoff handle request requests question questions transfer help""".split()
)
_WORD = re.compile(r"[a-z0-9]+")
_DAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday today tomorrow".split())
_NOTE = re.compile(r"\[[^\[\]\n]{1,200}\]")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(?:;[^,]*)?,(.*)$", re.DOTALL)


class OfflineModel:
    """Has the shape of ``openai.OpenAI().chat.completions``: ``create(model=..., messages=..., tools=...)``."""

    def create(
        self, *, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> ChatCompletion:
        offered = tools if kwargs.get("tool_choice") != "none" else None
        message = _reply(messages, offered or [])
        finish_reason = "tool_calls" if message.get("tool_calls") else "stop"
        prompt_tokens = len(json.dumps(messages, default=str)) // 4
        completion_tokens = len(json.dumps(message)) // 4
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()[:24]
        return ChatCompletion.model_validate(
            {
                "id": f"chatcmpl-offline-{digest}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )


def _reply(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The next assistant message: a tool call, a handoff, or words."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    question = messages[last_user].get("content") if last_user >= 0 else ""
    this_turn = messages[last_user + 1 :]
    called = {c["function"]["name"]: c["id"] for m in this_turn for c in (m.get("tool_calls") or [])}
    results = {m.get("tool_call_id"): str(m.get("content") or "") for m in this_turn if m.get("role") == "tool"}
    done = [(name, results.get(call_id, "")) for name, call_id in called.items() if not name.startswith(HANDOFF_PREFIX)]
    handed_to = [name.removeprefix(HANDOFF_PREFIX) for name in called if name.startswith(HANDOFF_PREFIX)]
    if done:
        said = " ".join(f"The {name} tool says: {_sentence(result)}" for name, result in done)
        return _words(f"{said}\n\n{SHORT_NOTE}")
    text = _text(question)
    words = set(_words_of(text))
    functions = [t["function"] for t in tools if t.get("type") == "function" and "function" in t]
    own = [f for f in functions if not f["name"].startswith(HANDOFF_PREFIX)]
    for function in own:
        if _names_match(function["name"], words):
            parameters = function.get("parameters") or {}
            arguments, missing = _fill(parameters, text, function["name"])
            if missing:
                example = f"{function['name'].replace('_', ' ')} {_example(parameters, missing)}"
                return _words(
                    f"I could call the {function['name']} tool, but your message does not say {missing}. "
                    f'Try again with it, for example: "{example}".\n\n{SHORT_NOTE}'
                )
            return _call(function["name"], arguments, len(messages))
    if not handed_to:
        for function in functions:
            if function["name"].startswith(HANDOFF_PREFIX) and _handoff_matches(function, words):
                return _call(function["name"], {}, len(messages))
    for function in own:  # "are you open on sunday?": a word of the name, and every argument recognised
        parameters = function.get("parameters") or {}
        if parameters.get("required") and _names_match(function["name"], words, every=False):
            arguments, missing = _fill(parameters, text, function["name"], recognised_only=True)
            if not missing:
                return _call(function["name"], arguments, len(messages))
    return _words(_reflect(question, text, handed_to, [f["name"] for f in functions]))


def _reflect(question: Any, text: str, handed_to: list[str], tool_names: list[str]) -> str:
    """The plain answer: what was asked, what was attached, and what this model is."""
    lines = []
    if handed_to:
        lines.append(f"You are now talking to the {handed_to[-1]} agent.")
    asked = _NOTE.sub(" ", text)
    asked = " ".join(asked.split())
    if asked:
        quoted = asked if len(asked) <= QUOTE_LIMIT else asked[:QUOTE_LIMIT].rstrip() + "…"
        lines.append(f'You asked: "{quoted}"')
    lines.extend(_media(question))
    notes = _NOTE.findall(text)
    if notes:
        lines.append("I also got: " + " ".join(notes))
    if not lines:
        lines.append("Your message had no text.")
    lines.append(OFFLINE_NOTE)
    if tool_names:
        lines.append("Tools I can use here: " + ", ".join(tool_names) + ".")
    return "\n\n".join(lines)


def _media(content: Any) -> list[str]:
    """One sentence per non-text part of a user message."""
    if not isinstance(content, list):
        return []
    found = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") == "text":
            continue
        if part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            match = _DATA_URL.match(url)
            if match:
                size = _decoded_size(match.group(2))
                kind = match.group(1) or "unknown type"
                found.append(f"I received an image ({max(1, round(size / 1024))} KB, {kind}).")
            else:
                found.append("I received an image (a link, not the picture itself).")
        else:
            found.append(f"I received a {part.get('type', 'part')} part.")
    return found


def _decoded_size(data: str) -> int:
    data = "".join(data.split())
    try:
        return len(base64.b64decode(data, validate=True))
    except ValueError:
        return len(data)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _words_of(text: str) -> list[str]:
    return [_stem(word) for word in _WORD.findall(text.lower())]


def _stem(word: str) -> str:
    """Plural to singular and "-ing" to the verb, roughly: enough that "refunds" finds "refund", "open" "opening"."""
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _names_match(name: str, words: set[str], every: bool = True) -> bool:
    """Every word of the tool's name is in the message (``order_status`` needs "order" and "status"); with
    ``every=False``, one of them is."""
    needed = [w for w in _words_of(name.replace("_", " ").replace("-", " ")) if w not in _STOPWORDS]
    return bool(needed) and (all if every else any)(w in words for w in needed)


def _handoff_matches(function: dict[str, Any], words: set[str]) -> bool:
    """The message names the target agent, or a subject word of its description."""
    target = _words_of(function["name"].removeprefix(HANDOFF_PREFIX).replace("_", " "))
    subject = [w for w in _words_of(function.get("description") or "") if len(w) > 3 and w not in _STOPWORDS]
    return any(w in words for w in target if w not in _STOPWORDS) or any(w in words for w in subject)


def _fill(
    parameters: dict[str, Any], text: str, tool_name: str, recognised_only: bool = False
) -> tuple[dict[str, Any], str]:
    """Arguments for the required parameters, taken from the message; or the description of one it lacks.

    A value is recognised when it fits the parameter (a number, a code, one of an enum's values, a day of the week
    for a day); otherwise the first word of the message that is not the tool's name or a stopword is taken, unless
    ``recognised_only``.
    """
    arguments: dict[str, Any] = {}
    numbers = re.findall(r"\d+(?:\.\d+)?", text)
    codes = re.findall(r"#?([A-Za-z]*\d[\w-]*)", text)
    skip = set(_words_of(tool_name.replace("_", " "))) | _STOPWORDS
    # Words split at "_" too, so that "opening_hours sunday" (the tool's name, as the bot lists it) gives "sunday".
    plain = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9'-]*", text) if _stem(w.lower()) not in skip]
    days = [w.lower() for w in plain if w.lower() in _DAYS]
    properties = parameters.get("properties") or {}
    for name in parameters.get("required") or []:
        schema = properties.get(name) or {}
        kind = schema.get("type")
        kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
        value: Any = None
        if "enum" in schema:
            lowered = text.lower()
            value = next((v for v in schema["enum"] if str(v).lower() in lowered), None)
        elif kind in ("integer", "number") and numbers:
            value = int(float(numbers.pop(0))) if kind == "integer" else float(numbers.pop(0))
        elif kind == "boolean":
            value = bool({"yes", "true"} & set(_words_of(text)))
        elif kind == "string":
            if codes and _looks_like_a_number(name, schema):
                value = codes.pop(0)
            elif days and _looks_like_a_day(name, schema):
                value = days.pop(0)
            elif plain and not recognised_only:
                value = plain.pop(0)
        if value is None and ("default" in schema or {"type": "null"} in schema.get("anyOf", [])):
            arguments[name] = schema.get("default")  # strict schemas list optional parameters as required too
            continue
        if value is None:
            described = schema.get("description") or name.replace("_", " ")
            return arguments, f"{name} ({described})" if described != name else name
        arguments[name] = value
    return arguments, ""


def _looks_like_a_day(name: str, schema: dict[str, Any]) -> bool:
    words = set(_words_of(f"{name.replace('_', ' ')} {schema.get('description', '')}"))
    return bool(words & {"day", "weekday"} or words & _DAYS)


def _example(parameters: dict[str, Any], missing: str) -> str:
    """A value for the missing parameter, for the bot's "try again" hint: the description's own example if it
    gives one ("Day of the week, e.g. monday"), else a number."""
    name = missing.split(" ", 1)[0]
    description = str(((parameters.get("properties") or {}).get(name) or {}).get("description") or "")
    given = re.search(r"\b(?:e\.g\.|for example|such as|like)\s*:?\s*([\w-]+)", description, flags=re.I)
    return given.group(1) if given else "1234"


def _looks_like_a_number(name: str, schema: dict[str, Any]) -> bool:
    words = set(_words_of(f"{name.replace('_', ' ')} {schema.get('description', '')}"))
    return bool(words & {"id", "number", "code", "reference", "no"})


def _sentence(result: str) -> str:
    result = " ".join(result.split())
    if len(result) > 500:
        result = result[:500].rstrip() + "…"
    return result if result.endswith((".", "!", "?", "…")) else result + "."


def _words(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "refusal": None}


def _call(name: str, arguments: dict[str, Any], position: int) -> dict[str, Any]:
    call = {
        "id": f"call_offline_{position}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
