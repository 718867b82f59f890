"""The agent runtime: ``Agent``, tools, ``Runner``, history trimming and the offline demonstration model.

It lives here, apart from the user's ``agents`` package, so that no agent module (``agents/tools.py``,
``agents/history.py``…) can shadow it; ``agents/__init__.py`` re-exports its public names, so agent modules keep
writing ``from agents import Agent``. It knows nothing of HTTP or WhatsApp.
"""

from __future__ import annotations

from .discovery import load_agents
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
