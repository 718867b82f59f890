"""The README's "Writing agents" example is working code: a newcomer can paste it, it passes ruff, and it runs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from agents import Agent, Customer, FunctionTool, Runner
from whatsapp import replies
from whatsapp.testing.openai_server import tool_call

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


def test_the_readme_walk_through_runs_as_written_on_the_offline_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step 3 of "Writing agents", word for word, with no model configured: the offline model uses the tool."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    section = README.read_text().split("## Writing agents", 1)[1].split("\n## ", 1)[0]
    _, script = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:2]
    script = "\n".join(line.removeprefix("   ") for line in script.splitlines())
    [question] = re.findall(r'restart, and ask "([^"]+)"', section)
    [promised] = re.findall(r'the offline model answers "([^"]+)"', " ".join(section.split()))
    assert f'"{question}"' in script
    bakery = types.ModuleType("agents.bakery")  # step 1's file, agents/bakery.py
    exec(compile(readme_agent_source(), "agents/bakery.py", "exec"), bakery.__dict__)
    monkeypatch.setitem(sys.modules, "agents.bakery", bakery)

    exec(compile(script, "README", "exec"), {"__name__": "__main__"})

    assert capsys.readouterr().out.startswith(promised)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("are you open on monday?", "The opening_hours tool says: 7:00-18:00."),
        ("opening_hours sunday", "The opening_hours tool says: closed."),  # the tool's name, as the bot lists it
        ("opening hours", 'for example: "opening hours monday"'),  # the description's own example
        ("what is the cake of the day?", "The cake_of_the_day tool says: name='lemon drizzle' price_eur=18.5."),
        ("I would like a custom cake for a wedding", "You are now talking to the cakes agent."),
    ],
)
def test_the_offline_model_answers_the_bakery_sensibly(
    monkeypatch: pytest.MonkeyPatch, question: str, expected: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    bakery = readme_agent_module()["bakery"]
    assert expected in Runner.run_sync(bakery, question, context=Customer("15550001", "Ada")).final_output


def test_the_readme_rich_replies_examples_build_one_reply_of_every_kind() -> None:
    """The agent example loads, and each line of the one-per-kind example builds a reply within Meta's limits."""
    section = README.read_text().split("\n## Rich replies\n", 1)[1].split("\n## ", 1)[0]
    agent_example, kinds_example = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {"__name__": "readme_cakes"}
    exec(compile(agent_example, "README", "exec"), namespace)
    assert isinstance(namespace["cakes"], Agent)
    scope: dict = {}
    built = []
    for node in ast.parse(kinds_example).body:
        if isinstance(node, ast.Expr):
            built.append(eval(compile(ast.Expression(node.value), "README", "eval"), scope))
        else:
            exec(compile(ast.Module(body=[node], type_ignores=[]), "README", "exec"), scope)
    every_kind = {
        name
        for name, value in vars(replies).items()
        if isinstance(value, type) and issubclass(value, replies.RichReply) and not name.startswith("_")
    }
    assert every_kind - {"RichReply", "Text", "Contacts"} == {type(reply).__name__ for reply in built}
    assert all(reply.message(replying_to="wamid.X")["type"] for reply in built)
