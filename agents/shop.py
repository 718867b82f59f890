"""Example agents for a small online shop: ``shop`` answers about orders and hands billing questions to ``billing``.

Copy this file to start your own agent: an ``Agent`` at module level is all discovery needs. The data here is
canned; a real shop would look orders up in its own system inside the tools.
"""

from __future__ import annotations

from typing import Annotated

from agents import Agent, Customer, RunContextWrapper, function_tool

_ORDERS = {
    "1001": ("is being packed", 24.50),
    "1234": ("shipped on 2 May and should arrive within three working days", 59.90),
    "2002": ("was delivered on 28 April", 112.00),
}


def _order(order_id: str) -> tuple[str, float] | None:
    return _ORDERS.get(order_id.strip().lstrip("#"))


@function_tool
def order_status(order_id: Annotated[str, "The order number"]) -> str:
    """Look up where an order is: packed, shipped or delivered."""
    order = _order(order_id)
    if order is None:
        return f"Order {order_id} was not found. The number is on the order confirmation email."
    return f"Order {order_id} {order[0]}."


@function_tool
def invoice_total(order_id: Annotated[str, "The order number"]) -> str:
    """The amount invoiced for an order, VAT included."""
    order = _order(order_id)
    if order is None:
        return f"There is no invoice for order {order_id}: the order was not found."
    return f"The invoice for order {order_id} is EUR {order[1]:.2f}, VAT included."


@function_tool
def refund_policy() -> str:
    """The shop's refund policy."""
    return (
        "Unused items can be returned within 30 days of delivery for a full refund, "
        "paid back to the original payment method within 5 working days of the return arriving."
    )


def _shop_instructions(ctx: RunContextWrapper[Customer], agent: Agent[Customer]) -> str:
    name = f" The customer's name is {ctx.context.profile_name}." if ctx.context.profile_name else ""
    return (
        "You are the assistant of a small online shop, answering customers on WhatsApp. Be brief and friendly. "
        "Use the order_status tool for any question about where an order is; never guess a status. "
        "Hand billing questions (invoices, refunds, payments) to the billing agent." + name
    )


billing = Agent(
    name="billing",
    handoff_description="Billing questions: invoices, refunds and payments",
    instructions=(
        "You handle billing for a small online shop: invoices, refunds and payments. Be brief and precise. "
        "Use invoice_total for amounts and refund_policy for refunds; never invent numbers. "
        "Hand questions about deliveries back to the shop agent."
    ),
    tools=[invoice_total, refund_policy],
)

shop = Agent(
    name="shop",
    handoff_description="Orders and deliveries of the online shop",
    instructions=_shop_instructions,
    tools=[order_status],
    handoffs=[billing],
)

billing.handoffs.append(shop)
