"""Agents, one plain Python module each, and the small runtime they import.

Every module in this package (other than the runtime's own) that defines :class:`Agent` objects at module level
registers them by name; ``whatsapp.agent`` picks the entry agent by that name.
"""

from __future__ import annotations

import importlib
import pkgutil

from .runtime import Agent, RunContext, Runner, RunResult, trim_history

__all__ = ["Agent", "RunContext", "RunResult", "Runner", "load_agents", "trim_history"]

_RUNTIME_MODULES = {"runtime"}


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
