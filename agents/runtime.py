"""A small agent runtime over the ``openai`` SDK's Chat Completions.

It keeps the OpenAI Agents SDK's vocabulary (``Agent(name=..., handoff_description=..., instructions=...)``) without
importing it: our package is named ``agents``, which is that SDK's import name too. It knows nothing of WhatsApp.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("agents")


@dataclass(frozen=True)
class RunContext:
    """Who the agent is talking to; handed to callable instructions and to tools that ask for it."""

    sender: str
    profile_name: str | None = None


@dataclass
class Agent:
    name: str
    instructions: str | Callable[[RunContext], str]
    handoff_description: str = ""
    model: str | None = None
    tools: list[Any] = field(default_factory=list)
    handoffs: list[Agent] = field(default_factory=list)

    def system_prompt(self, context: RunContext) -> str:
        return self.instructions(context) if callable(self.instructions) else self.instructions


@dataclass(frozen=True)
class RunResult:
    text: str
    new_items: list[dict]  # every chat message this turn added, user turn first, in Chat Completions format
    agent: str  # the agent that gave the final answer


class ChatModel(Protocol):
    """What the runner needs of a model: the ``openai`` client's ``chat.completions.create``."""

    def create(self, *, model: str, messages: list[dict], **kwargs: Any) -> Any: ...


class Runner:
    def __init__(self, completions: ChatModel, default_model: str) -> None:
        self._completions = completions
        self._default_model = default_model

    def run(
        self, agent: Agent, history: Sequence[dict], user_content: str | list[dict], context: RunContext
    ) -> RunResult:
        """Ask ``agent`` to answer ``user_content`` after ``history``; returns the answer and the new turns."""
        user_turn = {"role": "user", "content": user_content}
        messages = [{"role": "system", "content": agent.system_prompt(context)}, *history, user_turn]
        completion = self._completions.create(model=agent.model or self._default_model, messages=messages)
        text = (completion.choices[0].message.content or "").strip()
        log.info("agent %s answered (%d characters)", agent.name, len(text))
        return RunResult(text=text, new_items=[user_turn, {"role": "assistant", "content": text}], agent=agent.name)


def estimate_tokens(item: dict) -> int:
    """A cheap estimate (about four characters a token), good enough to keep a budget."""
    return len(json.dumps(item, ensure_ascii=False)) // 4 + 4


def trim_history(items: Sequence[dict], budget: int) -> list[dict]:
    """The newest turns that fit in ``budget`` tokens, starting at a user turn so no tool result is orphaned."""
    kept: list[dict] = []
    used = 0
    for item in reversed(items):
        used += estimate_tokens(item)
        if used > budget:
            break
        kept.append(item)
    kept.reverse()
    while kept and kept[0].get("role") != "user":
        kept.pop(0)
    return kept
