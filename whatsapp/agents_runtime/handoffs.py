"""Handoffs: another agent offered to the model as a tool, ``transfer_to_<name>``, named as the SDK names it."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from .awaiting import resolve
from .context import RunContextWrapper
from .schema import strict

if TYPE_CHECKING:
    from .agent import Agent

MAX_TOOL_NAME = 64  # what function calling accepts


@dataclass
class Handoff:
    """What ``handoff(agent, ...)`` returns and what ``Agent(handoffs=[agent])`` makes of a plain agent."""

    tool_name: str
    tool_description: str
    agent: Agent
    input_json_schema: dict[str, Any]
    on_handoff: Callable[..., Any] | None = None
    input_type: Any = None

    @property
    def agent_name(self) -> str:
        return self.agent.name

    def get_transfer_message(self, agent: Agent) -> str:
        """The handoff tool's result, as the SDK words it."""
        return json.dumps({"assistant": agent.name})

    def invoke(self, ctx: RunContextWrapper[Any], arguments: str) -> Agent:
        """Run ``on_handoff`` (with the validated input, if the handoff takes one) and return the target agent."""
        if self.on_handoff is not None:
            if self.input_type is not None:
                value = TypeAdapter(self.input_type).validate_json(arguments or "{}")
                resolve(self.on_handoff(ctx, value))
            else:
                resolve(self.on_handoff(ctx))
        return self.agent

    @classmethod
    def default_tool_name(cls, agent: Agent) -> str:
        return function_style(f"transfer_to_{agent.name}")

    @classmethod
    def default_tool_description(cls, agent: Agent) -> str:
        return f"Handoff to the {agent.name} agent to handle the request. {agent.handoff_description or ''}"


def handoff(
    agent: Agent,
    tool_name_override: str | None = None,
    tool_description_override: str | None = None,
    on_handoff: Callable[..., Any] | None = None,
    input_type: Any = None,
) -> Handoff:
    """A handoff to ``agent``, optionally named and described your way.

    ``on_handoff(ctx)`` runs when the model hands off; with ``input_type``, the model sends that type's fields and
    ``on_handoff(ctx, value)`` receives them validated.
    """
    if input_type is not None and on_handoff is None:
        raise TypeError("input_type needs an on_handoff that receives the input")
    if on_handoff is not None:
        wanted = 2 if input_type is not None else 1
        if len(inspect.signature(on_handoff).parameters) != wanted:
            raise TypeError(f"on_handoff must take {'context and input' if wanted == 2 else 'one argument: context'}")
    schema = TypeAdapter(input_type).json_schema() if input_type is not None else {}
    return Handoff(
        tool_name=tool_name_override or Handoff.default_tool_name(agent),
        tool_description=tool_description_override or Handoff.default_tool_description(agent),
        agent=agent,
        input_json_schema=strict(schema),
        on_handoff=on_handoff,
        input_type=input_type,
    )


def function_style(name: str) -> str:
    """A name as function calling accepts it: non-word characters as ``_``, lower case, at most 64 characters.

    A longer name is cut and given a short hash of the whole, so that two long names stay distinct.
    """
    styled = re.sub(r"[^a-zA-Z0-9_]", "_", re.sub(r"\s", "_", name)).lower()
    if len(styled) <= MAX_TOOL_NAME:
        return styled
    suffix = "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return (styled[: MAX_TOOL_NAME - len(suffix)].rstrip("_") or "tool") + suffix
