"""GraphClient: exact payloads, error parsing, media caps (requests-mock) and real retries (loopback server)."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from whatsapp import GraphAPIError, GraphClient, MediaRefused, MediaTooLarge
from whatsapp.client import DOWNLOAD_CHUNK, MAX_RETRY_AFTER, MediaInfo

TOKEN = "EAAG-secret-token-1234567890"
PHONE_ID = "106540352242922"
MESSAGES_URL = f"https://graph.facebook.com/v24.0/{PHONE_ID}/messages"
MEDIA_URL = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2&hash=3"
SENT = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "16315551234", "wa_id": "16315551234"}],
    "messages": [{"id": "wamid.SENT1"}],
}


def graph_error(code: int, message: str = "boom", **extra: object) -> dict:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdTrace"}
    error.update(extra)
    return {"error": error}


@pytest.fixture
def client() -> Iterator[GraphClient]:
    with GraphClient(access_token=TOKEN, phone_number_id=PHONE_ID) as graph:
        yield graph


# -- payloads ---------------------------------------------------------------------------------------------


def test_send_text_posts_the_documented_payload_and_returns_the_wamid(client, requests_mock):
    requests_mock.post(MESSAGES_URL, json=SENT)

    wamid = client.send_text("16315551234", "Hello")

    assert wamid == "wamid.SENT1"
    assert requests_mock.last_request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16315551234",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello"},
    }
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_send_text_as_reply_adds_the_context_message_id(client, requests_mock):
    requests_mock.post(MESSAGES_URL, json=SENT)

    client.send_text("16315551234", "See https://x.example", reply_to="wamid.IN1", preview_url=True)

    assert requests_mock.last_request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16315551234",
        "type": "text",
        "text": {"preview_url": True, "body": "See https://x.example"},
        "context": {"message_id": "wamid.IN1"},
    }


def test_send_adds_messaging_product_to_any_payload(client, requests_mock):
    requests_mock.post(MESSAGES_URL, json=SENT)
    reaction = {"to": "16315551234", "type": "reaction", "reaction": {"message_id": "wamid.IN1", "emoji": "👍"}}

    assert client.send(reaction) == "wamid.SENT1"
    assert requests_mock.last_request.json() == {"messaging_product": "whatsapp", **reaction}


def test_success_answer_without_a_wamid_raises(client, requests_mock):
    requests_mock.post(MESSAGES_URL, json={"messaging_product": "whatsapp", "messages": []})

    with pytest.raises(GraphAPIError, match="messages\\[0\\].id") as caught:
        client.send_text("16315551234", "Hello")
    assert caught.value.status == 200
    assert caught.value.retryable is False


def test_mark_read_sends_status_read(client, requests_mock):
    requests_mock.post(MESSAGES_URL, json={"success": True})

    assert client.mark_read("wamid.IN1") is None
    assert requests_mock.last_request.json() == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
    }


def test_mark_read_with_typing_adds_the_typing_indicator(client, requests_mock):
    requests_mock.post(MESSAGES_URL, json={"success": True})

    client.mark_read("wamid.IN1", typing=True)

    assert requests_mock.last_request.json() == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
        "typing_indicator": {"type": "text"},
    }


def test_configured_timeouts_are_passed_on_every_call(requests_mock):
    requests_mock.post(MESSAGES_URL, json=SENT)
    requests_mock.get(MEDIA_URL, content=b"x")
    with GraphClient(access_token=TOKEN, phone_number_id=PHONE_ID, timeout=(1.5, 7.0)) as graph:
        graph.send_text("16315551234", "Hello")
        graph.download_media(MEDIA_URL, max_bytes=10)

    assert [r.timeout for r in requests_mock.request_history] == [(1.5, 7.0), (1.5, 7.0)]


def test_api_version_and_graph_url_shape_the_path(requests_mock):
    requests_mock.get(f"http://fake.local:8080/v21.0/{PHONE_ID}", json={"id": PHONE_ID, "quality_rating": "GREEN"})
    graph = GraphClient(
        access_token=TOKEN, phone_number_id=PHONE_ID, graph_url="http://fake.local:8080/", api_version="v21.0"
    )

    assert graph.phone_number() == {"id": PHONE_ID, "quality_rating": "GREEN"}
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"


# -- media ------------------------------------------------------------------------------------------------


def test_media_info_is_looked_up_with_the_bearer_and_accepts_file_size_as_string(client, requests_mock):
    requests_mock.get(
        "https://graph.facebook.com/v24.0/1234567",
        json={
            "messaging_product": "whatsapp",
            "url": MEDIA_URL,
            "mime_type": "image/jpeg",
            "sha256": "c2hh",
            "file_size": "12345",
            "id": "1234567",
        },
    )

    info = client.media_info("1234567")

    assert info == MediaInfo(id="1234567", url=MEDIA_URL, mime_type="image/jpeg", sha256="c2hh", file_size=12345)
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_media_info_accepts_file_size_as_number_and_tolerates_missing_fields(client, requests_mock):
    requests_mock.get("https://graph.facebook.com/v24.0/99", json={"url": MEDIA_URL, "file_size": 42})

    assert client.media_info("99") == MediaInfo(id="99", url=MEDIA_URL, mime_type=None, sha256=None, file_size=42)


def test_media_id_cannot_escape_its_path_segment(client, requests_mock):
    requests_mock.get("https://graph.facebook.com/v24.0/..%2Fme", json={"url": MEDIA_URL})

    client.media_info("../me")

    assert requests_mock.last_request.path == "/v24.0/..%2fme"


def test_download_sends_the_bearer_and_returns_the_bytes(client, requests_mock):
    requests_mock.get(MEDIA_URL, content=b"\xff\xd8jpeg-bytes", headers={"Content-Length": "12"})

    assert client.download_media(MEDIA_URL, max_bytes=12) == b"\xff\xd8jpeg-bytes"
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_download_refuses_a_declared_content_length_over_the_cap(client, requests_mock):
    requests_mock.get(MEDIA_URL, content=b"tiny", headers={"Content-Length": "5000001"})

    with pytest.raises(MediaTooLarge) as caught:
        client.download_media(MEDIA_URL, max_bytes=5_000_000)
    assert (caught.value.size, caught.value.limit) == (5_000_001, 5_000_000)


class CountingBody(io.RawIOBase):
    """A response body that records how many bytes the client pulled from it."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.remaining)
        buffer[:n] = b"a" * n
        self.remaining -= n
        self.consumed += n
        return n


def test_download_without_content_length_stops_reading_just_past_the_cap(client, requests_mock):
    body = CountingBody(10 * 1024 * 1024)
    requests_mock.get(MEDIA_URL, body=body)

    with pytest.raises(MediaTooLarge) as caught:
        client.download_media(MEDIA_URL, max_bytes=100_000)

    assert 100_000 < caught.value.size <= 100_000 + DOWNLOAD_CHUNK
    assert body.consumed <= 100_000 + DOWNLOAD_CHUNK


def test_download_refuses_to_send_the_token_over_plain_http(client, requests_mock):
    with pytest.raises(MediaRefused, match="not https") as caught:
        client.download_media("http://lookaside.fbsbx.com/file", max_bytes=10)
    assert not caught.value.retryable
    assert requests_mock.call_count == 0


def test_download_goes_only_to_metas_media_hosts(client, requests_mock):
    for url in ("https://evil.example/file", "https://fbsbx.com.evil.example/f", "https://169.254.169.254/latest"):
        with pytest.raises(MediaRefused, match="is not on api.media_hosts") as caught:
            client.download_media(url, max_bytes=10)
        assert not caught.value.retryable  # permanent: the customer is told at once
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://lookaside.fbsbx.com:99999/file", "Port out of range"),
        ("https://lookaside.fbsbx.com:port/file", "Port could not be cast"),
        ("https://[::1/file", "Invalid IPv6 URL"),
        ("https://.fbsbx.com/file", "InvalidURL"),
    ],
    ids=["port-out-of-range", "port-not-a-number", "open-bracket", "empty-label"],
)
def test_a_media_url_that_is_no_valid_url_is_refused_for_good(client, requests_mock, url, why):
    with pytest.raises(MediaRefused, match="media URL refused: not a valid URL") as caught:
        client.download_media(url, max_bytes=10)
    assert why in str(caught.value)
    assert not caught.value.retryable  # the same URL fails the same way on every attempt
    assert requests_mock.call_count == 0


def test_a_redirect_to_no_valid_url_is_refused_for_good(client, requests_mock):
    requests_mock.get(MEDIA_URL, status_code=302, headers={"Location": "https://[::1/file"})
    with pytest.raises(MediaRefused, match="a redirect to no valid URL") as caught:
        client.download_media(MEDIA_URL, max_bytes=10)
    assert not caught.value.retryable
    assert requests_mock.call_count == 1


def test_each_redirect_hop_is_checked_before_it_is_requested(client, requests_mock):
    requests_mock.get(MEDIA_URL, status_code=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(MediaRefused, match="not https"):
        client.download_media(MEDIA_URL, max_bytes=10)
    requests_mock.get(MEDIA_URL, status_code=302, headers={"Location": "https://metadata.internal/"})
    with pytest.raises(MediaRefused, match="not on api.media_hosts"):
        client.download_media(MEDIA_URL, max_bytes=10)
    assert [request.url for request in requests_mock.request_history] == [MEDIA_URL, MEDIA_URL]


def test_a_redirect_to_another_media_host_is_followed_without_the_token(client, requests_mock):
    cdn = "https://cdn.fbsbx.com/file"
    requests_mock.get(MEDIA_URL, status_code=302, headers={"Location": cdn})
    requests_mock.get(cdn, content=b"jpeg")
    assert client.download_media(MEDIA_URL, max_bytes=10) == b"jpeg"
    first, second = requests_mock.request_history
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in second.headers


def test_endless_redirects_are_refused(client, requests_mock):
    requests_mock.get(MEDIA_URL, status_code=302, headers={"Location": MEDIA_URL})
    with pytest.raises(MediaRefused, match="redirects"):
        client.download_media(MEDIA_URL, max_bytes=10)


def test_a_media_host_that_resolves_to_a_private_address_is_refused(client, requests_mock, monkeypatch):
    def private(host, port, *args, **kwargs):  # what a hijacked or misconfigured resolver answers
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr("whatsapp.media_hosts.socket.getaddrinfo", private)
    with pytest.raises(MediaRefused, match="private or reserved"):
        client.download_media(MEDIA_URL, max_bytes=10)
    assert requests_mock.call_count == 0


def test_expired_media_url_raises_a_permanent_error(client, requests_mock):
    requests_mock.get(MEDIA_URL, status_code=404, text="<html>gone</html>")

    with pytest.raises(GraphAPIError) as caught:
        client.download_media(MEDIA_URL, max_bytes=10)
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (404, None, False)


# -- errors -----------------------------------------------------------------------------------------------


def test_graph_error_answer_is_parsed_into_fields(client, requests_mock):
    body = graph_error(
        131047,
        "Re-engagement message",
        error_subcode=2494010,
        error_data={"messaging_product": "whatsapp", "details": "Message failed to send: 24 hours passed"},
    )
    requests_mock.post(MESSAGES_URL, status_code=400, json=body)

    with pytest.raises(GraphAPIError) as caught:
        client.send_text("16315551234", "Hello")

    error = caught.value
    assert (error.status, error.code, error.subcode) == (400, 131047, 2494010)
    assert error.message == "Re-engagement message"
    assert error.details == "Message failed to send: 24 hours passed"
    assert error.fbtrace_id == "AbCdTrace"
    assert error.response is not None and error.response.status_code == 400
    assert error.retryable is False
    assert str(error) == "Graph API error 131047 (HTTP 400): Re-engagement message [fbtrace_id=AbCdTrace]"
    assert error.hint is not None and "only an approved template" in error.hint
    assert "./scripts/whatsapp template" in error.hint  # the command README documents


def test_token_never_appears_in_error_text_or_logs(client, requests_mock, caplog):
    echoed = f"Invalid OAuth access token - Cannot parse access token {TOKEN}"
    requests_mock.post(MESSAGES_URL, status_code=401, json=graph_error(190, echoed, error_data={"details": TOKEN}))

    with caplog.at_level(logging.DEBUG, logger="whatsapp.client"):
        with pytest.raises(GraphAPIError) as caught:
            client.send_text("16315551234", "Hello")

    error = caught.value
    assert TOKEN not in str(error) and TOKEN not in repr(error) and TOKEN not in error.message
    assert TOKEN not in (error.details or "")
    assert "190" in caplog.text and TOKEN not in caplog.text


def test_rejected_token_is_logged_once_as_an_error_saying_to_replace_it(client, requests_mock, caplog):
    requests_mock.get(f"https://graph.facebook.com/v24.0/{PHONE_ID}", status_code=401, json=graph_error(190))

    with caplog.at_level(logging.WARNING, logger="whatsapp.client"), pytest.raises(GraphAPIError) as caught:
        client.phone_number()

    assert caught.value.auth_failed and not caught.value.retryable
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "access token" in record.getMessage() and "must be replaced" in record.getMessage()
    assert "AbCdTrace" in record.getMessage()


def test_throttling_inside_http_400_is_logged_as_a_retryable_warning(client, requests_mock, caplog):
    requests_mock.post(MESSAGES_URL, status_code=400, json=graph_error(131056, "Pair rate limit hit"))

    with caplog.at_level(logging.WARNING, logger="whatsapp.client"), pytest.raises(GraphAPIError) as caught:
        client.send_text("16315551234", "Hello")

    assert caught.value.retryable is True
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "131056" in record.getMessage()


def test_non_json_server_error_is_retryable(client, requests_mock):
    requests_mock.post(MESSAGES_URL, status_code=502, text="<html>Bad Gateway</html>", reason="Bad Gateway")

    with pytest.raises(GraphAPIError) as caught:
        client.send_text("16315551234", "Hello")
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (502, None, True)
    assert str(caught.value) == "Graph API error (HTTP 502): 502 Bad Gateway"


def test_transport_failure_raises_retryable_error_without_status(client, requests_mock):
    requests_mock.post(MESSAGES_URL, exc=requests.exceptions.ConnectTimeout("timed out"))

    with pytest.raises(GraphAPIError) as caught:
        client.send_text("16315551234", "Hello")
    assert caught.value.status is None and caught.value.retryable is True
    assert isinstance(caught.value.__cause__, requests.exceptions.ConnectTimeout)


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        (4, 400, True),
        (80007, 400, True),
        (130429, 400, True),
        (131056, 400, True),
        (131048, 400, True),
        (131000, 500, True),
        (1, 400, True),
        (2, 503, True),
        (131016, 400, True),
        (0, 401, False),
        (190, 401, False),
        (3, 400, False),
        (10, 403, False),
        (200, 403, False),
        (299, 403, False),
        (100, 400, False),
        (131008, 400, False),
        (131009, 400, False),
        (131021, 400, False),
        (131026, 400, False),
        (131031, 400, False),
        (131042, 400, False),
        (131047, 400, False),
        (131049, 400, False),
        (130472, 400, False),
        (131053, 400, False),
        (132000, 400, False),
        (132069, 400, False),
        (133010, 400, False),
        (368, 400, False),
        (131047, 500, False),
        (999999, 400, False),
        (999999, 500, True),
        (None, 429, True),
        (None, 404, False),
        (None, None, True),
    ],
)
def test_retryable_follows_the_error_table(code, status, retryable):
    assert GraphAPIError("x", code=code, status=status).retryable is retryable


def test_error_code_sent_as_string_is_parsed(client, requests_mock):
    requests_mock.post(MESSAGES_URL, status_code=400, json=graph_error("131047"))  # type: ignore[arg-type]

    with pytest.raises(GraphAPIError) as caught:
        client.send_text("16315551234", "Hello")
    assert caught.value.code == 131047


# -- the retry policy mounted on the session --------------------------------------------------------------


def test_session_adapter_carries_the_retry_policy_and_pool_size():
    graph = GraphClient(access_token=TOKEN, phone_number_id=PHONE_ID, pool_size=16, retries=4, backoff=0.25)
    adapter = graph._session.get_adapter(MESSAGES_URL)
    retry = adapter.max_retries

    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 16
    assert (retry.total, retry.connect, retry.status) == (4, 4, 4)
    assert retry.read is False  # a POST whose answer was lost may have been delivered
    assert set(retry.status_forcelist) == {429, 500, 502, 503, 504}
    assert {"GET", "POST"} <= set(retry.allowed_methods)
    assert retry.respect_retry_after_header is True
    assert retry.raise_on_status is False
    assert retry.backoff_factor == 0.25 and retry.backoff_jitter > 0
    assert retry.is_retry("POST", 503) and retry.is_retry("GET", 429)
    assert not retry.is_retry("POST", 400)
    assert retry.parse_retry_after("3600") == MAX_RETRY_AFTER
    assert graph._session.get_adapter("http://127.0.0.1:1/") is adapter


# -- real retries against a loopback server ---------------------------------------------------------------


class ScriptedGraph:
    """A loopback HTTP server answering each request with the next scripted (status, headers, body, delay)."""

    def __init__(self, script: list[tuple[int, dict, dict | str, float]]) -> None:
        self.script = list(script)
        self.attempts: list[tuple[str, str, bytes]] = []
        graph = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                graph.attempts.append((self.command, self.path, self.rfile.read(length)))
                status, headers, body, delay = graph.script.pop(0) if graph.script else (500, {}, "empty", 0)
                time.sleep(delay)
                raw = (json.dumps(body) if isinstance(body, dict) else body).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the client gave up (read timeout) and closed the connection

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ScriptedGraph:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def client(self, **kwargs: object) -> GraphClient:
        options = {"retries": 3, "backoff": 0.0, "timeout": (1.0, 2.0), **kwargs}
        return GraphClient(access_token=TOKEN, phone_number_id=PHONE_ID, graph_url=self.url, **options)


def test_throttled_then_failing_server_is_retried_until_one_success():
    script = [
        (429, {"Retry-After": "0"}, graph_error(4, "slow down"), 0),
        (500, {}, graph_error(131000, "Something went wrong"), 0),
        (200, {}, SENT, 0),
    ]
    with ScriptedGraph(script) as server, server.client() as graph:
        wamid = graph.send_text("16315551234", "Hello")

    assert wamid == "wamid.SENT1"
    assert len(server.attempts) == 3
    assert {(method, path) for method, path, _ in server.attempts} == {("POST", f"/v24.0/{PHONE_ID}/messages")}
    assert all(json.loads(body)["text"]["body"] == "Hello" for _, _, body in server.attempts)


def test_permanent_graph_error_is_attempted_exactly_once():
    script = [(400, {}, graph_error(131047, "Re-engagement message"), 0)]
    with ScriptedGraph(script) as server, server.client() as graph:
        with pytest.raises(GraphAPIError) as caught:
            graph.send_text("16315551234", "Hello")

    assert len(server.attempts) == 1
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (131047, 400, False)


def test_throttling_code_in_http_400_is_left_to_the_job_queue():
    script = [(400, {}, graph_error(130429, "Rate limit hit"), 0), (200, {}, SENT, 0)]
    with ScriptedGraph(script) as server, server.client() as graph:
        with pytest.raises(GraphAPIError) as caught:
            graph.send_text("16315551234", "Hello")

    assert len(server.attempts) == 1
    assert caught.value.code == 130429 and caught.value.retryable is True


def test_server_errors_until_retries_run_out_raise_the_last_answer():
    script = [(503, {}, graph_error(2, "Service temporarily unavailable"), 0)] * 4 + [(200, {}, SENT, 0)]
    with ScriptedGraph(script) as server, server.client(retries=3) as graph:
        with pytest.raises(GraphAPIError) as caught:
            graph.media_info("1234567")

    assert len(server.attempts) == 4
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (503, 2, True)


def test_read_timeout_after_a_post_is_not_resent():
    script = [(200, {}, SENT, 1.0), (200, {}, SENT, 0)]
    with ScriptedGraph(script) as server, server.client(timeout=(1.0, 0.2)) as graph:
        with pytest.raises(GraphAPIError) as caught:
            graph.send_text("16315551234", "Hello")

    assert len(server.attempts) == 1
    assert caught.value.status is None and caught.value.retryable is True
    assert TOKEN not in str(caught.value)


def test_refused_connection_raises_a_retryable_transport_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    graph = GraphClient(access_token=TOKEN, phone_number_id=PHONE_ID, graph_url=f"http://127.0.0.1:{port}", backoff=0.0)

    with pytest.raises(GraphAPIError) as caught:
        graph.mark_read("wamid.IN1")

    assert caught.value.status is None and caught.value.retryable is True
    assert TOKEN not in str(caught.value)
