"""The README's "Writing agents" example is working code: a newcomer can paste it and it runs."""

from __future__ import annotations

import re
from pathlib import Path

import openai

from agents import Agent, FunctionTool, RunContext, Runner
from tests.fakes.openai_server import tool_call

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_agent_module() -> dict:
    section = README.read_text().split("## Writing agents", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("## ", 1)[0], flags=re.S)[:1]
    namespace: dict = {}
    exec(
        compile(
            "\n".join(line[3:] if line.startswith("   ") else line for line in code.splitlines()), "README", "exec"
        ),
        namespace,
    )
    return namespace


def test_the_readme_agent_calls_its_tool_and_hands_off(fakes):
    graph, model = fakes
    example = readme_agent_module()
    bakery, opening_hours = example["bakery"], example["opening_hours"]
    assert isinstance(bakery, Agent) and isinstance(opening_hours, FunctionTool)
    assert opening_hours.schema["function"]["parameters"]["properties"]["day"] == {
        "type": "string",
        "description": "Day of the week, e.g. monday",
    }
    model.reply_queue(
        [
            {"content": None, "tool_calls": [tool_call("opening_hours", {"day": "sunday"})]},
            "Sorry, we are closed on Sundays.",
        ]
    )
    client = openai.OpenAI(base_url=model.url + "/v1", api_key="x", max_retries=0)
    result = Runner(client.chat.completions, "gpt-4o-mini").run(
        bakery, [], "are you open on sunday?", RunContext(sender="15550001", profile_name="Ada")
    )
    assert result.text == "Sorry, we are closed on Sundays."
    first, second = model.chat_requests()
    assert first["messages"][0]["content"] == "You help customers of a small bakery. The customer is Ada."
    assert {t["function"]["name"] for t in first["tools"]} == {"opening_hours", "transfer_to_cakes"}
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": second["messages"][-2]["tool_calls"][0]["id"],
        "content": "closed",
    }
