"""The OpenAI Agents SDK's common surface, written as the SDK's documentation writes it, run with ``Runner.run_sync``
against the local fake OpenAI server: what reaches the model is what the SDK would send."""

from __future__ import annotations

import asyncio
import enum
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel

from agents import (
    Agent,
    ModelSettings,
    RunContextWrapper,
    Runner,
    function_tool,
    handoff,
)
from whatsapp.testing.openai_server import FakeOpenAI, tool_call


@pytest.fixture
def fake(model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The fake server as the ``openai`` client's default endpoint, as ``OPENAI_BASE_URL`` sets it for the SDK."""
    monkeypatch.setenv("OPENAI_BASE_URL", model.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model.reset()
    yield model
    model.release()


def tools_of(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["function"]["name"]: entry["function"] for entry in request.get("tools", [])}


def tool_results(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def call_then_answer(fake: FakeOpenAI, name: str, arguments: dict[str, Any]) -> None:
    """The model calls ``name`` once, then answers with the tool's result."""
    fake.reply_queue(
        [{"content": None, "tool_calls": [tool_call(name, arguments)]}, lambda r: "Result: " + tool_results(r)[-1]]
    )


# -- function_tool ------------------------------------------------------------------------------------------------


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


class Address(BaseModel):
    street: str
    city: str = "Lisbon"


@dataclass
class Window:
    start: str
    end: str


@function_tool
def plan_delivery(
    address: Address,
    window: Window,
    note: Annotated[str, "A note for the driver"],
    size: Size = Size.SMALL,
    speed: Literal["normal", "express"] = "normal",
    tip: float | None = None,
) -> str:
    """Plan a delivery to an address.

    Args:
        window: When the customer is at home.
        tip: Euros for the driver.
    """
    return f"{address.street}, {address.city} between {window.start} and {window.end}: {size.value} {speed} {tip}"


def test_a_function_tool_is_described_as_the_sdk_describes_it() -> None:
    assert plan_delivery.name == "plan_delivery"
    assert plan_delivery.description == "Plan a delivery to an address."
    schema = plan_delivery.params_json_schema
    assert schema["required"] == ["address", "window", "note", "size", "speed", "tip"]  # strict: all of them
    assert schema["additionalProperties"] is False
    assert schema["properties"]["note"] == {"description": "A note for the driver", "title": "Note", "type": "string"}
    assert schema["properties"]["window"]["description"] == "When the customer is at home."
    assert schema["properties"]["tip"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}],
        "description": "Euros for the driver.",
        "title": "Tip",
    }
    assert schema["properties"]["speed"] == {
        "default": "normal",
        "enum": ["normal", "express"],
        "title": "Speed",
        "type": "string",
    }
    assert schema["$defs"]["Address"]["required"] == ["street", "city"]
    assert schema["$defs"]["Address"]["additionalProperties"] is False


def test_pydantic_models_and_dataclasses_arrive_as_instances(fake: FakeOpenAI) -> None:
    agent = Agent(name="Dispatcher", instructions="Plan deliveries.", tools=[plan_delivery])
    arguments = {
        "address": {"street": "Rua Augusta 1"},
        "window": {"start": "9:00", "end": "12:00"},
        "note": "ring twice",
        "size": "large",
        "speed": "express",
        "tip": None,
    }
    call_then_answer(fake, "plan_delivery", arguments)

    result = Runner.run_sync(agent, "Deliver to Rua Augusta 1 tomorrow morning")

    assert result.final_output == "Result: Rua Augusta 1, Lisbon between 9:00 and 12:00: large express None"
    assert result.last_agent is agent
    first = fake.chat_requests()[0]
    assert first["messages"] == [
        {"role": "system", "content": "Plan deliveries."},
        {"role": "user", "content": "Deliver to Rua Augusta 1 tomorrow morning"},
    ]
    assert tools_of(first)["plan_delivery"]["parameters"] == plan_delivery.params_json_schema


def test_name_and_description_overrides() -> None:
    @function_tool(name_override="find_cake", description_override="Find a cake by flavour.")
    def search(flavour: str) -> str:
        """Ignored: the override wins."""
        return flavour

    assert (search.name, search.description) == ("find_cake", "Find a cake by flavour.")


def test_the_docstring_describes_a_parameter_before_annotated_does() -> None:
    @function_tool
    def weigh(grams: Annotated[int, "from Annotated"]) -> str:
        """Weigh something.

        Args:
            grams: from the docstring
        """
        return str(grams)

    assert weigh.params_json_schema["properties"]["grams"]["description"] == "from the docstring"


def test_an_async_tool_is_awaited_and_its_result_reaches_the_model(fake: FakeOpenAI) -> None:
    @function_tool
    async def fetch_weather(city: str) -> str:
        """The weather in a city."""
        await asyncio.sleep(0.01)
        return f"The weather in {city} is sunny."

    agent = Agent(name="Weather", instructions="Answer about the weather.", tools=[fetch_weather])
    call_then_answer(fake, "fetch_weather", {"city": "Porto"})

    result = Runner.run_sync(agent, "Weather in Porto?")

    assert tool_results(fake.chat_requests()[1]) == ["The weather in Porto is sunny."]
    assert result.final_output == "Result: The weather in Porto is sunny."


class Forecast(BaseModel):
    city: str
    celsius: int


def test_results_are_given_to_the_model_as_str_of_the_value(fake: FakeOpenAI) -> None:
    @function_tool
    async def forecast(city: str) -> Forecast:
        """Tomorrow's forecast."""
        return Forecast(city=city, celsius=21)

    @function_tool
    def slot(day: str) -> Window:
        """A delivery slot."""
        return Window(start="9:00", end="12:00")

    @function_tool
    def prices() -> dict[str, float]:
        """Prices."""
        return {"cake": 25.0}

    agent = Agent(name="Mixed", tools=[forecast, slot, prices])
    calls = [tool_call("forecast", {"city": "Faro"}), tool_call("slot", {"day": "monday"}), tool_call("prices", {})]
    fake.reply_queue([{"content": None, "tool_calls": calls}, "Done."])

    Runner.run_sync(agent, "all of it")

    # The SDK sends str() of a non-text result: pydantic's and dataclasses' own str, not JSON.
    assert tool_results(fake.chat_requests()[1]) == [
        "city='Faro' celsius=21",
        "Window(start='9:00', end='12:00')",
        "{'cake': 25.0}",
    ]


def test_tool_errors_are_worded_as_the_sdk_words_them(fake: FakeOpenAI) -> None:
    @function_tool
    def refund(order_id: int) -> str:
        """Refund an order."""
        raise RuntimeError(f"order {order_id} is already refunded")

    @function_tool(failure_error_function=lambda ctx, error: f"refund desk says: {error}")
    def refund_politely(order_id: int) -> str:
        """Refund an order, politely."""
        raise RuntimeError("closed today")

    agent = Agent(name="Refunds", tools=[refund, refund_politely])
    calls = [
        tool_call("refund", {"order_id": 7}),
        tool_call("refund", {"order_id": "seven"}),
        tool_call("refund", "{oops"),
        tool_call("refund_politely", {"order_id": 7}),
    ]
    fake.reply_queue([{"content": None, "tool_calls": calls}, "Sorry."])

    Runner.run_sync(agent, "refund 7")

    raised, invalid, not_json, polite = tool_results(fake.chat_requests()[1])
    assert raised == "An error occurred while running the tool. Please try again. Error: order 7 is already refunded"
    assert invalid.startswith(
        "An error occurred while running the tool. Please try again. Error: Invalid JSON input for tool refund: "
        "1 validation error for refund_args\norder_id\n  Input should be a valid integer"
    )
    assert not_json.startswith("An error occurred while parsing tool arguments. Please try again with valid JSON.")
    assert polite == "refund desk says: closed today"


def test_without_a_failure_error_function_a_tool_error_fails_the_run(fake: FakeOpenAI) -> None:
    @function_tool(failure_error_function=None)
    def charge(amount: int) -> str:
        """Charge the card."""
        raise ConnectionError("payment provider unreachable")

    fake.reply_queue([{"content": None, "tool_calls": [tool_call("charge", {"amount": 5})]}, "unreachable"])

    with pytest.raises(ConnectionError, match="payment provider unreachable"):
        Runner.run_sync(Agent(name="Till", tools=[charge]), "charge 5")


# -- context ----------------------------------------------------------------------------------------------------


@dataclass
class UserInfo:
    name: str
    uid: int


def test_a_tool_and_dynamic_instructions_receive_the_runs_context(fake: FakeOpenAI) -> None:
    @function_tool
    async def fetch_user_age(wrapper: RunContextWrapper[UserInfo]) -> str:
        """Fetch the age of the user. Call this function to get user's age information."""
        return f"The user {wrapper.context.name} is 47 years old"

    def instructions(ctx: RunContextWrapper[UserInfo], agent: Agent[UserInfo]) -> str:
        return f"The user's name is {ctx.context.name}. Help them with their questions. You are {agent.name}."

    agent = Agent[UserInfo](name="Assistant", instructions=instructions, tools=[fetch_user_age])
    call_then_answer(fake, "fetch_user_age", {})

    result = Runner.run_sync(agent, "What is the age of the user?", context=UserInfo(name="John", uid=123))

    first, second = fake.chat_requests()
    assert (
        first["messages"][0]["content"] == "The user's name is John. Help them with their questions. You are Assistant."
    )
    assert tools_of(first)["fetch_user_age"]["parameters"]["properties"] == {}  # the context is not shown
    assert result.final_output == "Result: The user John is 47 years old"
    assert result.context_wrapper.context.uid == 123


def test_async_instructions_are_awaited(fake: FakeOpenAI) -> None:
    async def instructions(ctx: RunContextWrapper[Any], agent: Agent[Any]) -> str:
        return f"You are {agent.name}, and async."

    fake.reply_with("Hi")
    Runner.run_sync(Agent(name="Async", instructions=instructions), "hello")

    assert fake.chat_requests()[0]["messages"][0] == {"role": "system", "content": "You are Async, and async."}


def test_wrong_instructions_and_tools_fail_when_the_agent_is_built() -> None:
    with pytest.raises(TypeError, match=r"instructions must accept exactly 2 arguments \(context, agent\)"):
        Agent(name="Old style", instructions=lambda context: "one argument")
    with pytest.raises(TypeError, match="decorate it with @function_tool"):
        Agent(name="Plain", tools=[len])

    with pytest.raises(TypeError, match="RunContextWrapper must be the first parameter"):

        @function_tool
        def late(city: str, wrapper: RunContextWrapper[Any]) -> str:
            return city

    with pytest.raises(TypeError, match="tool remind: Unable to generate pydantic-core schema"):

        @function_tool
        def remind(when: UserInfo | threading.Event) -> str:
            return ""


# -- agents and handoffs ------------------------------------------------------------------------------------------


def test_an_agent_with_only_a_name_sends_no_system_message(fake: FakeOpenAI) -> None:
    fake.reply_with("Hello!")

    result = Runner.run_sync(Agent(name="Bare"), "hi")

    (request,) = fake.chat_requests()
    assert request["messages"] == [{"role": "user", "content": "hi"}]
    assert "tools" not in request
    assert result.final_output == "Hello!"


def test_handoffs_are_named_and_described_as_the_sdk_does(fake: FakeOpenAI) -> None:
    billing = Agent(name="Billing Team (EU)", handoff_description="Invoices and refunds", instructions="Billing.")
    spanish = Agent(name="Spanish agent", instructions="Habla español.")
    escalation = Agent(name="Escalation", instructions="Escalations.")
    triage = Agent(
        name="Triage",
        instructions="Route the customer.",
        handoffs=[
            billing,
            spanish,
            handoff(escalation, tool_name_override="escalate", tool_description_override="Escalate to a human."),
        ],
    )
    fake.reply_queue([{"content": None, "tool_calls": [tool_call("transfer_to_billing_team__eu_", {})]}, "Billing."])

    result = Runner.run_sync(triage, "I was charged twice")

    first, second = fake.chat_requests()
    tools = tools_of(first)
    assert tools["transfer_to_billing_team__eu_"]["description"] == (
        "Handoff to the Billing Team (EU) agent to handle the request. Invoices and refunds"
    )
    assert tools["transfer_to_spanish_agent"]["description"] == (
        "Handoff to the Spanish agent agent to handle the request. "  # the SDK's words, trailing space included
    )
    assert tools["escalate"] == {
        "name": "escalate",
        "description": "Escalate to a human.",
        "parameters": {"additionalProperties": False, "type": "object", "properties": {}, "required": []},
    }
    assert second["messages"][0] == {"role": "system", "content": "Billing."}
    assert tool_results(second) == ['{"assistant": "Billing Team (EU)"}']
    assert result.last_agent is billing


def test_on_handoff_receives_the_models_input(fake: FakeOpenAI) -> None:
    class EscalationData(BaseModel):
        reason: str

    received: list[str] = []

    async def on_handoff(ctx: RunContextWrapper[None], input_data: EscalationData) -> None:
        received.append(input_data.reason)

    escalation = Agent(name="Escalation agent", instructions="Escalations.")
    triage = Agent(name="Triage", handoffs=[handoff(escalation, on_handoff=on_handoff, input_type=EscalationData)])
    fake.reply_queue(
        [{"content": None, "tool_calls": [tool_call("transfer_to_escalation_agent", {"reason": "angry"})]}, "Ok."]
    )

    result = Runner.run_sync(triage, "I want a manager")

    parameters = tools_of(fake.chat_requests()[0])["transfer_to_escalation_agent"]["parameters"]
    assert parameters["required"] == ["reason"] and parameters["additionalProperties"] is False
    assert received == ["angry"]
    assert result.last_agent is escalation


def test_model_and_model_settings_reach_chat_completions(fake: FakeOpenAI) -> None:
    @function_tool
    def stock(item: str) -> str:
        """Units in stock."""
        return "3"

    agent = Agent(
        name="Tuned",
        model="gpt-4.1-mini",
        tools=[stock],
        model_settings=ModelSettings(
            temperature=0.2, top_p=0.9, max_tokens=300, tool_choice="stock", parallel_tool_calls=False
        ),
    )
    call_then_answer(fake, "stock", {"item": "cake"})

    Runner.run_sync(agent, "how many cakes?")

    first, second = fake.chat_requests()
    assert first["model"] == "gpt-4.1-mini"
    assert (first["temperature"], first["top_p"], first["max_tokens"]) == (0.2, 0.9, 300)
    assert first["parallel_tool_calls"] is False
    assert first["tool_choice"] == {"type": "function", "function": {"name": "stock"}}
    assert "tool_choice" not in second  # reset once the tool was used, as the SDK does, so the run can end


def test_run_results_chain_into_the_next_turn(fake: FakeOpenAI) -> None:
    agent = Agent(name="Assistant", instructions="Reply very concisely.")
    fake.reply_queue(["San Francisco.", "California."])

    first = Runner.run_sync(agent, "What city is the Golden Gate Bridge in?")
    second = asyncio.run(
        Runner.run(agent, first.to_input_list() + [{"role": "user", "content": "What state is it in?"}])
    )

    assert second.final_output == "California."
    assert [m["content"] for m in fake.chat_requests()[1]["messages"]] == [
        "Reply very concisely.",
        "What city is the Golden Gate Bridge in?",
        "San Francisco.",
        "What state is it in?",
    ]


def test_without_a_model_configured_runner_uses_the_offline_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    result = Runner.run_sync(Agent(name="Offline"), "hello there")

    assert 'You asked: "hello there"' in result.final_output


def test_the_turn_limit_is_a_polite_answer_not_an_exception(fake: FakeOpenAI) -> None:
    @function_tool
    def again() -> str:
        """Call me again."""
        return "again"

    fake.reply_with(lambda request: {"content": None, "tool_calls": [tool_call("again", {})]})

    result = Runner.run_sync(Agent(name="Looper", tools=[again]), "go", max_turns=2)

    assert len(fake.chat_requests()) == 2
    assert result.final_output.startswith("Sorry, I could not finish working on this within the steps I am allowed.")
    assert json.loads(json.dumps(result.new_items)) == result.new_items
