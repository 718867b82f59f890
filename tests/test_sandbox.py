"""Sandbox mode: no Meta account, no model key, and the real webhook path driven by the simulator's API."""

from __future__ import annotations

import base64
import json
import multiprocessing
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing

import pytest
import requests

from tests.sandbox import Simulator, new_customer, png, start_sandbox
from whatsapp import GraphAPIError, MediaTooLarge, create_app
from whatsapp.cloud_api.shapes import new_media_id
from whatsapp.config import Settings, StoreSettings, WhatsAppSettings
from whatsapp.extension import current_service
from whatsapp.sandbox import GRAPH_URL, configure, current_sandbox
from whatsapp.sandbox.payloads import DISPLAY_PHONE_NUMBER, PHONE_NUMBER_ID
from whatsapp.sandbox.records import StoredMedia
from whatsapp.testing.openai_server import FakeOpenAI
from whatsapp.testing.service import ROOT, Service

BUTTONS = {
    "type": "interactive",
    "interactive": {
        "type": "button",
        "body": {"text": "Shall I book the table for two?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "book-yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "book-no", "title": "No thanks"}},
            ]
        },
    },
}


@pytest.fixture
def sandbox(tmp_path) -> Iterator[Service]:
    """gunicorn with no AK_* and no OPENAI_*: the offline model answers."""
    service = start_sandbox(tmp_path)
    yield service
    service.stop()


@pytest.fixture
def sandbox_with_model(tmp_path, model: FakeOpenAI) -> Iterator[tuple[Service, FakeOpenAI]]:
    """No AK_* at all, but the model is the local OpenAI fake (to script and hold its answers)."""
    model.reset()
    service = start_sandbox(tmp_path, OPENAI_BASE_URL=model.url + "/v1", OPENAI_API_KEY="sk-test")
    yield service, model
    model.release()
    service.stop()


@pytest.fixture
def simulator() -> Iterator[Callable[..., Simulator]]:
    """``simulator(service, name=...)``: a fresh customer, forgotten again after the test."""
    made: list[Simulator] = []

    def make(service: Service, name: str = "Test Customer") -> Simulator:
        made.append(Simulator(service, new_customer(), name=name))
        return made[-1]

    yield make
    for customer in made:
        customer.remove()


def stored_secrets(service: Service) -> dict[str, str]:
    with sqlite3.connect(service.workdir / "instance" / "sandbox.db") as db:
        rows = db.execute("SELECT name, value FROM shared WHERE name IN ('access_token', 'app_secret', 'verify_token')")
        return dict(rows.fetchall())


# starting with nothing ------------------------------------------------------------------------------------------


def test_empty_environment_starts_in_sandbox_mode_and_serves_the_simulator(sandbox):
    health = sandbox.health()
    assert health["mode"] == "sandbox"
    assert health["signature_check"] == "on"
    page = sandbox.get("/simulator")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'id="composer"' in page.text
    assert sandbox.get("/sandbox/static/simulator.js").status_code == 200
    logs = sandbox.logs()
    line = f"sandbox mode: no access token set; open http://localhost:{sandbox.port}/simulator"
    assert logs.count(line) == 1, logs  # one line for the run, not one per worker
    secrets = stored_secrets(sandbox)
    assert set(secrets) == {"access_token", "app_secret", "verify_token"}
    for name, value in secrets.items():
        assert value not in logs, f"the generated {name} was logged"


def test_the_sandbox_keeps_its_data_in_the_instance_folder_where_it_starts(sandbox, simulator):
    """A test (or a second copy) started in another folder never shows up in the developer's own simulator."""
    customer = simulator(sandbox)
    customer.say("hello")
    customer.wait_for_replies(1)
    assert {"sandbox.db", "whatsapp.db"} <= {path.name for path in (sandbox.workdir / "instance").iterdir()}
    developers = ROOT / "instance" / "sandbox.db"
    if developers.exists():
        with closing(sqlite3.connect(f"file:{developers}?mode=ro", uri=True)) as db:
            found = db.execute("SELECT count(*) FROM customers WHERE wa_id = ?", (customer.customer,)).fetchone()
        assert found == (0,)


def test_text_from_the_simulator_is_answered_through_a_signed_webhook_by_the_offline_model(sandbox, simulator):
    customer = simulator(sandbox, name="Kerry Fisher")
    wamid = customer.say("When do you open on Sunday?")
    [reply] = customer.wait_for_replies(1)
    [inbound] = customer.events("inbound")
    assert inbound["wamid"] == wamid
    value = inbound["webhook"]["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": PHONE_NUMBER_ID}
    assert value["contacts"] == [{"profile": {"name": "Kerry Fisher"}, "wa_id": customer.customer}]
    assert value["messages"][0]["text"] == {"body": "When do you open on Sunday?"}
    [ack] = customer.events("ack")
    assert ack["status"] == 200 and ack["signed"] is True and ack["via"] == "in-process"
    assert "signature" not in ack  # no visitor ever obtains a signature
    [read] = customer.events("read")
    assert read["request"]["message_id"] == wamid and read["typing"] is True
    assert reply["request"]["to"] == customer.customer
    assert reply["request"]["context"] == {"message_id": wamid}
    assert "When do you open on Sunday?" in reply["request"]["text"]["body"]  # the offline model reflects it
    assert reply["response"]["messages"][0]["id"] == reply["wamid"]
    # The signature is really checked: the same webhook without it is refused.
    unsigned = requests.post(sandbox.url + "/whatsapp/webhook", json=inbound["webhook"], timeout=10)
    assert unsigned.status_code == 401


def test_typing_indicator_shows_until_the_reply_is_sent(sandbox_with_model, simulator):
    service, model = sandbox_with_model
    customer = simulator(service)
    model.reply_with("Until ten.")
    model.hold()
    customer.say("Is the kitchen open?")
    customer.wait("typing", lambda c: c["typing"])
    assert not [e for e in customer.events("send")]
    model.release()
    [reply] = customer.wait_for_replies(1)
    assert reply["request"]["text"]["body"] == "Until ten."
    assert customer.conversation()["typing"] is False


def test_image_upload_is_looked_up_and_downloaded_by_the_service(sandbox_with_model, simulator):
    service, model = sandbox_with_model
    customer = simulator(service)
    image = png()
    wamid = customer.upload(image, "receipt.png", "image/png", caption="my receipt")
    customer.wait_for_replies(1)
    [inbound] = customer.events("inbound")
    sent = inbound["message"]
    assert inbound["wamid"] == wamid and sent["type"] == "image"
    assert sent["image"]["caption"] == "my receipt" and sent["image"]["mime_type"] == "image/png"
    media_id = sent["image"]["id"]
    [lookup] = customer.events("media_lookup")
    assert (lookup["status"], lookup["media_id"]) == (200, media_id)
    assert lookup["response"]["file_size"] == len(image) and lookup["response"]["mime_type"] == "image/png"
    [download] = customer.events("media_download")
    assert (download["status"], download["media_id"]) == (200, media_id)
    [request] = model.chat_requests()
    image_part = next(p for p in request["messages"][-1]["content"] if p["type"] == "image_url")
    assert image_part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image).decode()
    assert service.get(f"/sandbox/media/{media_id}").content == image


def test_button_tap_becomes_a_button_reply_webhook_quoting_the_interactive_message(sandbox_with_model, simulator):
    service, model = sandbox_with_model
    customer = simulator(service)
    sent = customer.send_as_business(BUTTONS)
    assert sent.status_code == 200, sent.text
    interactive_id = sent.json()["id"]
    customer.act(type="button_reply", id="book-yes", title="Yes", reply_to=interactive_id)
    replies = customer.wait_for_replies(2)
    [inbound] = customer.events("inbound")
    assert inbound["message"]["type"] == "interactive"
    assert inbound["message"]["interactive"] == {
        "type": "button_reply",
        "button_reply": {"id": "book-yes", "title": "Yes"},
    }
    assert inbound["message"]["context"]["id"] == interactive_id
    assert replies[-1]["request"]["text"]["body"] == 'You said: [The customer tapped the button "Yes" (id: book-yes)]'
    assert (
        model.chat_requests()[-1]["messages"][-1]["content"] == '[The customer tapped the button "Yes" (id: book-yes)]'
    )


def test_fake_graph_refuses_like_meta(sandbox, simulator):
    customer = simulator(sandbox)
    too_many = {
        **BUTTONS,
        "interactive": {
            **BUTTONS["interactive"],
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": str(n), "title": f"Option {n}"}} for n in range(4)]
            },
        },
    }
    refused = customer.send_as_business(too_many)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 131009
    too_long = customer.send_as_business({"type": "text", "text": {"body": "x" * 4097}})
    assert too_long.json()["error"]["code"] == 100
    [first, second] = customer.events("send")
    assert first["status"] == second["status"] == 400
    no_token = sandbox.http.get(sandbox.url + "/sandbox/graph/v24.0/100000000000001", timeout=10)
    error = no_token.json()["error"]
    assert no_token.status_code == 401
    assert (error["code"], error["type"]) == (190, "OAuthException") and error["fbtrace_id"].startswith("A")


# in-process ----------------------------------------------------------------------------------------------------


def _configure_in(instance: str) -> tuple[str, str, str, str, str]:
    settings = configure(Settings(), instance)
    whatsapp = settings.whatsapp
    return settings.mode, whatsapp.graph_url, whatsapp.access_token, whatsapp.app_secret, whatsapp.verify_token


def test_worker_processes_agree_on_the_generated_secrets(tmp_path):
    instance = str(tmp_path / "instance")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_configure_in, [(instance,)] * 8)
    assert len(set(results)) == 1
    mode, graph_url, access_token, app_secret, verify_token = results[0]
    assert (mode, graph_url) == ("sandbox", GRAPH_URL)
    assert len(app_secret) == 64 and access_token and verify_token


def test_graph_client_is_answered_in_process_including_capped_downloads(tmp_path):
    settings = Settings(store=StoreSettings(url=f"sqlite:///{tmp_path / 'w.db'}"))
    app = create_app(settings, serve=False)
    assert current_service(app).settings.mode == "sandbox"
    sandbox = current_sandbox(app)
    client = sandbox.client
    assert client.phone_number()["verified_name"] == "Sandbox Business"
    with pytest.raises(GraphAPIError) as missing:
        client.media_info("404404404")
    assert missing.value.code == 100 and missing.value.status == 400
    media = StoredMedia(new_media_id(), new_customer(), "application/pdf", "a.pdf", "00", b"%PDF" * 100)
    sandbox.records.put_media(media)
    assert sandbox.records.media(media.id) == media
    info = client.media_info(media.id)
    assert info.url.startswith(GRAPH_URL) and info.file_size == 400
    assert client.download_media(info.url, max_bytes=1000) == media.data
    with pytest.raises(MediaTooLarge):
        client.download_media(info.url, max_bytes=100)
    tampered = info.url.replace("expires=", "expires=1")  # a URL that was not handed out is refused like an old one
    with pytest.raises(GraphAPIError) as gone:
        client.download_media(tampered, max_bytes=1000)
    assert gone.value.status == 404
    sandbox.records.remove_customer(media.customer)
    uploaded = client.upload_media("image", png(), "image/png", "pixel.png")  # for a reply by media id
    assert sandbox.records.media(uploaded).data == png()


def test_with_credentials_none_of_the_sandbox_is_mounted(tmp_path):
    whatsapp = WhatsAppSettings(access_token="real-token", verify_token="v", phone_number_id="123", app_secret="s")
    settings = Settings(whatsapp=whatsapp, store=StoreSettings(url=f"sqlite:///{tmp_path / 'w.db'}"))
    app = create_app(settings, serve=False)
    web = app.test_client()
    assert current_service(app).settings.mode == "live"
    assert web.get("/simulator").status_code == 404
    assert web.get("/sandbox/graph/v24.0/123").status_code == 404
    assert web.get("/sandbox/api/customers").status_code == 404
    assert "sandbox" not in app.extensions


@pytest.fixture
def shop_sandbox(tmp_path) -> Iterator[Service]:
    service = start_sandbox(tmp_path, AK_WHATSAPP__AGENT="shop")
    yield service
    service.stop()


def test_each_model_request_of_a_message_is_kept_for_the_inspector(shop_sandbox, simulator):
    """The shop agent on the offline model: a tool call with its arguments, its result, and a handoff."""
    customer = simulator(shop_sandbox)
    first = customer.say("order status 1001")
    customer.wait_for_replies(1)
    second = customer.say("a question about billing")
    customer.wait_for_replies(2)
    requests_of = {wamid: [e for e in customer.events("model") if e["wamid"] == wamid] for wamid in (first, second)}
    asked, told = requests_of[first]
    assert asked["tools"] == ["order_status", "transfer_to_billing"]
    [call] = asked["answer"]["tool_calls"]
    assert (call["name"], json.loads(call["arguments"])) == ("order_status", {"order_id": "1001"})
    assert told["tool_results"] == [{"tool_call_id": call["id"], "content": "Order 1001 is being packed."}]
    assert told["answer"]["content"].startswith("The order_status tool says: Order 1001 is being packed.")
    handing, billing = requests_of[second]
    assert [c["name"] for c in handing["answer"]["tool_calls"]] == ["transfer_to_billing"]
    assert billing["tools"] == ["invoice_total", "refund_policy", "transfer_to_shop"]


def test_the_offline_model_shows_buttons_and_a_menu_and_a_tapped_row_comes_back(sandbox, simulator):
    customer = simulator(sandbox)
    customer.say("show me buttons")
    text, buttons = customer.wait_for_replies(2)
    assert text["request"]["type"] == "text"
    assert buttons["request"]["interactive"]["type"] == "button"
    assert [b["reply"]["title"] for b in buttons["request"]["interactive"]["action"]["buttons"]] == [
        "Small",
        "Medium",
        "Large",
    ]
    customer.say("menu")
    *_, menu = customer.wait_for_replies(4)
    rows = menu["request"]["interactive"]["action"]["sections"][0]["rows"]
    assert [row["id"] for row in rows] == ["hours", "order", "human"]
    customer.act(type="list_reply", id="hours", title="Opening hours", reply_to=menu["wamid"])
    *_, answer = customer.wait_for_replies(5)
    assert 'chose "Opening hours"' in answer["request"]["text"]["body"]
    [*_, tap] = customer.events("inbound")
    assert tap["message"]["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "hours", "title": "Opening hours"},
    }


def test_the_sandbox_graph_takes_every_kind_of_reply(sandbox, simulator):
    from tests.test_replies import EXPECTED

    customer = simulator(sandbox)
    for _, message in EXPECTED:
        sent = customer.send_as_business(message)
        assert sent.status_code == 200, (message["type"], sent.text)
    assert len(customer.wait_for_replies(len(EXPECTED))) == len(EXPECTED)


def test_a_username_customer_is_sent_as_meta_sends_one_and_answered_with_recipient(sandbox_with_model):
    """No phone number at all: ``from_user_id`` and the username reach the agent, the answer goes to ``recipient``."""
    service, model = sandbox_with_model
    refused = service.http.post(
        service.url + "/sandbox/api/customers", json={"kind": "username", "username": "no spaces"}, timeout=10
    )
    assert refused.status_code == 400 and "username" in refused.json()["error"]
    customer = Simulator.with_username(service, "@Kerry.Fisher", name="Kerry Fisher")
    try:
        user_id = customer.customer
        assert re.fullmatch(r"US\.\d{20}", user_id)
        listed = service.get("/sandbox/api/customers").json()["customers"]
        assert {"wa_id": user_id, "name": "Kerry Fisher", "username": "kerry.fisher"} in [
            {k: c[k] for k in ("wa_id", "name", "username")} for c in listed
        ]
        model.reply_with("We deliver on Fridays.")
        wamid = customer.say("Do you deliver?")
        [reply] = customer.wait_for_replies(1)

        [inbound] = customer.events("inbound")
        value = inbound["webhook"]["entry"][0]["changes"][0]["value"]
        [message] = value["messages"]
        assert "from" not in message and message["from_user_id"] == user_id and message["id"] == wamid
        assert value["contacts"] == [
            {"profile": {"name": "Kerry Fisher", "username": "kerry.fisher"}, "user_id": user_id}
        ]
        [ack] = customer.events("ack")
        assert ack["status"] == 200
        assert model.chat_requests()[-1]["messages"][-1]["content"] == "Do you deliver?"

        assert reply["request"]["recipient"] == user_id and "to" not in reply["request"]
        assert reply["request"]["text"]["body"] == "We deliver on Fridays."
        assert reply["request"]["context"] == {"message_id": wamid}
        assert reply["response"]["contacts"] == [{"input": user_id, "user_id": user_id}]
        [read] = customer.events("read")
        assert read["request"]["message_id"] == wamid

        # The page reports the answer read: the status webhook names the customer by user id, and is taken.
        seen = service.http.post(
            service.url + "/sandbox/api/seen", json={"customer": user_id, "ids": [reply["wamid"]]}, timeout=10
        )
        assert [s["status"] for s in seen.json()["statuses"]] == ["delivered", "read"]
        [status_ack] = customer.wait(
            "the status webhook's answer", lambda c: [e for e in c["events"] if e["kind"] == "status_ack"]
        )
        assert status_ack["status"] == 200 and status_ack["statuses"] == [reply["wamid"]] * 2

        # The fake Graph refuses a user id in "to", as Meta does.
        wrong = service.http.post(
            service.url + "/sandbox/api/send", json={"to": user_id, "type": "text", "text": {"body": "hi"}}, timeout=10
        )
        assert wrong.status_code == 400 and "goes in recipient" in wrong.json()["error"]["details"]
    finally:
        customer.remove()
    assert service.http.delete(f"{service.url}/sandbox/api/customers/{user_id}", timeout=10).status_code == 404
