"""Rich replies end to end: the real webhook and worker under gunicorn, every kind of reply at the fake Graph API,
bodies exactly as Meta documents them, sent exactly once across a failed attempt."""

from __future__ import annotations

import textwrap

import pytest

from tests.fakes import webhooks as wh
from tests.reliability.conftest import inbox_row, reply_rows
from tests.service import base_environment
from tests.test_cli import flask
from tests.test_replies import EXPECTED

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
    from whatsapp.client import GraphClient
    from whatsapp.replies import Image, ReplyError

    graph.reset()
    png = b"\x89PNG\r\n\x1a\nfake-png"
    with GraphClient(
        access_token=graph.access_token, phone_number_id=graph.phone_number_id, graph_url=graph.url
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
