"""Finding the agents: every module of the user's agent package, and every ``Agent`` defined in it at module level."""

from __future__ import annotations

import importlib
import pkgutil

from .agent import Agent
from .handoffs import Handoff


def load_agents(package: str = "agents") -> dict[str, Agent]:
    """Import every module of ``package`` and return its agents by name (handoff targets included).

    Modules whose name starts with ``_`` are skipped: they are where agent modules keep shared helpers.
    """
    found: dict[str, Agent] = {}
    root = importlib.import_module(package)
    for module_info in pkgutil.iter_modules(root.__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
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
        _register(found, target.agent if isinstance(target, Handoff) else target)
