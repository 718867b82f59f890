"""Agents, one plain Python module each, and the small runtime they import.

Every module in this package that defines :class:`Agent` objects at module level registers them by name (the
runtime's own modules, runtime, tools, history and offline, are skipped); ``whatsapp.agent`` picks the entry agent
by that name.
"""

from __future__ import annotations

import importlib
import pkgutil

from .history import estimate_tokens, stub_old_images, trim_history
from .offline import OfflineModel
from .runtime import Agent, ChatModel, Runner, RunResult, handoff_tool_name
from .tools import FunctionTool, RunContext, tool

__all__ = [
    "Agent",
    "ChatModel",
    "FunctionTool",
    "OfflineModel",
    "RunContext",
    "RunResult",
    "Runner",
    "estimate_tokens",
    "handoff_tool_name",
    "load_agents",
    "stub_old_images",
    "tool",
    "trim_history",
]

_RUNTIME_MODULES = {"runtime", "tools", "history", "offline"}


def load_agents() -> dict[str, Agent]:
    """Import every agent module and return its agents by name (handoff targets included)."""
    found: dict[str, Agent] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name in _RUNTIME_MODULES:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, Agent):
                _register(found, value)
    return found


def _register(found: dict[str, Agent], agent: Agent) -> None:
    if found.get(agent.name) is agent:
        return
    if agent.name in found:
        raise ValueError(f"two agents are named {agent.name!r}: agent names must be unique")
    found[agent.name] = agent
    for target in agent.handoffs:
        _register(found, target)
