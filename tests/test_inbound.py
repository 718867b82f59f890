"""Customers known only by a username, "typing…" only before an answer, and Flows: end to end under gunicorn."""

from __future__ import annotations

import json

from tests.test_cli import flask
from tests.test_service import user_texts
from whatsapp.store.sqlite import SQLiteStore
from whatsapp.testing import webhooks as wh

BSUID = "US.13491208655302741918"
PHONE = "16315551234"


def test_a_customer_known_only_by_a_bsuid_is_answered_with_recipient(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WHATSAPP__AGENT_ACKNOWLEDGEMENT="One moment…")
    message = wh.text_message("hello from a username", sender=None, from_user_id=BSUID)
    service.post(wh.webhook(message, username="kerry"))
    acknowledgement, answer = graph.wait_for_texts(2)
    service.wait_until_idle()
    bodies = [call.json for call in graph.sends()]
    assert bodies == [
        {
            "recipient_type": "individual",
            "recipient": BSUID,
            "type": "text",
            "text": {"preview_url": False, "body": "One moment…"},
            "context": {"message_id": message["id"]},
            "messaging_product": "whatsapp",
        },
        {
            "recipient_type": "individual",
            "recipient": BSUID,
            "type": "text",
            "text": {"preview_url": False, "body": "You said: hello from a username"},
            "context": {"message_id": message["id"]},
            "messaging_product": "whatsapp",
        },
    ]
    [read] = [call.json for call in graph.calls if call.extra["kind"] == "read"]
    assert read == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message["id"],
        "typing_indicator": {"type": "text"},
    }


def test_the_apology_to_a_bsuid_customer_uses_recipient(start_service, fakes):
    graph, model = fakes
    service = start_service(AK_WORKER__MAX_ATTEMPTS="1")
    model.always_fail(400)
    service.post(wh.webhook(wh.text_message("are you there?", sender=None, from_user_id=BSUID)))
    [apology] = graph.wait_for_texts(1)
    assert apology["body"].startswith("Sorry")
    [call] = graph.sends()
    assert call.json["recipient"] == BSUID and "to" not in call.json


def test_a_webhook_with_both_ids_is_answered_by_number_and_keeps_both_in_the_session(service, fakes, tmp_path):
    graph, model = fakes
    message = wh.text_message("hi", sender=PHONE, from_user_id=BSUID)
    service.post(wh.webhook(message, username="kerry"))
    graph.wait_for_texts(1)
    service.wait_until_idle()
    [call] = graph.sends()
    assert call.json["to"] == PHONE and "recipient" not in call.json
    session = SQLiteStore(tmp_path / "whatsapp.db").session(PHONE)
    assert session == {"agent": "general", "entry": "general", "wa_id": PHONE, "user_id": BSUID, "username": "kerry"}


def test_cli_send_to_a_bsuid_uses_recipient(tmp_path, fakes):
    graph, model = fakes
    from whatsapp.testing.service import base_environment

    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    result = flask(["send", BSUID, "Your order shipped"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    [call] = graph.sends()
    assert call.json == {
        "recipient_type": "individual",
        "recipient": BSUID,
        "type": "text",
        "text": {"preview_url": False, "body": "Your order shipped"},
        "messaging_product": "whatsapp",
    }


def test_only_messages_that_get_an_answer_show_typing(service, fakes):
    graph, model = fakes
    first = wh.text_message("first", timestamp=str(wh.RECENT + 0))
    call_permission = wh.message(
        "interactive",
        {
            "type": "call_permission_reply",
            "call_permission_reply": {"response": "accept", "is_permanent": False, "response_source": "user_action"},
        },
        timestamp=str(wh.RECENT + 6),
    )
    quiet = [
        wh.reaction_message(first["id"], "👍", timestamp=str(wh.RECENT + 2)),
        wh.revoke_message(first["id"], timestamp=str(wh.RECENT + 3)),
        wh.system_message("User changed number", timestamp=str(wh.RECENT + 4)),
        wh.reaction_message(first["id"], None, timestamp=str(wh.RECENT + 5)),
        call_permission,
    ]
    last = wh.text_message("last", timestamp=str(wh.RECENT + 9))
    for message in (first, *quiet, last):
        assert service.post(wh.webhook(message)).status_code == 200
    graph.wait_for_texts(2)
    service.wait_until_idle()
    typing = {read["message_id"]: read["typing"] for read in graph.reads()}
    assert typing[first["id"]] is True and typing[last["id"]] is True
    assert {typing.get(message["id"], False) for message in quiet} == {False}
    assert [text["body"] for text in graph.sent_texts()] == ["You said: first", "You said: last"]


def test_a_flows_answers_reach_the_agent_and_stay_in_history(service, fakes):
    graph, model = fakes
    answers = {"flow_token": "f-1", "name": "Ada", "size": "Large", "extras": ["candles", "card"], "guests": 12}
    service.post(wh.webhook(wh.nfm_reply(json.dumps(answers), timestamp=str(wh.RECENT + 0))))
    graph.wait_for_texts(1)
    service.post(wh.webhook(wh.text_message("what size did I pick?", timestamp=str(wh.RECENT + 10))))
    graph.wait_for_texts(2)
    form = (
        "[The customer completed a form and answered:]\n"
        '- name: Ada\n- size: Large\n- extras: ["candles", "card"]\n- guests: 12'
    )
    first, second = model.chat_requests()
    assert user_texts(first) == [form]
    assert user_texts(second) == [form, "what size did I pick?"]
