"""The model as the simulator's inspector sees it: every request an agent makes while answering a message.

In sandbox mode the model client is wrapped once: each ``create`` call is kept in the sandbox's event log of the
customer whose message is being answered (kind ``model``, under that message's id), with what the page needs to show
the conversation with the model: which model, the tools offered, the results of the tools called since the previous
request, and the answer (words, or tool calls with their arguments; a ``transfer_to_<agent>`` call is a handoff).
Images are kept as a short note, long texts cut: the log is for reading, not for replaying.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..worker import current_message
from .records import Records

log = logging.getLogger("whatsapp.sandbox")

TEXT_LIMIT = 2000  # characters of one message's text kept in the log


class RecordedModel:
    """Has the shape of ``openai.OpenAI().chat.completions`` and hands every call to ``model``."""

    def __init__(self, model: Any, records: Records) -> None:
        self._model = model
        self._records = records

    def create(self, *, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        started = time.time()
        clock = time.monotonic()
        try:
            completion = self._model.create(model=model, messages=messages, **kwargs)
        except Exception as error:
            self._keep(started, clock, model, messages, kwargs, {"error": f"{type(error).__name__}: {error}"[:300]})
            raise
        if hasattr(completion, "choices"):  # an awaitable (an async client) is handed on unrecorded
            self._keep(started, clock, model, messages, kwargs, {"answer": _answer(completion)})
        return completion

    def _keep(
        self,
        started: float,
        clock: float,
        model: str,
        messages: list[dict[str, Any]],
        kwargs: dict[str, Any],
        outcome: dict[str, Any],
    ) -> None:
        message_id = current_message.get()
        customer = message_id and self._records.customer_of(message_id)
        if not customer:  # not a worker's job (a test calling the runner), or a message the simulator did not send
            return
        data = {
            "model": model,
            "messages": len(messages),
            "system": next((_text(m.get("content")) for m in messages if m.get("role") == "system"), None),
            "tools": [t.get("function", {}).get("name") for t in kwargs.get("tools") or []],
            "tool_results": [
                {"tool_call_id": m.get("tool_call_id"), "content": _text(m.get("content"))}
                for m in _trailing_tool_results(messages)
            ],
            "ms": round((time.monotonic() - clock) * 1000, 1),
            **outcome,
        }
        try:
            self._records.add_event(customer, "model", data, wamid=message_id, at=started)
        except Exception as error:  # the inspector's record must never cost the customer an answer
            log.warning("could not keep a model request for the inspector: %s", error)


def _trailing_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    return results[::-1]


def _answer(completion: Any) -> dict[str, Any]:
    message = completion.choices[0].message
    calls = [
        {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
        for call in (message.tool_calls or [])
    ]
    return {"content": _text(message.content), "tool_calls": calls}


def _text(content: Any) -> str | None:
    """A message's content as text: parts joined, an image as a note, cut at ``TEXT_LIMIT``."""
    if content is None:
        return None
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            parts.append(part.get("text", "") if kind == "text" else f"[{kind or 'part'}]")
        content = " ".join(parts)
    text = str(content)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"
