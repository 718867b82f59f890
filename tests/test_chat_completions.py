"""The model client's chat call: the SDK's own errors and retries, pydantic's parser for the answer."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from whatsapp.service import ChatCompletions

STANDARD = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "order_status", "arguments": '{"n": 1}'}}
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
}


def chat(answer: dict | str, status: int = 200) -> tuple[ChatCompletions, list[dict]]:
    seen: list[dict] = []

    def reply(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        body = answer if isinstance(answer, str) else json.dumps(answer)
        return httpx2.Response(status, content=body.encode(), headers={"content-type": "application/json"})

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://model.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(reply)),
    )
    return ChatCompletions(client), seen


def test_the_request_is_sent_as_given_and_the_answer_parsed_with_its_tool_calls():
    completions, seen = chat(STANDARD)
    messages = [{"role": "user", "content": "where is order 1?"}]
    completion = completions.create(model="gpt-4o-mini", messages=messages, temperature=0.2)
    assert seen == [{"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2}]
    [call] = completion.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "order_status", '{"n": 1}')


def test_an_answer_that_does_not_validate_is_still_read():
    # Some OpenAI-compatible servers leave out fields the SDK's types require (here: created, object, index).
    loose = {"id": "x", "model": "local", "choices": [{"message": {"role": "assistant", "content": "hello"}}]}
    completions, _ = chat(loose)
    completion = completions.create(model="local", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "hello"
    assert completion.choices[0].message.tool_calls is None


def test_an_error_answer_is_the_sdks_error():
    completions, _ = chat({"error": {"message": "slow down", "type": "rate_limit"}}, status=429)
    with pytest.raises(openai.RateLimitError):
        completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
