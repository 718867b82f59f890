"""``flask --app app whatsapp ...`` as a person runs it: a subprocess in a clean folder, against the local fakes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import ACCESS_TOKEN, ROOT, base_environment


def flask(args: list[str], env: dict[str, str], cwd, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "whatsapp", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def empty_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("AK_", "OPENAI_", "REDIS_"))}


def test_doctor_in_sandbox_mode_passes_and_says_so(tmp_path):
    env = {**empty_environment(), "AK_STORE__URL": f"sqlite:///{tmp_path}/w.db"}
    result = flask(["doctor"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✔ mode: sandbox" in result.stdout
    assert "offline demonstration model" in result.stdout
    assert "All checks passed." in result.stdout


def test_doctor_with_a_wrong_token_names_the_fix_and_masks_secrets(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    env["AK_WHATSAPP__ACCESS_TOKEN"] = "EAAG-wrong-token-0123456789"
    result = flask(["doctor"], env, tmp_path)
    assert result.returncode == 1
    assert "✘ GET /{phone_number_id} failed: Graph API error 190" in result.stdout
    assert "fix: replace the access token" in result.stdout
    assert "✔ GET /whatsapp/webhook answers Meta's verify challenge" in result.stdout
    assert "EAAG-wrong-token-0123456789" not in result.stdout + result.stderr
    assert "EAAG…6789" in result.stdout
    assert "1 check(s) failed" in result.stdout


def test_doctor_with_good_credentials_passes(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    result = flask(["doctor"], env, tmp_path)
    assert result.returncode == 0, result.stdout
    assert "token and phone number id work: Test Business" in result.stdout
    assert "gpt-4o-mini is listed" in result.stdout


def test_send_goes_through_the_configured_client(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    result = flask(["send", "+447700900123", "**Hello** from the shop"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    [sent] = graph.sent_texts()
    assert (sent["to"], sent["body"]) == ("447700900123", "*Hello* from the shop")
    assert graph.calls[0].headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_chat_talks_to_the_agent_through_the_pipeline_without_whatsapp(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    number = f"1555{secrets.randbelow(10**7):07d}"  # instance/chat.db outlives the test: start a new conversation
    result = flask(
        ["chat", "--name", "Ada", "--number", number], env, tmp_path, stdin="hello there\nsecond question\n/quit\n"
    )
    assert result.returncode == 0, result.stderr
    assert "bot> You said: hello there" in result.stdout
    assert "bot> You said: second question" in result.stdout
    assert graph.calls == []  # nothing went to the (fake) Meta: the chat runs on a local sandbox
    second = model.chat_requests()[1]
    assert [m["content"] for m in second["messages"] if m["role"] == "user"] == ["hello there", "second question"]


def test_replay_runs_a_failed_message_again(start_service, tmp_path, fakes):
    graph, model = fakes
    service = start_service(AK_WORKER__MAX_ATTEMPTS="1")
    model.always_fail(400)
    message = wh.text_message("please try again")
    service.post(wh.webhook(message))
    [apology] = graph.wait_for_texts(1)
    assert apology["body"].startswith("Sorry")
    assert service.wait_until_idle()["store"]["messages"]["failed"] == 1

    model.reset()
    result = flask(["replay", message["id"]], service.env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "was failed; it is received again" in result.stdout
    _, answer = graph.wait_for_texts(2)
    assert answer["body"] == "You said: please try again"
    assert flask(["replay", "wamid.unknown"], service.env, tmp_path).returncode == 1


def test_commands_print_no_log_lines_only_their_own_output(tmp_path):
    env = {**empty_environment(), "AK_STORE__URL": f"sqlite:///{tmp_path}/w.db"}
    for args in (["--help"], ["doctor"]):
        result = flask(args, env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # no "sandbox mode" or "offline model" WARNING lines, no INFO of the self-check


def test_doctor_in_sandbox_mode_does_not_contradict_itself(tmp_path):
    env = {**empty_environment(), "AK_STORE__URL": f"sqlite:///{tmp_path}/w.db"}
    result = flask(["doctor"], env, tmp_path)
    assert "✔ no access token: the local simulator" in result.stdout
    assert "✔ access token, verify token and app secret: generated for the sandbox" in result.stdout
    assert "is set" not in result.stdout and "is not set" not in result.stdout


def test_send_refuses_what_is_not_a_phone_number(tmp_path, fakes):
    graph, model = fakes
    env = base_environment(graph.url, model.url + "/v1", tmp_path / "w.db")
    result = flask(["send", "abc", "x"], env, tmp_path)
    assert result.returncode == 2
    assert "Invalid value for TO: 'abc' is not a phone number: give its digits with the country code" in result.stderr
    assert "sent to" not in result.stdout
    assert graph.calls == []
    result = flask(["send", "+44 7700-900123", "hi"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert flask(["send", "US.13491208655302741918", "hi"], env, tmp_path).returncode == 0
    assert [text["to"] for text in graph.sent_texts()] == ["447700900123", "US.13491208655302741918"]
