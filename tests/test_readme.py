"""The README's "Writing agents" example is working code: a newcomer can paste it, it passes ruff, and it runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents import Agent, Customer, FunctionTool, Runner
from tests.fakes.openai_server import tool_call

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_agent_source() -> str:
    section = README.read_text().split("## Writing agents", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)[:1]
    return "\n".join(line[3:] if line.startswith("   ") else line for line in code.splitlines()) + "\n"


def readme_agent_module() -> dict:
    namespace: dict = {"__name__": "readme_bakery"}
    exec(compile(readme_agent_source(), "README", "exec"), namespace)
    return namespace


def test_the_readme_agent_passes_ruff() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    checked = subprocess.run(
        [str(ruff), "check", "--stdin-filename", "agents/bakery.py", "-"],
        input=readme_agent_source(),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_readme_agent_calls_its_tools_and_hands_off(fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, model = fakes
    monkeypatch.setenv("OPENAI_BASE_URL", model.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    example = readme_agent_module()
    bakery, opening_hours = example["bakery"], example["opening_hours"]
    assert isinstance(bakery, Agent) and isinstance(opening_hours, FunctionTool)
    assert opening_hours.params_json_schema["properties"]["day"] == {
        "type": "string",
        "title": "Day",
        "description": "Day of the week, e.g. monday",
    }
    model.reply_queue(
        [
            {"content": None, "tool_calls": [tool_call("opening_hours", {"day": "sunday"})]},
            {"content": None, "tool_calls": [tool_call("cake_of_the_day", {})]},
            "Sorry, we are closed on Sundays; the cake of the day is lemon drizzle.",
        ]
    )

    result = Runner.run_sync(bakery, "are you open on sunday?", context=Customer("15550001", "Ada"))

    assert result.final_output == "Sorry, we are closed on Sundays; the cake of the day is lemon drizzle."
    first, second, third = model.chat_requests()
    assert first["model"] == "gpt-4o-mini"
    assert first["messages"][0]["content"] == "You help customers of a small bakery. The customer is Ada."
    assert {t["function"]["name"] for t in first["tools"]} == {"opening_hours", "cake_of_the_day", "transfer_to_cakes"}
    assert second["messages"][-1]["content"] == "closed"
    assert third["messages"][-1]["content"] == "name='lemon drizzle' price_eur=18.5"
