"""``log.format: json``: one JSON object per line, naming the message by its tag, with its state and timings."""

from __future__ import annotations

import json

import pytest

from whatsapp import ConfigError
from whatsapp.config import load_settings
from whatsapp.privacy import tag
from whatsapp.testing import webhooks as wh

CUSTOMER = "16315551234"


def json_lines(logs: str) -> list[dict]:
    """Our lines (gunicorn's own, from its master, are text); every one of ours must parse."""
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


def test_json_logs_follow_a_message_through_its_life_with_tag_state_and_timings(start_service, fakes):
    graph, model = fakes
    model.reply_with("Nine to five.")
    service = start_service(workers=1, threads=2, AK_LOG__FORMAT="json")
    message = wh.text_message("When do you open?")
    assert service.post(wh.webhook(message)).status_code == 200
    assert service.post(wh.webhook(message)).status_code == 200  # a duplicate delivery
    graph.wait_for_texts(1)
    service.wait_until_idle()

    lines = json_lines(service.logs())
    assert lines, service.logs()[-2000:]
    ours = [line for line in lines if line.get("tag") == tag(message["id"])]
    [duplicate] = [line for line in ours if line.get("duplicate")]
    assert duplicate["state"] == "received" and "duplicate delivery ignored" in duplicate["message"]
    states = [line["state"] for line in ours if line is not duplicate]
    assert [state for n, state in enumerate(states) if state not in states[:n]] == [
        "received",
        "claimed",
        "answered",
        "done",
    ]
    done = ours[-1]
    assert done["logger"] == "whatsapp.worker" and done["level"] == "INFO" and "done in" in done["message"]
    assert done["attempt"] == 1 and done["holder"].count(":") == 2
    assert set(done["seconds"]) >= {"since_received", "model", "sends", "attempt"}
    assert 0 < done["seconds"]["model"] <= done["seconds"]["attempt"] < 10
    assert done["time"].endswith("Z")
    everything = "\n".join(json.dumps(line) for line in lines)
    assert message["id"] not in everything and CUSTOMER not in everything  # the id holds the customer's number


def test_text_stays_the_default_and_an_unknown_format_is_refused():
    assert load_settings({}, dotenv_path=None).log.format == "text"
    with pytest.raises(ConfigError, match="log.format must be text or json, not 'xml'"):
        load_settings({"AK_LOG__FORMAT": "xml"}, dotenv_path=None)
