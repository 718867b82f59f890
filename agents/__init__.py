"""Your agents: one plain Python module each. Every ``Agent`` defined at module level is registered by its name.

Agent modules import the runtime from here, as they would from the OpenAI Agents SDK::

    from agents import Agent, RunContextWrapper, function_tool

The runtime itself lives in ``whatsapp.agents_runtime``, so a module of yours named ``tools.py`` or ``history.py``
cannot replace it.
"""

from whatsapp.agents_runtime import (
    Agent,
    Customer,
    FunctionTool,
    Handoff,
    ModelSettings,
    RunContextWrapper,
    Runner,
    RunResult,
    default_tool_error_function,
    function_tool,
    handoff,
)

__all__ = [
    "Agent",
    "Customer",
    "FunctionTool",
    "Handoff",
    "ModelSettings",
    "RunContextWrapper",
    "RunResult",
    "Runner",
    "default_tool_error_function",
    "function_tool",
    "handoff",
]
