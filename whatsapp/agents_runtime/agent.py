"""``Agent`` and ``ModelSettings``, declared as in the OpenAI Agents SDK, and checked when the agent is built."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal

from .awaiting import resolve
from .context import RunContextWrapper, TContext
from .handoffs import Handoff, handoff
from .tools import FunctionTool

Instructions = str | Callable[[RunContextWrapper[Any], "Agent[Any]"], "str | Awaitable[str]"] | None


@dataclass
class ModelSettings:
    """Sampling settings passed through to Chat Completions; ``None`` leaves the model's default."""

    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    tool_choice: Literal["auto", "required", "none"] | str | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None

    def request(self, has_tools: bool, reset_tool_choice: bool = False) -> dict[str, Any]:
        """The request's keyword arguments, as the SDK's Chat Completions model sends them."""
        sent: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "max_tokens")
            if getattr(self, name) is not None
        }
        if self.parallel_tool_calls is False or (self.parallel_tool_calls and has_tools):
            sent["parallel_tool_calls"] = self.parallel_tool_calls
        choice = None if reset_tool_choice else self.tool_choice
        if choice in ("auto", "required", "none"):
            sent["tool_choice"] = choice
        elif choice is not None:
            sent["tool_choice"] = {"type": "function", "function": {"name": choice}}
        return sent


@dataclass(eq=False)  # identity equality: agents hand off to each other, so they can form cycles
class Agent(Generic[TContext]):
    """An agent: instructions, the tools it may call and the agents it may hand the conversation to.

    ``instructions`` is a string, ``None``, or a function ``(context, agent) -> str`` (``async def`` too) called
    for every model request. ``handoffs`` holds agents or :func:`handoff` objects. ``model`` names the model
    (default: the service's ``openai.model``); ``model_settings`` tunes it.
    """

    name: str
    instructions: Instructions = None
    handoff_description: str | None = None
    handoffs: list[Agent[Any] | Handoff] = field(default_factory=list)
    model: str | None = None
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    tools: list[FunctionTool] = field(default_factory=list)
    reset_tool_choice: bool = True
    defined_in: str | None = field(default=None, init=False, repr=False)  # the module, for its build_context

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"an agent's name must be a non-empty string, not {self.name!r}")
        if callable(self.instructions):
            parameters = list(inspect.signature(self.instructions).parameters)
            if len(parameters) != 2:
                raise TypeError(
                    f"agent {self.name!r}: instructions must accept exactly 2 arguments (context, agent), "
                    f"but got {len(parameters)}: {parameters}"
                )
        elif self.instructions is not None and not isinstance(self.instructions, str):
            raise TypeError(f"agent {self.name!r}: instructions must be a string, a function or None")
        for value in self.tools:
            if not isinstance(value, FunctionTool):
                raise TypeError(f"agent {self.name!r}: {value!r} is not a tool; decorate it with @function_tool")
        names = [t.name for t in self.tools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"agent {self.name!r} has two tools named {', '.join(duplicates)}")
        for value in self.handoffs:
            if not isinstance(value, Agent | Handoff):
                raise TypeError(f"agent {self.name!r}: a handoff must be an Agent or handoff(agent), not {value!r}")
        if not isinstance(self.model_settings, ModelSettings):
            raise TypeError(f"agent {self.name!r}: model_settings must be a ModelSettings")
        self.defined_in = _caller_module()

    def clone(self, **changes: Any) -> Agent[TContext]:
        """A copy with ``changes`` applied (lists are shared, as in the SDK)."""
        return dataclasses.replace(self, **changes)

    def system_prompt(self, ctx: RunContextWrapper[TContext]) -> str | None:
        """The instructions for this request: the string, or what the function returns for ``ctx``."""
        if callable(self.instructions):
            return resolve(self.instructions(ctx, self))
        return self.instructions

    def handoff_list(self) -> list[Handoff]:
        """Every handoff as a :class:`Handoff` (a plain agent gets the default name and description)."""
        return [value if isinstance(value, Handoff) else handoff(value) for value in self.handoffs]


def _caller_module() -> str | None:
    """The module that called ``Agent(...)`` (or ``Agent[T](...)``), past dataclasses, typing and this module."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in (__name__, "dataclasses", "typing"):
        frame = frame.f_back
    return frame.f_globals.get("__name__") if frame is not None else None
