"""Rich replies end to end: the real webhook and worker under gunicorn, every kind of reply at the fake Graph API,
bodies exactly as Meta documents them, sent exactly once across a failed attempt."""

from __future__ import annotations

import textwrap

import pytest

from tests.agent_modules import agent_project
from tests.reliability.conftest import inbox_row, reply_rows
from tests.test_cli import flask
from tests.test_replies import EXPECTED
from whatsapp.replies import Buttons
from whatsapp.testing import webhooks as wh
from whatsapp.testing.openai_server import tool_call
from whatsapp.testing.service import base_environment

CUSTOMER = "16315551234"

SHOWCASE = textwrap.dedent(
    """
    from tests.test_replies import EXPECTED
    from whatsapp import AgentWhatsAppRequestHandler
    from whatsapp.replies import Reaction


    class Showcase(AgentWhatsAppRequestHandler):
        '''Answers every message with one reply of each kind, then a reaction to the customer's message.'''

        def _handle_message(self, message, value):
            customer = message.get("from") or message.get("from_user_id")
            for reply, _ in EXPECTED:
                self.send_reply(customer, reply, message["id"])
            self.send_reply(customer, Reaction("👍"), message["id"])
    """
)


def start_showcase(start_service, tmp_path, **environment):
    (tmp_path / "showcase.py").write_text(SHOWCASE)
    return start_service(AK_WHATSAPP__HANDLER="showcase:Showcase", PYTHONPATH=str(tmp_path), **environment)


def expected_bodies(message_id: str, to: dict[str, str]) -> list[dict]:
    bodies = [
        {"recipient_type": "individual", **to, **expected, "context": {"message_id": message_id}}
        for _, expected in EXPECTED
    ]
    reaction = {"type": "reaction", "reaction": {"message_id": message_id, "emoji": "👍"}}
    bodies.append({"recipient_type": "individual", **to, **reaction})  # a reaction points at the message itself
    return [{**body, "messaging_product": "whatsapp"} for body in bodies]


def test_every_kind_of_reply_reaches_graph_exactly_as_documented(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_showcase(start_service, tmp_path)
    message = wh.text_message("show me everything")
    service.post(wh.webhook(message))
    service.wait_until_idle()
    assert graph.failed_sends() == []
    assert [call.json for call in graph.sends()] == expected_bodies(message["id"], {"to": CUSTOMER})
    # the reply log keeps each part's message object, and what a person reads of it
    rows = reply_rows(service, message["id"])
    assert len(rows) == len(EXPECTED) + 1 and all(row["wamid"] for row in rows)
    assert rows[0]["body"] == "Which size?\n[Small] | [Large]"


def test_a_customer_known_by_a_bsuid_gets_rich_replies_with_recipient(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_showcase(start_service, tmp_path)
    bsuid = "US.13491208655302741918"
    message = wh.text_message("show me", sender=None, from_user_id=bsuid)
    service.post(wh.webhook(message))
    service.wait_until_idle()
    assert [call.json for call in graph.sends()] == expected_bodies(message["id"], {"recipient": bsuid})


def test_a_failed_attempt_resumes_with_only_the_parts_not_yet_sent(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_showcase(start_service, tmp_path, AK_WORKER__RETRY_DELAY="0.2")
    graph.fail_next(1, status=400, code=131000, after=5)  # the sixth send fails with a transient error
    message = wh.text_message("show me everything")
    service.post(wh.webhook(message))
    service.wait_until_idle()
    assert len(graph.failed_sends()) == 1
    assert [call.json for call in graph.sends()] == expected_bodies(message["id"], {"to": CUSTOMER})
    assert inbox_row(service, message["id"])["attempts"] == 2


def test_a_template_is_sent_from_the_command_line(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    result = flask(["template", "+16315551234", "order_shipped", "Ada", "#1001", "--language", "en_GB"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sent template order_shipped to +16315551234" in result.stdout
    [call] = graph.sends()
    assert call.json == {
        "recipient_type": "individual",
        "to": "16315551234",
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "en_GB"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "#1001"}]}
            ],
        },
        "messaging_product": "whatsapp",
    }
    bad = flask(["template", "16315551234", "Order Shipped"], env, tmp_path)
    assert bad.returncode == 2 and "Template name must be lower-case" in bad.stderr
    assert len(graph.sends()) == 1


def test_outside_the_24_hour_window_the_failure_says_only_a_template_can_be_sent(start_service, fakes):
    graph, model = fakes
    service = start_service()
    graph.fail_next(1, status=400, code=131047)
    message = wh.text_message("hello again after two days")
    service.post(wh.webhook(message))
    service.wait_until_idle()
    row = inbox_row(service, message["id"])
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "131047" in row["reason"]
    assert "only an approved template can be sent" in row["reason"]
    assert graph.sends() == []  # no retry, no apology Meta would refuse too


def test_an_uploaded_file_is_sent_by_its_media_id(graph):
    from whatsapp import ReplyError
    from whatsapp.client import GraphClient
    from whatsapp.replies import Image

    graph.reset()
    png = b"\x89PNG\r\n\x1a\nfake-png"
    with GraphClient(
        access_token=graph.access_token,
        phone_number_id=graph.phone_number_id,
        graph_url=graph.url,
        media_hosts=("127.0.0.1",),
    ) as client:
        media_id = client.upload_media("image", png, "image/png", "cake.png")
        client.send_message(CUSTOMER, Image(id=media_id, caption="Our cake").message())
        with pytest.raises(ReplyError, match="unsupported media type for image: image/gif"):
            client.upload_media("image", b"GIF89a", "image/gif")
        info = client.media_info(media_id)
        assert client.download_media(info.url, 1000) == png
    [upload] = graph.uploads()
    assert upload.extra["mime_type"] == "image/png" and upload.status == 200
    [send] = graph.sends()
    assert send.json["image"] == {"id": media_id, "caption": "Our cake"}


# from an agent module ---------------------------------------------------------------------------------------------

BAKERY = '''
    from agents import Agent, RunContextWrapper, function_tool
    from whatsapp.replies import Buttons, Image, Reaction


    @function_tool
    def ask_size(question: str) -> Buttons:
        """Ask the customer which cake size they want, with buttons."""
        return Buttons(question, ["Small", "Large"])


    @function_tool
    def show_cake(ctx: RunContextWrapper, name: str) -> str:
        """Show a photo of a cake."""
        ctx.reply(Reaction("🎂"))
        ctx.reply(Image(link=f"https://example.com/{name}.jpg", caption=name.title()))
        return f"A photo of the {name} cake is on its way."


    bakery = Agent(name="bakery", instructions="You sell cakes.", tools=[ask_size, show_cake])
'''


def test_an_agents_tools_answer_with_buttons_and_a_photo_sent_exactly_once(start_service, tmp_path, fakes):
    graph, model = fakes
    project = agent_project(tmp_path, {"bakery.py": BAKERY})
    service = start_service(project=project, AK_WHATSAPP__AGENT="bakery", AK_WORKER__RETRY_DELAY="0.2")
    model.reply_queue(
        [
            {"content": None, "tool_calls": [tool_call("show_cake", {"name": "lemon"})]},
            {"content": None, "tool_calls": [tool_call("ask_size", {"question": "Which size?"})]},
            "Here is our lemon cake.",
        ]
    )
    graph.fail_next(1, status=400, code=131000, after=2)  # the photo fails once: the retry sends only it and after
    message = wh.text_message("Show me the lemon cake")
    service.post(wh.webhook(message))
    service.wait_until_idle()
    reaction = {"type": "reaction", "reaction": {"message_id": message["id"], "emoji": "🎂"}}
    image = {"type": "image", "image": {"link": "https://example.com/lemon.jpg", "caption": "Lemon"}}
    text = {"type": "text", "text": {"preview_url": False, "body": "Here is our lemon cake."}}
    buttons = Buttons("Which size?", ["Small", "Large"]).message()
    common = {"recipient_type": "individual", "to": CUSTOMER}
    thread = {"context": {"message_id": message["id"]}}
    assert [call.json for call in graph.sends()] == [
        {**common, **reaction, "messaging_product": "whatsapp"},
        {**common, **text, **thread, "messaging_product": "whatsapp"},
        {**common, **image, "messaging_product": "whatsapp"},
        {**common, **buttons, "messaging_product": "whatsapp"},
    ]
    assert len(graph.failed_sends()) == 1
    assert len(model.chat_requests()) == 3  # the retry sent the stored answer without asking the model again
    # what the model was told of the buttons stays in history for the next turn
    model.reply_with("Large it is.")
    service.post(wh.webhook(wh.button_reply("Large", "Large", wamid=None)))
    service.wait_until_idle()
    last = model.chat_requests()[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "tool"] == [
        "A photo of the lemon cake is on its way.",
        "Sent to the customer: Which size?\n[Small] | [Large]",
    ]
    assert last[-1] == {"role": "user", "content": '[The customer tapped the button "Large" (id: Large)]'}


def test_a_reply_breaking_metas_limits_is_an_error_the_model_reads_not_a_graph_400(start_service, tmp_path, fakes):
    graph, model = fakes
    project = agent_project(tmp_path, {"bakery.py": BAKERY})
    service = start_service(project=project, AK_WHATSAPP__AGENT="bakery")
    too_long = "Which size would you like for your cake? " * 30
    model.reply_queue(
        [
            {"content": None, "tool_calls": [tool_call("ask_size", {"question": too_long})]},
            "Which size, small or large?",
        ]
    )
    service.post(wh.webhook(wh.text_message("A cake please")))
    service.wait_until_idle()
    tool_result = model.chat_requests()[1]["messages"][-1]
    assert tool_result["role"] == "tool" and "Meta's limit is 1024" in tool_result["content"]
    assert graph.failed_sends() == []
    assert [text["body"] for text in graph.sent_texts()] == ["Which size, small or large?"]
