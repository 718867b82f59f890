"""Your agents: one plain Python module each. Every ``Agent`` defined at module level is registered by its name.

Agent modules import the runtime from here, ``from agents import Agent, tool``, as they would from the OpenAI Agents
SDK; the runtime itself lives in ``whatsapp.agents_runtime``, so a module of yours named ``tools.py`` or
``history.py`` cannot replace it.
"""

from whatsapp.agents_runtime import Agent, FunctionTool, RunContext, Runner, RunResult, tool

__all__ = ["Agent", "FunctionTool", "RunContext", "RunResult", "Runner", "tool"]
