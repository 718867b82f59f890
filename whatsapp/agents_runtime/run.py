"""Running agents over Chat Completions: the engine the service uses, and the SDK's ``Runner`` for scripts.

One run answers one input: model -> tool calls (in parallel when there are several) -> model, until the model
answers in words or the turn limit is reached. A handoff is a tool too; calling it hands the rest of the run to its
agent over the same conversation. Unlike the SDK, reaching the limit is not an exception: the run ends with a
polite answer, which is what a customer on WhatsApp should get.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai

from .agent import Agent
from .awaiting import resolve
from .context import RunContextWrapper
from .handoffs import Handoff
from .offline import OfflineModel
from .tools import FunctionTool, default_tool_error_function

log = logging.getLogger("agents")

DEFAULT_MAX_TURNS = 10  # the SDK's
DEFAULT_MODEL = "gpt-4o-mini"
MAX_TURNS_TEXT = (
    "Sorry, I could not finish working on this within the steps I am allowed. "
    "Please try again, perhaps asking one thing at a time."
)
MULTIPLE_HANDOFFS = "Multiple handoffs detected, ignoring this one."
MAX_TOOL_RESULT_CHARS = 20_000  # a runaway tool result must not blow up every later request


class ChatModel(Protocol):
    """What a run needs of a model: the ``openai`` client's ``chat.completions.create`` (sync or async)."""

    def create(self, *, model: str, messages: list[dict], **kwargs: Any) -> Any: ...


@dataclass
class RunResult:
    """What a run produced, with the SDK's names."""

    input: list[dict[str, Any]]  # what the run was given, as Chat Completions messages
    new_items: list[dict[str, Any]]  # every message the run added (tool calls, results, the answer)
    final_output: str
    last_agent: Agent[Any]
    context_wrapper: RunContextWrapper[Any] = field(repr=False)

    def to_input_list(self) -> list[dict[str, Any]]:
        """The conversation so far, to pass as the next run's input after a new user message."""
        return [*self.input, *self.new_items]


@dataclass(frozen=True)
class _Toolbox:
    """What one agent offers the model: its tools and its handoffs, by function name."""

    schemas: list[dict[str, Any]]
    tools: dict[str, FunctionTool]
    handoffs: dict[str, Handoff]

    @classmethod
    def of(cls, agent: Agent[Any]) -> _Toolbox:
        tools = {t.name: t for t in agent.tools}
        handoffs = {h.tool_name: h for h in agent.handoff_list()}
        clashes = sorted(tools.keys() & handoffs.keys())
        if clashes:
            raise ValueError(f"agent {agent.name!r}: a tool and a handoff are both named {', '.join(clashes)}")
        schemas = [_function(t.name, t.description or "", t.params_json_schema) for t in tools.values()]
        schemas += [_function(h.tool_name, h.tool_description, h.input_json_schema) for h in handoffs.values()]
        return cls(schemas=schemas, tools=tools, handoffs=handoffs)


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


class ChatRunner:
    """Runs agents against one Chat Completions endpoint (the ``openai`` client's, or the offline model)."""

    def __init__(
        self, model: ChatModel, default_model: str, max_turns: int = DEFAULT_MAX_TURNS, max_parallel: int = 8
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self._model = model
        self._default_model = default_model
        self.max_turns = max_turns
        self.max_parallel = max_parallel

    def run(self, starting_agent: Agent[Any], input: str | Sequence[dict[str, Any]], context: Any = None) -> RunResult:
        """Answer ``input`` (a message, or the conversation ending with one) starting with ``starting_agent``.

        Errors from the model endpoint propagate (the caller decides about retries); errors in tools do not: the
        model is told about them and carries on.
        """
        given = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        ctx = RunContextWrapper(context)
        current = starting_agent
        new_items: list[dict[str, Any]] = []
        used_tools: set[int] = set()  # agents that called a tool: their tool_choice is reset, as in the SDK
        for turn in range(1, self.max_turns + 1):
            toolbox = _Toolbox.of(current)
            prompt = current.system_prompt(ctx)
            messages = [*([{"role": "system", "content": prompt}] if prompt is not None else []), *given, *new_items]
            reset = current.reset_tool_choice and id(current) in used_tools
            extra = current.model_settings.request(bool(toolbox.schemas), reset)
            if toolbox.schemas:
                extra["tools"] = toolbox.schemas
            started = time.monotonic()
            completion = resolve(
                self._model.create(model=current.model or self._default_model, messages=messages, **extra)
            )
            message = completion.choices[0].message
            calls = list(message.tool_calls or [])
            log.debug("agent %s: turn %d took %.2fs", current.name, turn, time.monotonic() - started)
            if not calls:
                text = (message.content or getattr(message, "refusal", None) or "").strip()
                new_items.append({"role": "assistant", "content": text})
                log.info("agent %s answered after %d turn(s) (%d characters)", current.name, turn, len(text))
                return RunResult(given, new_items, text, current, ctx)
            if turn == self.max_turns:
                log.warning("agent %s: turn limit %d reached; %d tool call(s) not run", current.name, turn, len(calls))
                break
            new_items.append(_assistant_item(message.content, calls))
            results, target = self._call_tools(calls, toolbox, ctx)
            new_items.extend(results)
            if toolbox.tools.keys() & {_name(call) for call in calls}:
                used_tools.add(id(current))
            if target is not None:
                log.info("agent %s handed off to %s", current.name, target.name)
                current = target
        new_items.append({"role": "assistant", "content": MAX_TURNS_TEXT})
        return RunResult(given, new_items, MAX_TURNS_TEXT, current, ctx)

    def _call_tools(
        self, calls: list[Any], toolbox: _Toolbox, ctx: RunContextWrapper[Any]
    ) -> tuple[list[dict[str, Any]], Agent[Any] | None]:
        """Every call's ``tool`` message, in the calls' order, and the agent handed off to, if any."""
        outputs: dict[int, str] = {}
        target: Agent[Any] | None = None
        work: list[tuple[int, FunctionTool, str]] = []
        for index, call in enumerate(calls):
            name, arguments = _name(call), getattr(call.function, "arguments", None) or ""
            if name in toolbox.handoffs:
                if target is None:
                    chosen = toolbox.handoffs[name]
                    outputs[index], target = _hand_off(chosen, ctx, arguments)
                else:
                    outputs[index] = MULTIPLE_HANDOFFS
            elif name in toolbox.tools:
                work.append((index, toolbox.tools[name], arguments))
            else:
                available = ", ".join([*toolbox.tools, *toolbox.handoffs]) or "none"
                outputs[index] = f"Error: there is no tool named {name!r}. Available tools: {available}."
                log.warning("model called an unknown tool %r", name)
        if len(work) == 1:
            index, function_tool, arguments = work[0]
            outputs[index] = _run_tool(function_tool, arguments, ctx)
        elif work:
            with ThreadPoolExecutor(max_workers=min(len(work), self.max_parallel)) as pool:
                futures = {index: pool.submit(_run_tool, t, arguments, ctx) for index, t, arguments in work}
                outputs.update({index: future.result() for index, future in futures.items()})
        results = [{"role": "tool", "tool_call_id": call.id, "content": outputs[i]} for i, call in enumerate(calls)]
        return results, target


def _name(call: Any) -> str:
    return getattr(getattr(call, "function", None), "name", None) or ""


def _hand_off(chosen: Handoff, ctx: RunContextWrapper[Any], arguments: str) -> tuple[str, Agent[Any] | None]:
    """The handoff tool's result and the agent handed to; a failing ``on_handoff`` leaves the agent in place."""
    try:
        target = chosen.invoke(ctx, arguments)
    except Exception as error:
        log.warning("handoff %s failed: %s: %s", chosen.tool_name, type(error).__name__, error)
        return default_tool_error_function(ctx, error), None
    return chosen.get_transfer_message(target), target


def _assistant_item(content: str | None, calls: list[Any]) -> dict[str, Any]:
    """The assistant's tool-call message as plain JSON, to replay in later requests and store in history."""
    tool_calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": _name(call), "arguments": getattr(call.function, "arguments", None) or "{}"},
        }
        for call in calls
    ]
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}


def _run_tool(function_tool: FunctionTool, arguments: str, ctx: RunContextWrapper[Any]) -> str:
    """The tool's result as the model reads it: ``str()`` of what it returned, as in the SDK.

    A reply object (one whose ``is_reply`` is True, such as the service's buttons or images), or a list of them, is
    also kept in ``ctx.replies`` for the caller to send.

    A decorated tool words its own failures for the model; an error that escapes it (``failure_error_function=None``,
    or a hand-made ``FunctionTool`` that raises) fails the run, as in the SDK, and the message is retried.
    """
    started = time.monotonic()
    value = resolve(function_tool.on_invoke_tool(ctx, arguments))
    log.info("tool %s ran in %.2fs", function_tool.name, time.monotonic() - started)
    for reply in value if isinstance(value, list | tuple) else (value,):
        if getattr(reply, "is_reply", False) is True:  # a reply object returned by a tool goes to the customer too
            ctx.reply(reply)
    text = str(value)
    if len(text) > MAX_TOOL_RESULT_CHARS:
        text = text[:MAX_TOOL_RESULT_CHARS] + " [truncated]"
    return text


class Runner:
    """The SDK's entry point, for scripts and tests: ``Runner.run_sync(agent, "question", context=...)``.

    The model is the ``openai`` client configured by ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` (as the SDK reads
    them), or the offline demonstration model when neither is set.
    """

    @classmethod
    def run_sync(
        cls,
        starting_agent: Agent[Any],
        input: str | Sequence[dict[str, Any]],
        *,
        context: Any = None,
        max_turns: int = DEFAULT_MAX_TURNS,
    ) -> RunResult:
        return ChatRunner(_default_model(), DEFAULT_MODEL, max_turns).run(starting_agent, input, context)

    @classmethod
    async def run(
        cls,
        starting_agent: Agent[Any],
        input: str | Sequence[dict[str, Any]],
        *,
        context: Any = None,
        max_turns: int = DEFAULT_MAX_TURNS,
    ) -> RunResult:
        """``run_sync`` on a thread, so that ``await Runner.run(...)`` does not block the caller's loop."""
        return await asyncio.to_thread(cls.run_sync, starting_agent, input, context=context, max_turns=max_turns)


def _default_model() -> ChatModel:
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "no-key-needed").chat.completions
    return OfflineModel()
