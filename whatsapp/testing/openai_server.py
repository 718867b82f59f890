"""A local stand-in for OpenAI's server, speaking the wire format the official ``openai`` SDK parses.

The service is pointed at it with ``OPENAI_BASE_URL=<fake.url>/v1``. By default it echoes ("You said: ..."),
so an end-to-end test can tell which message an answer belongs to; tests script other answers, failures,
tool calls, delays, and can hold requests open to prove what happens before the model answers.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .http import FakeServer, Recorded, Request, Response

log = logging.getLogger(__name__)

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "whisper-1", "gpt-4o-mini-transcribe")


@dataclass(frozen=True)
class Fail:
    """Answer with OpenAI's error envelope and this status; ``disconnect`` drops the connection instead."""

    status: int = 500
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    disconnect: bool = False


@dataclass(frozen=True)
class Upload:
    """A multipart upload as the transcription endpoint received it."""

    fields: dict[str, str]
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)


# A scripted answer: message content, a full assistant message, a failure, or a function of the request.
Reply = str | dict[str, Any] | Fail | Callable[[dict[str, Any]], Any]


def tool_call(name: str, arguments: dict[str, Any] | str, id: str | None = None) -> dict[str, Any]:
    """One entry of an assistant message's ``tool_calls``, as the API sends it (arguments as a JSON string)."""
    return {
        "id": id or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
    }


def text_of(content: Any) -> str:
    """A message's text: a string as is; content parts joined, images as ``[image]`` (other media likewise)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            pieces.append(part.get("text", ""))
        elif kind == "image_url":
            pieces.append("[image]")
        elif kind == "input_audio":
            pieces.append("[audio]")
        else:
            pieces.append(f"[{kind}]")
    return " ".join(pieces)


def echo(request: dict[str, Any]) -> str:
    """The default answer: ``You said: <last user text>``."""
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return f"You said: {text_of(users[-1].get('content')) if users else ''}"


def describe_upload(upload: Upload) -> str:
    """The default transcript: names the file, so a test can tell which voice note it came from."""
    return f"Transcript of {upload.filename} ({len(upload.data)} bytes)"


_DEFAULT_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def openai_error(
    status: int,
    message: str | None = None,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
    retry_after: float | None = None,
) -> Response:
    """OpenAI's error envelope ``{"error": {"message", "type", "param", "code"}}``."""
    default_type, default_code, default_message = _DEFAULT_ERRORS.get(status, ("api_error", None, "Error."))
    error = {
        "message": message or default_message,
        "type": type_ or default_type,
        "param": param,
        "code": code if code is not None else default_code,
    }
    headers = (("Retry-After", f"{retry_after:g}"),) if retry_after is not None else ()
    return Response.of_json(status, {"error": error}, headers=headers)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _assistant_message(spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Fill a scripted message out to the API's shape; returns it and its finish_reason."""
    message: dict[str, Any] = {"role": "assistant", "content": spec.get("content"), "refusal": None}
    calls = spec.get("tool_calls")
    if calls:
        message["tool_calls"] = [
            tool_call(c["name"], c.get("arguments", {}), c.get("id")) if "function" not in c else c for c in calls
        ]
    if spec.get("refusal") is not None:
        message["refusal"] = spec["refusal"]
    return message, spec.get("finish_reason") or ("tool_calls" if calls else "stop")


class FakeOpenAI(FakeServer):
    """Chat Completions, audio transcriptions and the model list, scripted per test."""

    def __init__(self, models: Iterable[str] = DEFAULT_MODELS, hold_timeout: float = 30) -> None:
        super().__init__()
        self.models = list(models)
        self.hold_timeout = hold_timeout  # a forgotten release() must not hang the suite
        self._cond = threading.Condition()
        self._requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._default: Reply = echo
        self._transcript: str | Fail | Callable[[Upload], Any] = describe_upload
        self._hold_remaining: int | None = 0  # 0: not holding; None: hold every request; n: hold the next n
        self._gate = threading.Event()
        self._delay = 0.0
        self._stopping = threading.Event()
        self._ids = itertools.count(1)

    # -- scripting ---------------------------------------------------------------------------------------

    def reply_with(self, reply: Reply) -> None:
        """The answer for every chat request once the queue is empty (str, message dict, Fail or callable)."""
        with self._cond:
            self._default = reply

    def reply_queue(self, replies: Iterable[Reply]) -> None:
        """Answers for the next chat requests, one each, in arrival order; then ``reply_with``'s answer."""
        with self._cond:
            self._queue.extend(replies)

    def always_fail(self, status: int = 500) -> None:
        self.reply_with(Fail(status=status))

    def transcribe_with(self, reply: str | Fail | Callable[[Upload], Any]) -> None:
        """The transcription answer: text, a Fail, or a function of the ``Upload``."""
        with self._cond:
            self._transcript = reply

    def hold(self) -> None:
        """Chat requests arriving from now on wait until ``release()``."""
        with self._cond:
            self._hold_remaining = None
            self._gate = threading.Event()

    def hold_first(self, n: int = 1) -> None:
        """Only the next ``n`` chat requests wait until ``release()``."""
        with self._cond:
            self._hold_remaining = n
            self._gate = threading.Event()

    def release(self) -> None:
        """Let held requests answer and stop holding new ones."""
        with self._cond:
            self._hold_remaining = 0
            self._gate.set()

    def delay(self, seconds: float) -> None:
        """Sleep this long before every chat or transcription answer (a slow model)."""
        self._delay = seconds

    def reset(self) -> None:
        """Back to echoing, no queue, no holding, no delay, nothing recorded."""
        self.release()
        with self._cond:
            self._requests.clear()
            self._queue.clear()
            self._default = echo
            self._transcript = describe_upload
            self._delay = 0.0

    def stop(self) -> None:
        self._stopping.set()
        self.release()
        super().stop()

    # -- queries -----------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request in arrival order (recorded on arrival, before any hold or delay)."""
        with self._cond:
            return list(self._requests)

    def chat_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests, in arrival order."""
        with self._cond:
            return self._chat_bodies()

    def transcription_requests(self) -> list[Upload]:
        with self._cond:
            return [r.extra["upload"] for r in self._requests if "upload" in r.extra]

    def wait_for_requests(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Block until at least ``n`` chat requests arrived; return their bodies."""
        with self._cond:
            if self._cond.wait_for(lambda: len(self._chat_bodies()) >= n, timeout=timeout):
                return self._chat_bodies()
            got = self._chat_bodies()
        raise AssertionError(f"expected {n} chat request(s) within {timeout}s, got {len(got)}: {got!r}")

    # -- internals ---------------------------------------------------------------------------------------

    def _chat_bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self._requests if r.path == "/v1/chat/completions"]

    def handle(self, request: Request) -> Response:
        if request.bearer() is None:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return openai_error(401, message, code=None)
        route = (request.method, request.path)
        if route == ("POST", "/v1/chat/completions"):
            return self._chat(request)
        if route == ("POST", "/v1/audio/transcriptions"):
            return self._transcription(request)
        if route == ("GET", "/v1/models"):
            now = int(time.time())
            data = [{"id": m, "object": "model", "created": now, "owned_by": "openai"} for m in self.models]
            return Response.of_json(200, {"object": "list", "data": data})
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            model = request.path.removeprefix("/v1/models/")
            if model not in self.models:
                return openai_error(404, f"The model '{model}' does not exist", param="model")
            return Response.of_json(200, {"id": model, "object": "model", "created": 0, "owned_by": "openai"})
        return openai_error(404, f"Invalid URL ({request.method} {request.path})", code=None)

    def _arrive(
        self, request: Request, admitted: bool = True, **extra: Any
    ) -> tuple[Reply | None, threading.Event | None]:
        """Record the request and decide, in arrival order, its answer and whether it is held."""
        with self._cond:
            self._requests.append(Recorded.of(request, **extra))
            self._cond.notify_all()
            if not admitted or "upload" in extra:  # holding is for chat requests only
                return None, None
            gate = None
            if self._hold_remaining is None or self._hold_remaining > 0:
                gate = self._gate
                if self._hold_remaining:
                    self._hold_remaining -= 1
            return (self._queue.popleft() if self._queue else self._default), gate

    def _wait_turn(self, gate: threading.Event | None) -> None:
        if gate is not None and not gate.wait(self.hold_timeout):
            log.warning("FakeOpenAI: a held request was never released; answering after %ss", self.hold_timeout)
        if self._delay:
            self._stopping.wait(self._delay)

    def _chat(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not body.get("model"):
            self._arrive(request, admitted=False)
            return openai_error(400, "you must provide a model parameter", param="model")
        if not body.get("messages"):
            self._arrive(request, admitted=False)
            return openai_error(400, "[] is too short - 'messages'", param="messages", code="invalid_value")
        reply, gate = self._arrive(request)
        self._wait_turn(gate)
        while callable(reply):
            reply = reply(body)
        if isinstance(reply, Fail):
            if reply.disconnect:
                return Response(disconnect=True)
            return openai_error(reply.status, reply.message, reply.type, reply.code, reply.param, reply.retry_after)
        message, finish_reason = _assistant_message({"content": reply} if isinstance(reply, str) else reply)
        prompt = sum(_tokens(text_of(m.get("content"))) for m in body["messages"])
        completion = _tokens(message["content"] or json.dumps(message.get("tool_calls")))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        completion_id = f"chatcmpl-fake{next(self._ids):06d}{uuid.uuid4().hex[:12]}"
        if body.get("stream"):
            return _stream(completion_id, body, message, finish_reason, usage)
        answer = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        return Response.of_json(200, answer, headers=(("x-request-id", f"req_{uuid.uuid4().hex}"),))

    def _transcription(self, request: Request) -> Response:
        upload = _parse_multipart(request)
        if upload is None or not upload.data:
            return openai_error(400, "Could not parse multipart form", param="file")
        if not upload.fields.get("model"):
            self._arrive(request, admitted=False, upload=upload)
            return openai_error(400, "you must provide a model parameter", param="model")
        _, gate = self._arrive(request, upload=upload)
        self._wait_turn(gate)
        with self._cond:
            reply = self._transcript
        while callable(reply):
            reply = reply(upload)
        if isinstance(reply, Fail):
            if reply.disconnect:
                return Response(disconnect=True)
            return openai_error(reply.status, reply.message, reply.type, reply.code, reply.param, reply.retry_after)
        text = str(reply)
        response_format = upload.fields.get("response_format", "json")
        if response_format in ("text", "srt", "vtt"):
            return Response(200, text.encode(), content_type="text/plain; charset=utf-8")
        if response_format == "verbose_json":
            answer = {"task": "transcribe", "language": "english", "duration": 1.0, "text": text, "segments": []}
            return Response.of_json(200, answer)
        usage = {"type": "duration", "seconds": 1}
        return Response.of_json(200, {"text": text, "usage": usage})


def _stream(
    completion_id: str, body: dict[str, Any], message: dict[str, Any], finish_reason: str, usage: dict[str, int]
) -> Response:
    """The same answer as server-sent ``chat.completion.chunk`` events, ending with ``[DONE]``."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"]}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    content = message["content"] or ""
    deltas += [{"content": content[i : i + 8]} for i in range(0, len(content), 8)]
    for index, call in enumerate(message.get("tool_calls", [])):
        deltas.append({"tool_calls": [{"index": index, **call}]})
    chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage})
    events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return Response(200, events.encode(), content_type="text/event-stream")


def _parse_multipart(request: Request) -> Upload | None:
    header = Message()
    header["content-type"] = request.headers.get("content-type", "")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        return None
    fields: dict[str, str] = {}
    filename = content_type = None
    data = b""
    for part in request.body.split(b"--" + boundary.encode())[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        value = value.removesuffix(b"\r\n")
        headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, raw = line.partition(":")
            headers[name.strip()] = raw.strip()
        name = headers.get_param("name", header="content-disposition")
        if headers.get_param("filename", header="content-disposition") is not None:
            filename = headers.get_filename()
            content_type = headers.get("content-type")
            data = value
        elif isinstance(name, str):
            fields[name] = value.decode("utf-8", "replace")
    return Upload(fields=fields, filename=filename, content_type=content_type, data=data)
