"""What a run knows about who it is for: the SDK's ``RunContextWrapper`` around your own context object.

The service builds one context per answered message. By default it is the :class:`Customer` (sender and profile
name); an agent module that defines ``build_context(customer)`` at module level decides what its agents get instead,
as the SDK's ``Runner.run(agent, input, context=...)`` lets a script decide.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .awaiting import resolve

if TYPE_CHECKING:
    from .agent import Agent

TContext = TypeVar("TContext")


@dataclass(frozen=True)
class Customer:
    """The person a run answers: their id (a phone number on WhatsApp) and the name their profile shows."""

    sender: str
    profile_name: str | None = None


@dataclass(eq=False)
class RunContextWrapper(Generic[TContext]):
    """Handed to dynamic instructions and to tools that take it as their first parameter; never sent to the model.

    ``replies`` holds what the run sends the customer besides its final answer (the service's rich replies: buttons,
    a list, an image...), in the order made: given to :meth:`reply`, or returned by a tool.
    """

    context: TContext
    replies: list[Any] = field(default_factory=list)

    def reply(self, reply: Any) -> None:
        """Send ``reply`` to the customer too, after the run (``ctx.reply(Buttons("Which size?", ["S", "L"]))``)."""
        self.replies.append(reply)


def context_for(agent: Agent, customer: Customer) -> Any:
    """The context for a run that starts at ``agent``: its module's ``build_context(customer)``, or the customer.

    ``build_context`` may be ``async def``; it runs once per answered message.
    """
    module = sys.modules.get(agent.defined_in or "")
    builder = getattr(module, "build_context", None)
    return customer if builder is None else resolve(builder(customer))
