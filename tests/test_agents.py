"""The agent runtime against a local fake OpenAI server, through the real ``openai`` client."""

from __future__ import annotations

import ast
import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.shop import billing, shop
from whatsapp.agents_runtime import (
    Agent,
    ChatRunner,
    Customer,
    OfflineModel,
    RunResult,
    estimate_tokens,
    function_tool,
    load_agents,
    stub_old_images,
    trim_history,
)
from whatsapp.agents_runtime.history import IMAGE_STUB
from whatsapp.agents_runtime.run import MAX_TURNS_TEXT
from whatsapp.testing.openai_server import FakeOpenAI, tool_call

CONTEXT = Customer(sender="15550001111", profile_name="Ana")


@pytest.fixture
def fake(model: FakeOpenAI) -> Iterator[FakeOpenAI]:
    model.reset()
    yield model
    model.release()


@pytest.fixture
def runner(fake: FakeOpenAI) -> ChatRunner:
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="x", max_retries=0, timeout=10)
    return ChatRunner(client.chat.completions, "gpt-4o-mini")


def ask(runner: ChatRunner, agent: Agent, content: Any, history: list[dict[str, Any]] | None = None) -> RunResult:
    """One customer message after ``history``, as the handler asks it."""
    return runner.run(agent, [*(history or []), {"role": "user", "content": content}], CONTEXT)


def stored_turn(result: RunResult) -> list[dict[str, Any]]:
    """What the handler stores of a run: the user's message and everything the run added."""
    return [result.input[-1], *result.new_items]


def tool_names(request: dict[str, Any]) -> set[str]:
    return {entry["function"]["name"] for entry in request.get("tools", [])}


def assert_tool_pairs_whole(items: list[dict[str, Any]]) -> None:
    """Every tool call is answered by the messages right after it, and every tool message answers one."""
    index = 0
    while index < len(items):
        item = items[index]
        assert item["role"] != "tool", f"orphan tool message at {index}: {items}"
        if item.get("tool_calls"):
            ids = [call["id"] for call in item["tool_calls"]]
            answers = items[index + 1 : index + 1 + len(ids)]
            assert [a["role"] for a in answers] == ["tool"] * len(ids)
            assert sorted(a["tool_call_id"] for a in answers) == sorted(ids)
            index += len(ids)
        index += 1


# -- the tool loop ------------------------------------------------------------------------------------------


def test_tool_result_reaches_the_model_and_the_answer_follows(fake: FakeOpenAI, runner: ChatRunner) -> None:
    fake.reply_queue([{"tool_calls": [tool_call("order_status", {"order_id": "1234"}, id="call_a")]}, "On its way!"])

    result = ask(runner, shop, "where is order 1234?")

    first, second = fake.chat_requests()
    assert first["model"] == "gpt-4o-mini"
    assert tool_names(first) == {"order_status", "transfer_to_billing"}
    assistant, answer = second["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "call_a"
    assert answer == {
        "role": "tool",
        "tool_call_id": "call_a",
        "content": "Order 1234 shipped on 2 May and should arrive within three working days.",
    }
    assert result.final_output == "On its way!"
    assert result.last_agent.name == "shop"
    assert [item["role"] for item in result.new_items] == ["assistant", "tool", "assistant"]
    assert result.input == [{"role": "user", "content": "where is order 1234?"}]
    assert json.loads(json.dumps(result.new_items)) == result.new_items


def test_history_is_sent_between_the_system_prompt_and_the_new_message(fake: FakeOpenAI, runner: ChatRunner) -> None:
    general = load_agents()["general"]
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]

    ask(runner, general, "and now?", history)

    (request,) = fake.chat_requests()
    assert request["messages"] == [
        {"role": "system", "content": general.instructions},
        *history,
        {"role": "user", "content": "and now?"},
    ]
    assert tool_names(request) == {"show_buttons", "show_menu"}  # the example agent offers choices as buttons


def test_several_tool_calls_run_in_parallel(fake: FakeOpenAI, runner: ChatRunner) -> None:
    both_running = threading.Barrier(2, timeout=5)

    @function_tool
    def slow(label: str) -> str:
        """Waits for the other call: only passes if both run at once."""
        both_running.wait()
        return f"done {label}"

    agent = Agent(name="parallel", instructions="Be quick.", tools=[slow])
    calls = [tool_call("slow", {"label": "one"}, id="c1"), tool_call("slow", {"label": "two"}, id="c2")]
    fake.reply_queue([{"tool_calls": calls}, "Both done."])

    result = ask(runner, agent, "go")

    tool_messages = [m for m in fake.chat_requests()[1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("c1", "done one"), ("c2", "done two")]
    assert result.final_output == "Both done."


def test_the_turn_limit_ends_the_run_with_an_honest_answer(fake: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="x", max_retries=0, timeout=10)
    runner = ChatRunner(client.chat.completions, "gpt-4o-mini", max_turns=3)
    fake.reply_with(lambda request: {"tool_calls": [tool_call("order_status", {"order_id": "1001"})]})

    result = ask(runner, shop, "loop forever")

    assert len(fake.chat_requests()) == 3
    assert result.final_output == MAX_TURNS_TEXT
    assert result.new_items[-1] == {"role": "assistant", "content": MAX_TURNS_TEXT}
    assert sum(1 for item in result.new_items if item["role"] == "tool") == 2  # the third step's call never ran
    assert_tool_pairs_whole(result.new_items)


def test_a_raising_tool_tells_the_model_instead_of_crashing(fake: FakeOpenAI, runner: ChatRunner) -> None:
    @function_tool
    def explode(reason: str) -> str:
        """Always fails."""
        raise ValueError(f"cannot {reason}")

    agent = Agent(name="fragile", instructions="Try.", tools=[explode])
    fake.reply_queue([{"tool_calls": [tool_call("explode", {"reason": "do it"}, id="c1")]}, "Sorry, that failed."])

    result = ask(runner, agent, "try")

    assert fake.chat_requests()[1]["messages"][-1]["content"] == (
        "An error occurred while running the tool. Please try again. Error: cannot do it"
    )
    assert result.final_output == "Sorry, that failed."


def test_unknown_tools_and_bad_arguments_get_error_results(fake: FakeOpenAI, runner: ChatRunner) -> None:
    calls = [
        tool_call("teleport", {}, id="c1"),
        tool_call("order_status", "{not json", id="c2"),
        tool_call("order_status", {"order": "1234"}, id="c3"),
    ]
    fake.reply_queue([{"tool_calls": calls}, "Let me try again."])

    result = ask(runner, shop, "hm")

    contents = {m["tool_call_id"]: m["content"] for m in fake.chat_requests()[1]["messages"] if m["role"] == "tool"}
    assert contents["c1"].startswith("Error: there is no tool named 'teleport'.")
    assert "order_status" in contents["c1"]
    assert contents["c2"] == (
        "An error occurred while parsing tool arguments. Please try again with valid JSON. "
        "Error: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
    assert contents["c3"].startswith(
        "An error occurred while running the tool. Please try again. Error: Invalid JSON input for tool order_status: "
    )
    assert "order_id\n  Field required" in contents["c3"]
    assert result.final_output == "Let me try again."


# -- handoffs -------------------------------------------------------------------------------------------------


def test_handoff_continues_the_run_with_the_target_agent(fake: FakeOpenAI, runner: ChatRunner) -> None:
    fake.reply_queue([{"tool_calls": [tool_call("transfer_to_billing", {}, id="h1")]}, "Billing here, happy to help."])

    result = ask(runner, shop, "I was charged twice")

    first, second = fake.chat_requests()
    handoff = next(t for t in first["tools"] if t["function"]["name"] == "transfer_to_billing")
    assert "Billing questions: invoices, refunds and payments" in handoff["function"]["description"]
    assert second["messages"][0] == {"role": "system", "content": billing.instructions}
    assert tool_names(second) == {"invoice_total", "refund_policy", "transfer_to_shop"}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "h1", "content": '{"assistant": "billing"}'}
    assert second["messages"][1] == {"role": "user", "content": "I was charged twice"}
    assert result.last_agent.name == "billing"
    assert result.final_output == "Billing here, happy to help."


def test_the_agent_that_answered_takes_the_next_turn(fake: FakeOpenAI, runner: ChatRunner) -> None:
    fake.reply_queue([{"tool_calls": [tool_call("transfer_to_billing", {})]}, "Billing here.", "Refunds take 5 days."])
    agents = load_agents()

    first = ask(runner, agents["shop"], "refund please")
    second = ask(runner, first.last_agent, "how long?", stored_turn(first))

    third_request = fake.chat_requests()[2]
    assert third_request["messages"][0]["content"] == billing.instructions
    assert third_request["messages"][1:-1] == stored_turn(first)
    assert second.last_agent.name == "billing"


def test_two_handoffs_in_one_message_follow_the_first() -> None:
    general = Agent(name="general help", instructions="g", handoff_description="anything")
    agent = Agent(name="front", instructions="f", handoffs=[billing, general])
    model = ScriptedModel([{"tool_calls": [_call("transfer_to_general_help", "a"), _call("transfer_to_billing", "b")]}])

    result = ask(ChatRunner(model, "m"), agent, "hi")

    assert result.last_agent is general
    assert [m["content"] for m in result.new_items if m["role"] == "tool"] == [
        '{"assistant": "general help"}',
        "Multiple handoffs detected, ignoring this one.",
    ]


def test_callable_instructions_receive_the_conversation_context(fake: FakeOpenAI, runner: ChatRunner) -> None:
    runner.run(shop, "hello", Customer(sender="15550002222", profile_name="Bruno"))

    system = fake.chat_requests()[0]["messages"][0]["content"]
    assert "small online shop" in system
    assert "The customer's name is Bruno." in system


# -- history ----------------------------------------------------------------------------------------------------


def image_part(data: bytes = b"\xff\xd8" + b"x" * 1000) -> dict[str, Any]:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def test_only_the_newest_images_are_kept_and_older_ones_stubbed() -> None:
    history = []
    for n in range(5):
        history += [
            {"role": "user", "content": [{"type": "text", "text": f"photo {n}"}, image_part()]},
            {"role": "assistant", "content": f"nice photo {n}"},
        ]
    original = json.dumps(history)

    kept = trim_history(history, 100_000, keep_images=3)

    images = [[p["type"] for p in item["content"]] for item in kept if item["role"] == "user"]
    assert images[:2] == [["text", "text"], ["text", "text"]]
    assert images[2:] == [["text", "image_url"]] * 3
    assert kept[0]["content"][1] == {"type": "text", "text": IMAGE_STUB}
    assert json.dumps(history) == original  # the caller's history is not changed


def test_an_image_is_still_sent_two_turns_later(fake: FakeOpenAI, runner: ChatRunner) -> None:
    general = load_agents()["general"]
    stored: list[dict[str, Any]] = []
    turns = [[{"type": "text", "text": "my car"}, image_part()], "nice, isn't it?", "what colour is the car?"]
    for content in turns:
        stored += stored_turn(ask(runner, general, content, trim_history(stored, 8000)))

    last_request = fake.chat_requests()[-1]
    parts = [p for m in last_request["messages"] if isinstance(m["content"], list) for p in m["content"]]
    assert image_part() in parts


def test_an_image_counts_a_fixed_amount_whatever_its_size() -> None:
    small = {"role": "user", "content": [image_part(b"x" * 100)]}
    large = {"role": "user", "content": [image_part(b"x" * 1_000_000)]}
    assert estimate_tokens(small) == estimate_tokens(large) < 1000


def test_tool_calls_without_all_their_results_are_dropped() -> None:
    broken = {"role": "assistant", "content": None, "tool_calls": [_call("a", "c1"), _call("b", "c2")]}
    history = [
        {"role": "tool", "tool_call_id": "c0", "content": "orphan"},
        {"role": "user", "content": "q"},
        broken,
        {"role": "tool", "tool_call_id": "c1", "content": "only one"},
        {"role": "assistant", "content": "a"},
    ]
    assert trim_history(history, 1000) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def _call(name: str, call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Users (some with images), answers and tool-call groups, in any order, with unique call ids."""
    items: list[dict[str, Any]] = []
    for unit in draw(st.lists(st.sampled_from(["user", "image", "assistant", "tools"]), max_size=40)):
        text = "x" * draw(st.integers(0, 400))
        if unit == "user":
            items.append({"role": "user", "content": text})
        elif unit == "image":
            items.append({"role": "user", "content": [{"type": "text", "text": text}, image_part(b"i" * 300)]})
        elif unit == "assistant":
            items.append({"role": "assistant", "content": text})
        else:
            ids = [f"call_{len(items)}_{n}" for n in range(draw(st.integers(1, 3)))]
            items.append({"role": "assistant", "content": None, "tool_calls": [_call("t", i) for i in ids]})
            items += [{"role": "tool", "tool_call_id": i, "content": text} for i in ids]
    return items


def _size(items: list[dict[str, Any]]) -> int:
    return sum(estimate_tokens(item) for item in items)


@settings(max_examples=300, deadline=None)
@given(history=histories(), budget=st.integers(1, 3000), keep_images=st.integers(0, 4))
def test_trimmed_history_is_the_newest_whole_turns_within_budget(
    history: list[dict[str, Any]], budget: int, keep_images: int
) -> None:
    stubbed = stub_old_images(history, keep_images)

    kept = trim_history(history, budget, keep_images)

    assert kept == stubbed[len(stubbed) - len(kept) :]  # a suffix: the newest messages, in order
    assert not kept or kept[0]["role"] == "user"
    assert_tool_pairs_whole(kept)
    users = [i for i, item in enumerate(stubbed) if item["role"] == "user"]
    if users:
        newest_turn = stubbed[users[-1] :]
        assert _size(kept) <= budget or kept == newest_turn
        assert kept, "the newest turn is always kept"
        start = len(stubbed) - len(kept)
        earlier = [i for i in users if i < start]
        if earlier:  # it stopped because the turn before would not fit
            assert _size(stubbed[earlier[-1] :]) > budget
    else:
        assert kept == []
    images = [p for item in kept if isinstance(item["content"], list) for p in item["content"]]
    assert sum(p["type"] == "image_url" for p in images) <= keep_images


def test_request_size_stays_flat_as_the_conversation_grows() -> None:
    model = RecordingOfflineModel()
    runner = ChatRunner(model, "offline")
    stored: list[dict[str, Any]] = []
    sizes = {}
    for turn in range(1, 501):
        content = f"message number {turn} " + "words " * 40
        stored += stored_turn(ask(runner, shop, content, trim_history(stored, 2000)))
        if turn in (1, 50, 500):
            sizes[turn] = model.sizes[-1]
    print(f"request size in characters at turns 1, 50, 500: {sizes}")
    assert sizes[500] <= sizes[50] * 1.1
    assert sizes[500] < 2000 * 4 + 10_000  # the budget, the system prompt and the tool schemas


# -- the offline model --------------------------------------------------------------------------------------------


class RecordingOfflineModel(OfflineModel):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def create(self, *, model: str, messages: list[dict], tools: list[dict] | None = None, **kwargs: Any) -> Any:
        self.sizes.append(len(json.dumps({"messages": messages, "tools": tools})))
        return super().create(model=model, messages=messages, tools=tools, **kwargs)


class ScriptedModel:
    """Answers from a list of assistant messages, through the offline model's ChatCompletion building."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = list(replies)

    def create(self, *, model: str, messages: list[dict], **kwargs: Any) -> Any:
        from openai.types.chat import ChatCompletion

        message = {"role": "assistant", "content": None, **(self.replies.pop(0) if self.replies else {"content": "ok"})}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return ChatCompletion.model_validate(
            {"id": "x", "object": "chat.completion", "created": 0, "model": model, "choices": [choice]}
        )


def offline_runner() -> ChatRunner:
    return ChatRunner(OfflineModel(), "offline-demo")


def test_offline_model_calls_a_tool_named_in_the_message() -> None:
    result = ask(offline_runner(), shop, "What is the order status of 1234?")

    call = result.new_items[0]["tool_calls"][0]["function"]
    assert (call["name"], json.loads(call["arguments"])) == ("order_status", {"order_id": "1234"})
    assert result.final_output.startswith(
        "The order_status tool says: Order 1234 shipped on 2 May and should arrive within three working days."
    )
    assert "OPENAI_API_KEY" in result.final_output
    assert result.last_agent.name == "shop"


def test_offline_model_follows_a_handoff_then_uses_the_new_agents_tool() -> None:
    first = ask(offline_runner(), shop, "What is your refund policy?")
    again = ask(offline_runner(), shop, "What is your refund policy?")

    calls = [c["function"]["name"] for item in first.new_items for c in item.get("tool_calls", [])]
    assert calls == ["transfer_to_billing", "refund_policy"]
    assert first.last_agent.name == "billing"
    assert "returned within 30 days" in first.final_output
    assert again.final_output == first.final_output and again.new_items == first.new_items  # deterministic


def test_offline_model_says_what_it_is_and_reflects_the_question() -> None:
    result = ask(offline_runner(), load_agents()["general"], "Hello, who are you?")

    assert 'You asked: "Hello, who are you?"' in result.final_output
    assert "offline demo model" in result.final_output
    assert "OPENAI_API_KEY" in result.final_output and "OPENAI_BASE_URL" in result.final_output
    assert [item["role"] for item in result.new_items] == ["assistant"]


def test_offline_model_describes_images_and_document_notes() -> None:
    content = [
        {"type": "text", "text": "[document: invoice.pdf, 3 pages] what is in these?"},
        image_part(b"\xff" * 2048),
    ]
    result = ask(offline_runner(), load_agents()["general"], content)

    assert "I received an image (2 KB, image/jpeg)." in result.final_output
    assert "[document: invoice.pdf, 3 pages]" in result.final_output
    assert 'You asked: "what is in these?"' in result.final_output


def test_offline_model_asks_for_a_missing_argument_instead_of_guessing() -> None:
    result = ask(offline_runner(), shop, "order status please")

    assert [item["role"] for item in result.new_items] == ["assistant"]
    assert "order_id (The order number)" in result.final_output


def test_offline_model_hands_back_on_a_later_turn() -> None:
    runner = offline_runner()
    first = ask(runner, shop, "I have a question about my invoice")
    second = ask(runner, billing, "and what is the order status of 2002?", stored_turn(first))

    assert first.last_agent.name == "billing"
    assert "You are now talking to the billing agent." in first.final_output
    assert second.last_agent.name == "shop"
    assert "Order 2002 was delivered on 28 April." in second.final_output


# -- discovery ----------------------------------------------------------------------------------------------------


def test_discovery_finds_every_agent_module() -> None:
    found = load_agents()

    assert {"general", "shop", "billing"} <= found.keys()
    assert found["shop"] is shop and found["billing"] is billing
    assert found["shop"].handoffs == [found["billing"]]


def test_the_runtime_knows_nothing_of_http_or_whatsapp() -> None:
    runtime = Path(load_agents.__code__.co_filename).parent
    imported: set[str] = set()
    for source in runtime.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add("." * node.level + (node.module or "").split(".")[0])
    outside = {name for name in imported if name.startswith("..") or name in {"whatsapp", "flask", "requests"}}
    assert outside == set()
