"""Agents through the real service: media kept in history, voice notes, documents, tools, handoffs, commands."""

from __future__ import annotations

import json

from tests.agent_modules import agent_project
from tests.pdfs import encrypted_pdf, pdf_with_text
from whatsapp.testing import webhooks as wh
from whatsapp.testing.openai_server import tool_call

JPEG = b"\xff\xd8\xff\xe0" + b"red-car-photo" * 20


def image_urls(request: dict) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in request["messages"]
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def last_user_text(request: dict) -> str:
    content = [m for m in request["messages"] if m["role"] == "user"][-1]["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content


def send_and_wait(service, graph, message, count: int) -> list[dict]:
    assert service.post(wh.webhook(message)).status_code == 200
    return graph.wait_for_texts(count, timeout=20)


def test_a_voice_note_is_transcribed_and_the_transcript_answered(service, fakes):
    graph, model = fakes
    graph.add_media("voice-1", b"OggS" + b"\x00" * 4000, "audio/ogg; codecs=opus")
    model.transcribe_with("Do you deliver on Sundays?")
    [reply] = send_and_wait(service, graph, wh.audio_message("voice-1", voice=True), 1)
    [upload] = model.transcription_requests()
    assert upload.fields["model"] == "whisper-1" and upload.data.startswith(b"OggS")
    assert last_user_text(model.chat_requests()[0]).endswith("Do you deliver on Sundays?")
    assert reply["body"].startswith("You said: [Transcript of the customer's voice note]")


def test_an_image_is_still_shown_to_the_model_two_turns_later(service, fakes):
    graph, model = fakes
    graph.add_media("car-1", JPEG, "image/jpeg")
    send_and_wait(service, graph, wh.image_message("car-1", caption="Look at my new car"), 1)
    send_and_wait(service, graph, wh.text_message("It was expensive."), 2)
    send_and_wait(service, graph, wh.text_message("And what colour is the car in that photo?"), 3)
    third = model.chat_requests()[2]
    [url] = image_urls(third)
    assert url.startswith("data:image/jpeg;base64,")
    assert len(graph.media_downloads()) == 1  # kept in the store, not downloaded again


def test_older_images_are_replaced_by_a_stub(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_OPENAI__HISTORY_IMAGES="1")
    graph.add_media("img-a", JPEG, "image/jpeg")
    graph.add_media("img-b", JPEG + b"2", "image/jpeg")
    send_and_wait(service, graph, wh.image_message("img-a", caption="first"), 1)
    send_and_wait(service, graph, wh.image_message("img-b", caption="second"), 2)
    send_and_wait(service, graph, wh.text_message("compare them"), 3)
    third = model.chat_requests()[2]
    assert len(image_urls(third)) == 1
    assert "[an earlier image, no longer shown]" in json.dumps(third["messages"])


def test_a_pdfs_text_reaches_the_model_and_a_follow_up_works(service, fakes):
    graph, model = fakes
    graph.add_media("pdf-1", pdf_with_text("Invoice 2041", "Total due: 312.50 EUR"), "application/pdf")
    send_and_wait(service, graph, wh.document_message("pdf-1", "invoice.pdf", caption="Please check"), 1)
    first = last_user_text(model.chat_requests()[0])
    assert "invoice.pdf" in first and "Total due: 312.50 EUR" in first
    send_and_wait(service, graph, wh.text_message("What was the total again?"), 2)
    assert "Total due: 312.50 EUR" in json.dumps(model.chat_requests()[1]["messages"])


def test_an_encrypted_pdf_gets_a_clear_reply(service, fakes):
    graph, model = fakes
    graph.add_media("pdf-locked", encrypted_pdf(), "application/pdf")
    [reply] = send_and_wait(service, graph, wh.document_message("pdf-locked", "secret.pdf"), 1)
    assert reply["body"] == "Sorry, I can't read secret.pdf: the PDF is password-protected, so I cannot open it."
    assert model.chat_requests() == []


def test_a_tool_result_reaches_the_answer_and_a_handoff_sticks(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WHATSAPP__AGENT="shop")
    model.reply_queue(
        [
            {"content": None, "tool_calls": [tool_call("order_status", {"order_id": "1001"})]},
            lambda request: "Your order: " + request["messages"][-1]["content"],
            {"content": None, "tool_calls": [tool_call("transfer_to_billing", {})]},
            "Billing here: refunds take 5 days.",
            "Billing again: anything else?",
        ]
    )
    [status] = send_and_wait(service, graph, wh.text_message("Where is order 1001?"), 1)
    tool_message = model.chat_requests()[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert status["body"] == "Your order: " + tool_message["content"]

    send_and_wait(service, graph, wh.text_message("I want a refund"), 2)
    after_handoff = model.chat_requests()[3]
    assert "billing" in after_handoff["messages"][0]["content"].lower()
    assert graph.sent_texts()[1]["body"] == "Billing here: refunds take 5 days."

    send_and_wait(service, graph, wh.text_message("Thanks"), 3)
    next_turn = model.chat_requests()[4]
    assert next_turn["messages"][0] == after_handoff["messages"][0]  # still billing's instructions


def test_reset_clears_the_history_and_says_so(service, fakes):
    graph, model = fakes
    send_and_wait(service, graph, wh.text_message("My name is Ada."), 1)
    [_, reset] = send_and_wait(service, graph, wh.text_message("/reset"), 2)
    assert reset["body"].startswith("Done: I have forgotten our conversation")
    send_and_wait(service, graph, wh.text_message("What is my name?"), 3)
    assert [m["role"] for m in model.chat_requests()[-1]["messages"]] == ["system", "user"]
    assert len(model.chat_requests()) == 2  # /reset itself never reached the model
    # only a text is a command: a tap on a button titled "reset" is for the agent, and the history stays
    send_and_wait(service, graph, wh.button_reply("reset", "reset"), 4)
    assert last_user_text(model.chat_requests()[-1]) == '[The customer tapped the button "reset" (id: reset)]'
    assert [m["role"] for m in model.chat_requests()[-1]["messages"]] == ["system", "user", "assistant", "user"]


def test_turn_cost_stays_flat_as_the_conversation_grows(start_service, fakes):
    graph, model = fakes
    # A 1500-token budget is full well before turn 50, so turns 50 and 500 must cost the same.
    service = start_service(
        AK_WHATSAPP__RATE_LIMIT_PER_MINUTE="1000", AK_WORKER__THREADS="2", AK_OPENAI__HISTORY_TOKENS="1500"
    )
    for turn in range(1, 501):
        text = f"Turn {turn}: tell me something about the number {turn} please."
        service.post(wh.webhook(wh.text_message(text, timestamp=str(wh.RECENT + turn))))
    graph.wait_for_texts(500, timeout=180)
    sizes = {turn: len(json.dumps(model.chat_requests()[turn - 1])) for turn in (1, 50, 500)}
    print(f"request bytes at turn 1: {sizes[1]}, turn 50: {sizes[50]}, turn 500: {sizes[500]}")
    assert sizes[1] < sizes[50]
    assert sizes[500] <= sizes[50] * 1.2
    assert sizes[500] < 1500 * 4 * 1.2  # within the history budget, at ~4 characters a token


def test_agent_modules_named_like_the_runtime_do_not_replace_it(start_service, fakes, tmp_path):
    graph, model = fakes
    project = agent_project(
        tmp_path,
        {
            "tools.py": '''
                from agents import function_tool

                @function_tool
                def opening_hours(day: str) -> str:
                    """Opening hours on a day."""
                    return "closed" if day == "sunday" else "7-18"
            ''',
            "history.py": """
                from agents import Agent

                from .tools import opening_hours

                historian = Agent(name="historian", instructions="You tell the shop's history.", tools=[opening_hours])
            """,
        },
    )
    service = start_service(project=project, AK_WHATSAPP__AGENT="historian")
    model.reply_queue(
        [
            {"content": None, "tool_calls": [tool_call("opening_hours", {"day": "sunday"})]},
            lambda request: "We are " + request["messages"][-1]["content"] + " on Sundays.",
        ]
    )
    [reply] = send_and_wait(service, graph, wh.text_message("Open on sunday?"), 1)
    assert reply["body"] == "We are closed on Sundays."
    assert model.chat_requests()[0]["messages"][0]["content"] == "You tell the shop's history."


SDK_STYLE_BAKERY = '''
    from dataclasses import dataclass

    from pydantic import BaseModel

    from agents import Agent, Customer, RunContextWrapper, function_tool, handoff


    @dataclass
    class BakeryContext:
        customer: Customer
        loyalty_points: int


    def build_context(customer: Customer) -> BakeryContext:
        return BakeryContext(customer=customer, loyalty_points=len(customer.sender))


    class Cake(BaseModel):
        flavour: str
        price: float


    @function_tool
    async def cake_of_the_day(wrapper: RunContextWrapper[BakeryContext]) -> Cake:
        """Today's cake and its price for this customer."""
        return Cake(flavour="lemon", price=20.0 - wrapper.context.loyalty_points / 10)


    def instructions(ctx: RunContextWrapper[BakeryContext], agent: Agent[BakeryContext]) -> str:
        return f"You are {agent.name}. The customer is {ctx.context.customer.profile_name}."


    orders = Agent[BakeryContext](name="Cake orders", instructions=instructions)
    bakery = Agent[BakeryContext](
        name="Bakery",
        instructions=instructions,
        tools=[cake_of_the_day],
        handoffs=[handoff(orders, tool_description_override="Take a custom cake order.")],
    )
'''


def test_sdk_style_agents_answer_through_the_webhook_and_worker(start_service, fakes, tmp_path):
    graph, model = fakes
    service = start_service(
        project=agent_project(tmp_path, {"bakery.py": SDK_STYLE_BAKERY}), AK_WHATSAPP__AGENT="Bakery"
    )
    model.reply_queue(
        [
            {"content": None, "tool_calls": [tool_call("cake_of_the_day", {})]},
            lambda request: "Today: " + request["messages"][-1]["content"],
            {"content": None, "tool_calls": [tool_call("transfer_to_cake_orders", {})]},
            "Orders here. Which size?",
            "Noted: large.",
        ]
    )
    [cake] = send_and_wait(service, graph, wh.text_message("Cake of the day?"), 1)
    [first, second] = model.chat_requests()
    assert first["messages"][0] == {"role": "system", "content": "You are Bakery. The customer is Kerry Fisher."}
    assert {t["function"]["name"] for t in first["tools"]} == {"cake_of_the_day", "transfer_to_cake_orders"}
    assert cake["body"] == "Today: flavour='lemon' price=18.9"  # str() of the pydantic result, as the SDK sends it

    send_and_wait(service, graph, wh.text_message("I want to order a cake"), 2)
    after_handoff = model.chat_requests()[3]
    assert after_handoff["messages"][0]["content"] == "You are Cake orders. The customer is Kerry Fisher."
    assert after_handoff["messages"][-1]["content"] == '{"assistant": "Cake orders"}'
    assert graph.sent_texts()[1]["body"] == "Orders here. Which size?"

    send_and_wait(service, graph, wh.text_message("Large"), 3)
    assert model.chat_requests()[4]["messages"][0]["content"].startswith("You are Cake orders.")  # the handoff sticks


def system_prompt(request: dict) -> str:
    return request["messages"][0]["content"]


def test_a_new_entry_agent_answers_customers_who_talked_to_the_old_one(start_service, fakes):
    graph, model = fakes
    service = start_service()  # entry agent: general
    send_and_wait(service, graph, wh.text_message("Hello"), 1)
    assert "general queries" in system_prompt(model.chat_requests()[0])

    service.env["AK_WHATSAPP__AGENT"] = "shop"
    service.restart()
    send_and_wait(service, graph, wh.text_message("Where is order 1001?"), 2)
    assert "small online shop" in system_prompt(model.chat_requests()[1])


def test_a_handoff_lasts_only_while_the_entry_agent_is_the_same(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WHATSAPP__AGENT="shop")
    model.reply_queue([{"content": None, "tool_calls": [tool_call("transfer_to_billing", {})]}, "Billing here."])
    send_and_wait(service, graph, wh.text_message("A refund, please"), 1)
    service.restart()
    send_and_wait(service, graph, wh.text_message("How long does it take?"), 2)
    assert "You handle billing" in system_prompt(model.chat_requests()[2])  # same entry agent: still billing

    service.env["AK_WHATSAPP__AGENT"] = "general"
    service.restart()
    send_and_wait(service, graph, wh.text_message("Something else"), 3)
    assert "general queries" in system_prompt(model.chat_requests()[3])


def test_a_session_naming_an_agent_that_is_gone_starts_at_the_entry_agent(start_service, fakes, tmp_path):
    graph, model = fakes
    front = """
        from agents import Agent

        desk = Agent(name="desk", instructions="You are the desk.")
        front = Agent(name="front", instructions="You are the front.", handoffs=[desk])
    """
    project = agent_project(tmp_path, {"front.py": front})
    service = start_service(project=project, AK_WHATSAPP__AGENT="front")
    model.reply_queue([{"content": None, "tool_calls": [tool_call("transfer_to_desk", {})]}, "Desk here."])
    send_and_wait(service, graph, wh.text_message("Help"), 1)

    (project / "agents" / "front.py").write_text(
        'from agents import Agent\n\nfront = Agent(name="front", instructions="You are the front.")\n'
    )
    service.restart()
    [_, reply] = send_and_wait(service, graph, wh.text_message("Still there?"), 2)
    assert system_prompt(model.chat_requests()[2]) == "You are the front."
    assert reply["body"] != "" and service.health()["store"]["messages"]["failed"] == 0
