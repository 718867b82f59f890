"""The original design's example agent, which can also offer the customer choices as buttons or a list menu."""

from typing import Annotated

from agents import Agent, function_tool
from whatsapp.replies import Buttons, Menu, Row

_SIZES = ["Small", "Medium", "Large"]
_TOPICS = [
    Row("Opening hours", id="hours", description="When we are open"),
    Row("Order status", id="order", description="Where is my order?"),
    Row("Talk to a person", id="human", description="A colleague answers within a day"),
]


@function_tool
def show_buttons(
    question: Annotated[str, "The question, shown above the buttons"] = "Which size would you like?",
    choices: Annotated[list[str] | None, "Up to 3 answers, each at most 20 characters"] = None,
) -> Buttons:
    """Ask the customer a question with up to 3 reply buttons; their tap comes back as their next message."""
    return Buttons(question, choices or _SIZES)


@function_tool
def show_menu(
    question: Annotated[str, "The text shown above the menu"] = "What can I help you with?",
    choices: Annotated[list[str] | None, "Up to 10 options, each at most 24 characters"] = None,
) -> Menu:
    """Offer the customer a list menu of up to 10 options; their choice comes back as their next message."""
    return Menu(question, "Menu", rows=choices or _TOPICS)


general = Agent(
    name="general",
    handoff_description="Agent for general questions",
    instructions="You provide assistance with general queries. Give short and clear answers",
    tools=[show_buttons, show_menu],
)
