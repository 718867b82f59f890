"""A small agent runtime over the ``openai`` SDK's Chat Completions.

It keeps the OpenAI Agents SDK's vocabulary (``Agent(name=..., handoff_description=..., instructions=...)``) without
importing it: the user's package is named ``agents``, which is that SDK's import name too. It knows nothing of
WhatsApp.

One run answers one customer message: model -> tool calls (in parallel when there are several) -> model, until the
model answers in words or the step limit is reached. A handoff is a tool too (``transfer_to_<name>``); calling it
hands the rest of the run to that agent over the same history.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .history import estimate_tokens, trim_history
from .tools import FunctionTool, RunContext, as_tool, tool

__all__ = [
    "Agent",
    "ChatModel",
    "RunContext",
    "RunResult",
    "Runner",
    "estimate_tokens",
    "handoff_tool_name",
    "tool",
    "trim_history",
]

log = logging.getLogger("agents")

STEP_LIMIT_TEXT = (
    "Sorry, I could not finish working on this within the steps I am allowed. "
    "Please try again, perhaps asking one thing at a time."
)
MAX_TOOL_RESULT_CHARS = 20_000  # a runaway tool result must not blow up every later request


@dataclass(eq=False)  # identity equality: agents hand off to each other, so they can form cycles
class Agent:
    """An agent: a system prompt, the tools it may call and the agents it may hand the conversation to."""

    name: str
    instructions: str | Callable[[RunContext], str]
    handoff_description: str = ""
    model: str | None = None
    tools: list[Any] = field(default_factory=list)
    handoffs: list[Agent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tools = [as_tool(value) for value in self.tools]
        names = [t.name for t in self.tools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"agent {self.name!r} has two tools named {', '.join(duplicates)}")

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


def handoff_tool_name(agent: Agent) -> str:
    """``transfer_to_<name>``, with the name cut down to what function names allow."""
    return "transfer_to_" + re.sub(r"[^a-zA-Z0-9_-]", "_", agent.name)[:52]


def _handoff_schema(agent: Agent) -> dict[str, Any]:
    description = f"Handoff to the {agent.name} agent to handle the request. {agent.handoff_description}".strip()
    parameters = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    return {
        "type": "function",
        "function": {"name": handoff_tool_name(agent), "description": description, "parameters": parameters},
    }


@dataclass(frozen=True)
class _Toolbox:
    """What one agent offers the model: its tools and its handoffs, by function name."""

    schemas: list[dict[str, Any]]
    tools: dict[str, FunctionTool]
    handoffs: dict[str, Agent]

    @classmethod
    def of(cls, agent: Agent) -> _Toolbox:
        tools = {t.name: t for t in map(as_tool, agent.tools)}
        handoffs = {handoff_tool_name(target): target for target in agent.handoffs}
        clashes = sorted(tools.keys() & handoffs.keys())
        if clashes:
            raise ValueError(f"agent {agent.name!r}: a tool and a handoff are both named {', '.join(clashes)}")
        schemas = [t.schema for t in tools.values()] + [_handoff_schema(target) for target in handoffs.values()]
        return cls(schemas=schemas, tools=tools, handoffs=handoffs)


class Runner:
    """Runs agents against a Chat Completions endpoint (the ``openai`` client's, or the offline model)."""

    def __init__(self, completions: ChatModel, default_model: str, max_steps: int = 8, max_parallel: int = 8) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self._completions = completions
        self._default_model = default_model
        self.max_steps = max_steps
        self.max_parallel = max_parallel

    def run(
        self, agent: Agent, history: Sequence[dict], user_content: str | list[dict], context: RunContext
    ) -> RunResult:
        """Ask ``agent`` to answer ``user_content`` after ``history``; returns the answer and the new turns.

        Errors from the model endpoint propagate (the caller decides about retries); errors in tools do not: the
        model is told about them and carries on.
        """
        current = agent
        new_items: list[dict] = [{"role": "user", "content": user_content}]
        for step in range(1, self.max_steps + 1):
            toolbox = _Toolbox.of(current)
            messages = [{"role": "system", "content": current.system_prompt(context)}, *history, *new_items]
            extra = {"tools": toolbox.schemas} if toolbox.schemas else {}
            started = time.monotonic()
            completion = self._completions.create(
                model=current.model or self._default_model, messages=messages, **extra
            )
            message = completion.choices[0].message
            calls = list(message.tool_calls or [])
            log.debug("agent %s: step %d took %.2fs", current.name, step, time.monotonic() - started)
            if not calls:
                text = (message.content or getattr(message, "refusal", None) or "").strip()
                new_items.append({"role": "assistant", "content": text})
                log.info("agent %s answered after %d step(s) (%d characters)", current.name, step, len(text))
                return RunResult(text=text, new_items=new_items, agent=current.name)
            if step == self.max_steps:
                log.warning("agent %s: step limit %d reached; %d tool call(s) not run", current.name, step, len(calls))
                break
            new_items.append(_assistant_item(message.content, calls))
            results, target = self._call_tools(calls, toolbox, context)
            new_items.extend(results)
            if target is not None:
                log.info("agent %s handed off to %s", current.name, target.name)
                current = target
        new_items.append({"role": "assistant", "content": STEP_LIMIT_TEXT})
        return RunResult(text=STEP_LIMIT_TEXT, new_items=new_items, agent=current.name)

    def _call_tools(self, calls: list[Any], toolbox: _Toolbox, context: RunContext) -> tuple[list[dict], Agent | None]:
        """Every call's ``tool`` message, in the calls' order, and the agent handed off to, if any."""
        outputs: dict[int, str] = {}
        target: Agent | None = None
        work: list[tuple[int, FunctionTool, str]] = []
        for index, call in enumerate(calls):
            function = getattr(call, "function", None)
            name = getattr(function, "name", None) or ""
            if name in toolbox.handoffs:
                if target is None:
                    target = toolbox.handoffs[name]
                    outputs[index] = f"Transferred to {target.name}."
                else:
                    outputs[index] = f"Not transferred: the conversation was already transferred to {target.name}."
            elif name in toolbox.tools:
                work.append((index, toolbox.tools[name], function.arguments or ""))
            else:
                available = ", ".join([*toolbox.tools, *toolbox.handoffs]) or "none"
                outputs[index] = f"Error: there is no tool named {name!r}. Available tools: {available}."
                log.warning("model called an unknown tool %r", name)
        if len(work) == 1:
            index, function_tool, arguments = work[0]
            outputs[index] = _run_tool(function_tool, arguments, context)
        elif work:
            with ThreadPoolExecutor(max_workers=min(len(work), self.max_parallel)) as pool:
                futures = {index: pool.submit(_run_tool, t, arguments, context) for index, t, arguments in work}
                outputs.update({index: future.result() for index, future in futures.items()})
        results = [{"role": "tool", "tool_call_id": call.id, "content": outputs[i]} for i, call in enumerate(calls)]
        return results, target


def _assistant_item(content: str | None, calls: list[Any]) -> dict:
    """The assistant's tool-call message as plain JSON, to replay in later requests and store in history."""
    tool_calls = []
    for call in calls:
        function = getattr(call, "function", None)
        tool_calls.append(
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": getattr(function, "name", None) or "",
                    "arguments": getattr(function, "arguments", None) or "{}",
                },
            }
        )
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}


def _run_tool(function_tool: FunctionTool, arguments: str, context: RunContext) -> str:
    """The tool's result as text; a failure as ``Error: <type>: <message>``, for the model to read and recover."""
    started = time.monotonic()
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as error:
        log.warning("tool %s: arguments are not JSON: %s", function_tool.name, error)
        return f"Error: the arguments are not valid JSON ({error}). Send them as a JSON object."
    if not isinstance(parsed, dict):
        return "Error: the arguments must be a JSON object."
    try:
        value = function_tool.invoke(parsed, context)
    except Exception as error:  # any tool failure goes back to the model, never crashes the job
        log.warning("tool %s failed: %s: %s", function_tool.name, type(error).__name__, error)
        return f"Error: {type(error).__name__}: {error}"
    log.info("tool %s ran in %.2fs", function_tool.name, time.monotonic() - started)
    return _as_text(value)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "Done."
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > MAX_TOOL_RESULT_CHARS:
        text = text[:MAX_TOOL_RESULT_CHARS] + " [truncated]"
    return text
