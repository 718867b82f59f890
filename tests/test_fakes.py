"""The fakes must be faithful to the client libraries, or every end-to-end test built on them proves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import openai
import pytest
import requests

from whatsapp.testing.graph import FakeGraph
from whatsapp.testing.openai_server import Fail, FakeOpenAI, tool_call
from whatsapp.testing.service import ROOT

TOKEN = "test-token"
PHONE_ID = "106540352242922"
CUSTOMER = "16315551234"


@pytest.fixture(scope="module")
def graph_server() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


@pytest.fixture
def graph(graph_server: FakeGraph) -> FakeGraph:
    graph_server.reset()
    return graph_server


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> FakeOpenAI:
    openai_server.reset()
    return openai_server


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_openai.url + "/v1", api_key="x", max_retries=0, timeout=5)


def ask(client: openai.OpenAI, text: str = "hi") -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])


def send_text(graph: FakeGraph, body: str, to: str = CUSTOMER, token: str = TOKEN, **extra) -> requests.Response:
    payload = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": body},
        **extra,
    }
    return requests.post(
        f"{graph.url}/v24.0/{PHONE_ID}/messages", json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


# -- FakeOpenAI through the real SDK ---------------------------------------------------------------------------


def test_sdk_reads_scripted_reply_and_requested_model(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_with("Hello from the fake")

    completion = client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}])

    assert completion.choices[0].message.content == "Hello from the fake"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4.1-mini"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert fake_openai.chat_requests()[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert fake_openai.requests[0].headers["authorization"] == "Bearer x"


def test_default_answer_echoes_last_user_text_with_image_parts(client: openai.OpenAI) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
    ]
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "You said: first"},
        {"role": "user", "content": content},
    ]

    completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    assert completion.choices[0].message.content == "You said: what is this? [image]"


def test_tool_call_answer_parses_into_sdk_tool_calls(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_queue([{"tool_calls": [tool_call("get_weather", {"city": "Paris"})]}, "It is sunny"])

    first = ask(client, "weather in Paris?")
    second = ask(client, "and now?")
    third = ask(client, "queue is empty")

    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert second.choices[0].message.content == "It is sunny"
    assert third.choices[0].message.content == "You said: queue is empty"


def test_callable_reply_sees_the_request_body(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_with(lambda body: f"{len(body['messages'])} message(s), model {body['model']}")

    assert ask(client).choices[0].message.content == "1 message(s), model gpt-4o-mini"


def test_fail_500_raises_internal_server_error_with_openai_envelope(
    client: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_queue([Fail(status=500), Fail(status=429, retry_after=2)])

    with pytest.raises(openai.InternalServerError) as server_error:
        ask(client)
    with pytest.raises(openai.RateLimitError) as rate_limited:
        ask(client)

    assert server_error.value.status_code == 500
    assert server_error.value.type == "server_error"
    assert rate_limited.value.code == "rate_limit_exceeded"
    assert rate_limited.value.response.headers["retry-after"] == "2"
    assert ask(client).choices[0].message.content == "You said: hi"


def test_always_fail_and_disconnect_reach_the_sdk_as_errors(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.always_fail(503)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(client)

    fake_openai.reply_with(Fail(disconnect=True))
    with pytest.raises(openai.APIConnectionError):
        ask(client)


def test_held_request_answers_only_after_release(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.hold()
    answers: list[str] = []
    done = threading.Event()

    def call() -> None:
        answers.append(ask(client, "held").choices[0].message.content)
        done.set()

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    fake_openai.wait_for_requests(1, timeout=2)

    assert not done.wait(0.2), "the held request was answered before release()"
    fake_openai.release()
    worker.join(timeout=2)
    assert answers == ["You said: held"]


def test_hold_first_holds_only_the_next_request(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.hold_first()
    answers: list[str] = []
    worker = threading.Thread(target=lambda: answers.append(ask(client, "first").choices[0].message.content))
    worker.start()
    fake_openai.wait_for_requests(1, timeout=2)

    assert ask(client, "second").choices[0].message.content == "You said: second"
    assert answers == []
    fake_openai.release()
    worker.join(timeout=2)
    assert answers == ["You said: first"]


def test_delay_slows_every_answer(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.delay(0.2)

    started = time.monotonic()
    ask(client)

    assert time.monotonic() - started >= 0.2


def test_wait_for_requests_reports_what_arrived_on_timeout(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    ask(client, "only one")

    with pytest.raises(AssertionError, match=r"expected 2 chat request\(s\) within 0.05s, got 1: .*only one"):
        fake_openai.wait_for_requests(2, timeout=0.05)


def test_transcription_returns_scripted_text_and_records_upload(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.transcribe_with("hello from a voice note")

    result = client.audio.transcriptions.create(model="whisper-1", file=("voice.ogg", b"OggS\x00\x02fake", "audio/ogg"))

    assert result.text == "hello from a voice note"
    (upload,) = fake_openai.transcription_requests()
    assert upload.filename == "voice.ogg"
    assert upload.data == b"OggS\x00\x02fake"
    assert upload.fields["model"] == "whisper-1"
    assert fake_openai.chat_requests() == []


def test_streamed_answer_reassembles_in_sdk(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_with("a streamed answer longer than one chunk")

    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "a streamed answer longer than one chunk"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_models_list_and_missing_api_key(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]

    answer = requests.post(f"{fake_openai.url}/v1/chat/completions", json={"model": "m", "messages": []}, timeout=5)

    assert answer.status_code == 401
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert fake_openai.chat_requests() == []


# -- FakeGraph through plain requests ----------------------------------------------------------------------------


def test_text_send_answers_documented_success_shape(graph: FakeGraph) -> None:
    answer = send_text(graph, "Hello", context={"message_id": "wamid.INBOUND"})

    assert answer.status_code == 200
    body = answer.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": CUSTOMER, "wa_id": CUSTOMER}]
    wamid = body["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    (sent,) = graph.sent_texts()
    assert sent["to"] == CUSTOMER and sent["body"] == "Hello" and sent["reply_to"] == "wamid.INBOUND"
    assert sent["wamid"] == wamid
    assert graph.calls[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_every_send_gets_a_unique_wamid(graph: FakeGraph) -> None:
    ids = {send_text(graph, f"part {i}").json()["messages"][0]["id"] for i in range(5)}

    assert len(ids) == 5
    assert [t["body"] for t in graph.sent_texts(to=CUSTOMER)] == [f"part {i}" for i in range(5)]
    assert graph.sent_texts(to="19999999999") == []


def test_wrong_or_missing_bearer_is_rejected_with_code_190(graph: FakeGraph) -> None:
    wrong = send_text(graph, "Hello", token="stale")
    missing = requests.post(f"{graph.url}/v24.0/{PHONE_ID}/messages", json={"messaging_product": "whatsapp"}, timeout=5)

    for answer in (wrong, missing):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == 190
        assert answer.json()["error"]["type"] == "OAuthException"
        assert answer.json()["error"]["fbtrace_id"]
    assert graph.sent_texts() == []


def test_send_without_messaging_product_is_invalid_parameter(graph: FakeGraph) -> None:
    answer = requests.post(
        f"{graph.url}/v24.0/{PHONE_ID}/messages",
        json={"to": CUSTOMER, "type": "text", "text": {"body": "x"}},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 100
    assert graph.sent_texts() == []


def test_text_over_4096_utf16_units_is_rejected(graph: FakeGraph) -> None:
    assert send_text(graph, "a" * 4096).status_code == 200
    emoji_answer = send_text(graph, "😀" * 2049)  # 2049 code points, 4098 UTF-16 units

    assert emoji_answer.status_code == 400
    assert "4096" in emoji_answer.json()["error"]["message"]
    assert len(graph.sent_texts()) == 1


def mark_read_typing(graph: FakeGraph, kind: str) -> requests.Response:
    payload = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.INBOUND",
        "typing_indicator": {"type": kind},
    }
    return requests.post(
        f"{graph.url}/v24.0/{PHONE_ID}/messages", json=payload, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )


def test_mark_read_with_typing_indicator_answers_success(graph: FakeGraph) -> None:
    answer = mark_read_typing(graph, "text")

    assert answer.status_code == 200 and answer.json() == {"success": True}
    assert [(r["message_id"], r["typing"]) for r in graph.reads()] == [("wamid.INBOUND", True)]
    assert graph.sent_texts() == []


def test_mark_read_with_a_typing_indicator_other_than_text_is_refused_like_meta(graph: FakeGraph) -> None:
    answer = mark_read_typing(graph, "audio")

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 131009
    assert graph.reads() == []


def test_media_lookup_then_download_needs_the_bearer(graph: FakeGraph) -> None:
    media = graph.add_media("1234567890", b"\xff\xd8jpeg-bytes", "image/jpeg", size_as_string=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    lookup = requests.get(f"{graph.url}/v24.0/1234567890", headers=auth, timeout=5).json()
    anonymous = requests.get(lookup["url"], timeout=5)
    download = requests.get(lookup["url"], headers=auth, timeout=5)

    assert lookup == {
        "messaging_product": "whatsapp",
        "url": f"{graph.url}/media-download/1234567890",
        "mime_type": "image/jpeg",
        "sha256": media.sha256,
        "file_size": str(len(b"\xff\xd8jpeg-bytes")),
        "id": "1234567890",
    }
    assert anonymous.status_code == 401
    assert download.status_code == 200 and download.content == b"\xff\xd8jpeg-bytes"
    assert download.headers["Content-Length"] == str(len(b"\xff\xd8jpeg-bytes"))
    assert download.headers["Content-Type"] == "image/jpeg"
    assert [(d["status"], d["authorized"]) for d in graph.media_downloads()] == [(401, False), (200, True)]
    assert [m["media_id"] for m in graph.media_lookups()] == ["1234567890"]


def test_unknown_media_id_answers_code_100(graph: FakeGraph) -> None:
    answer = requests.get(f"{graph.url}/v24.0/999", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 100


def test_expired_media_url_answers_404_until_looked_up_again(graph: FakeGraph) -> None:
    graph.add_media("42", b"voice", "audio/ogg; codecs=opus", declared_size=5)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = requests.get(f"{graph.url}/v24.0/42", headers=auth, timeout=5).json()["url"]

    graph.expire_media_urls()
    expired = requests.get(url, headers=auth, timeout=5)
    fresh_url = requests.get(f"{graph.url}/v24.0/42", headers=auth, timeout=5).json()["url"]

    assert expired.status_code == 404
    assert requests.get(fresh_url, headers=auth, timeout=5).content == b"voice"


def test_phone_number_info_for_doctor(graph: FakeGraph) -> None:
    info = requests.get(f"{graph.url}/v24.0/{PHONE_ID}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    assert info.json()["verified_name"] == "Test Business"
    assert info.json()["id"] == PHONE_ID


def test_fail_next_serves_canned_errors_then_delivers(graph: FakeGraph) -> None:
    graph.fail_next(2, status=429, retry_after=3)
    graph.fail_next(1, status=500)
    graph.fail_next(1, status=400, code=131047, message="Re-engagement message")

    answers = [send_text(graph, f"try {i}") for i in range(5)]

    assert [a.status_code for a in answers] == [429, 429, 500, 400, 200]
    assert [a.json().get("error", {}).get("code") for a in answers] == [130429, 130429, 131000, 131047, None]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[3].json()["error"]["message"] == "(#131047) Re-engagement message"
    assert all(a.json()["error"]["fbtrace_id"] for a in answers[:4])
    assert [t["body"] for t in graph.sent_texts()] == ["try 4"]
    assert len(graph.failed_sends()) == 4
    assert [c.status for c in graph.calls] == [429, 429, 500, 400, 200]


def test_fail_next_does_not_consume_on_mark_read(graph: FakeGraph) -> None:
    graph.fail_next(1, status=500)
    read = requests.post(
        f"{graph.url}/v24.0/{PHONE_ID}/messages",
        json={"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )

    assert read.status_code == 200
    assert send_text(graph, "after read").status_code == 500


def test_wait_for_texts_returns_once_texts_arrive_from_another_thread(graph: FakeGraph) -> None:
    sender = threading.Thread(target=lambda: [send_text(graph, f"part {i}") for i in range(2)])
    sender.start()

    texts = graph.wait_for_texts(2, to=CUSTOMER, timeout=5)
    sender.join()

    assert [t["body"] for t in texts] == ["part 0", "part 1"]


def test_wait_for_texts_timeout_names_what_did_arrive(graph: FakeGraph) -> None:
    send_text(graph, "the only one")
    graph.fail_next(1, status=400, code=131026)
    send_text(graph, "undeliverable")

    with pytest.raises(AssertionError, match=r"expected 2 text\(s\).*got 1.*the only one.*\(400, 131026\)"):
        graph.wait_for_texts(2, timeout=0.05)


def test_the_live_service_never_imports_the_fakes_or_metas_shapes(tmp_path) -> None:
    """``whatsapp.testing`` and ``whatsapp.cloud_api`` are Meta's side: the live service must not lean on them."""
    code = (
        "import sys\n"
        "from whatsapp import create_app\n"
        "from whatsapp.config import Settings, StoreSettings, WhatsAppSettings\n"
        "whatsapp = WhatsAppSettings(access_token='t', verify_token='v', phone_number_id='1', app_secret='s')\n"
        f"create_app(Settings(whatsapp=whatsapp, store=StoreSettings(url='sqlite:///{tmp_path}/w.db')), "
        "serve=False)\n"
        "import whatsapp.webhook, whatsapp.handler, whatsapp.worker, whatsapp.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('whatsapp.testing', 'whatsapp.cloud_api'))))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"
