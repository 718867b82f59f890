"""The agent runtime: the OpenAI Agents SDK's common surface over the ``openai`` package's Chat Completions.

It lives here, apart from the user's ``agents`` package, so that no agent module (``agents/tools.py``,
``agents/history.py``…) can shadow it; ``agents/__init__.py`` re-exports the names agent modules use, so they keep
writing ``from agents import Agent, function_tool``. It knows nothing of HTTP or WhatsApp.
"""

from __future__ import annotations

from .agent import Agent, ModelSettings
from .context import Customer, RunContextWrapper, context_for
from .discovery import load_agents
from .handoffs import Handoff, handoff
from .history import estimate_tokens, stub_old_images, trim_history
from .offline import OfflineModel
from .run import DEFAULT_MAX_TURNS, ChatModel, ChatRunner, Runner, RunResult
from .tools import FunctionTool, default_tool_error_function, function_tool

__all__ = [
    "DEFAULT_MAX_TURNS",
    "Agent",
    "ChatModel",
    "ChatRunner",
    "Customer",
    "FunctionTool",
    "Handoff",
    "ModelSettings",
    "OfflineModel",
    "RunContextWrapper",
    "RunResult",
    "Runner",
    "context_for",
    "default_tool_error_function",
    "estimate_tokens",
    "function_tool",
    "handoff",
    "load_agents",
    "stub_old_images",
    "trim_history",
]
