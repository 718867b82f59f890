from __future__ import annotations

import subprocess
import sys

import pytest

from whatsapp import ConfigError
from whatsapp.config import load_settings
from whatsapp.testing.service import ROOT

LIVE = {
    "AK_WHATSAPP__ACCESS_TOKEN": "token",
    "AK_WHATSAPP__VERIFY_TOKEN": "verify",
    "AK_WHATSAPP__PHONE_NUMBER_ID": "106540352242922",
    "AK_WHATSAPP__APP_SECRET": "secret",
}


def load(tmp_path, environ=None, yaml_text=None, dotenv_text=None):
    config = tmp_path / "config.yaml"
    if yaml_text is not None:
        config.write_text(yaml_text)
    dotenv = tmp_path / ".env"
    if dotenv_text is not None:
        dotenv.write_text(dotenv_text)
    return load_settings(
        environ or {},
        config_path=config if yaml_text is not None else None,
        dotenv_path=dotenv,
        instance_path=tmp_path / "instance",
    )


def test_defaults(tmp_path):
    settings = load(tmp_path)
    assert settings.whatsapp.api_version == "v24.0"
    assert settings.whatsapp.graph_url == "https://graph.facebook.com"
    assert settings.whatsapp.agent == "general"
    assert settings.whatsapp.agent_acknowledgement is None
    assert settings.whatsapp.typing_indicator is True
    assert settings.api.max_file_size == 10 * 1024 * 1024
    assert settings.worker.threads == 256
    assert settings.worker.job_timeout == 300
    assert settings.openai.model == "gpt-4o-mini"
    assert settings.store.url == f"sqlite:///{(tmp_path / 'instance' / 'whatsapp.db').resolve()}"
    assert settings.mode == "sandbox" and not settings.signature_required


def test_precedence_is_defaults_then_yaml_then_dotenv_then_environment(tmp_path):
    yaml_text = (
        "whatsapp:\n  agent: from-yaml\n  api_version: v21.0\n  agent_acknowledgement: yaml ack\n"
        "api:\n  max_file_size: 100\n"
    )
    dotenv_text = "AK_WHATSAPP__AGENT=from-dotenv\nAK_WHATSAPP__API_VERSION=v25.0\n"
    environ = {"AK_WHATSAPP__AGENT": "from-env"}
    settings = load(tmp_path, environ, yaml_text, dotenv_text)
    assert settings.whatsapp.agent == "from-env"  # environment beats .env
    assert settings.whatsapp.api_version == "v25.0"  # .env beats yaml
    assert settings.whatsapp.agent_acknowledgement == "yaml ack"  # yaml beats defaults
    assert settings.api.max_file_size == 100
    assert settings.worker.threads == 256  # default


def test_openai_variables_are_read_from_the_environment_and_dotenv(tmp_path):
    settings = load(tmp_path, {"OPENAI_BASE_URL": "http://localhost:11434/v1"}, dotenv_text="OPENAI_API_KEY=sk-x\n")
    assert settings.openai.base_url == "http://localhost:11434/v1"
    assert settings.openai.api_key == "sk-x"


def test_config_path_comes_from_ak_config(tmp_path):
    other = tmp_path / "elsewhere.yaml"
    other.write_text("whatsapp:\n  agent: shop\n")
    settings = load_settings({"AK_CONFIG": str(other)}, dotenv_path=None, instance_path=tmp_path)
    assert settings.whatsapp.agent == "shop"


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"AK_WORKER__THREADS": "many"}, ["worker.threads", "AK_WORKER__THREADS", "config.yaml"]),
        ({"AK_WORKER__THREADS": "0"}, ["worker.threads", "positive whole number"]),
        ({"AK_WORKER__JOB_TIMEOUT": "0"}, ["worker.job_timeout", "positive number", "AK_WORKER__JOB_TIMEOUT"]),
        ({"AK_WORKER__JOB_TIMEOUT": "-5"}, ["worker.job_timeout", "positive number"]),
        ({"AK_WHATSAPP__TYPING_INDICATOR": "maybe"}, ["whatsapp.typing_indicator", "true or false"]),
        ({"AK_WHATSAPP__NO_SUCH_THING": "1"}, ["whatsapp.no_such_thing", "not a known setting"]),
        (
            {"AK_WHATSAPP__ACCESS_TOKEN": "t", "AK_WHATSAPP__PHONE_NUMBER_ID": "1"},
            ["whatsapp.verify_token", "AK_WHATSAPP__VERIFY_TOKEN"],
        ),
        ({**LIVE, "AK_WHATSAPP__PHONE_NUMBER_ID": ""}, ["whatsapp.phone_number_id", "AK_WHATSAPP__PHONE_NUMBER_ID"]),
        ({"AK_STORE__URL": "postgres://x"}, ["store.url", "AK_STORE__URL"]),
    ],
)
def test_a_bad_setting_is_named_in_one_sentence(tmp_path, environ, names):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, environ)
    message = str(raised.value)
    for name in names:
        assert name in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_yaml_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path, yaml_text="whatsapp: [unclosed")
    with pytest.raises(ConfigError, match="unknown section 'whatsap'"):
        load(tmp_path, yaml_text="whatsap:\n  agent: x\n")


def test_a_bad_setting_in_config_yaml_is_located_by_line_and_column(tmp_path):
    yaml_text = "whatsapp:\n  agent: shop\nworker:\n  max_attempts: 3\n  threads: many\n"
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, yaml_text=yaml_text)
    error = raised.value
    assert (error.path, error.line, error.column) == (tmp_path / "config.yaml", 5, 12)  # where "many" starts
    assert str(error) == (
        f"worker.threads (line 5, column 12 of {tmp_path / 'config.yaml'}) must be a positive whole number, not "
        "'many': set AK_WORKER__THREADS in the environment or .env, or worker.threads in config.yaml."
    )
    assert str(error).count(". ") == 0


def test_a_setting_the_environment_overrides_is_not_blamed_on_config_yaml(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, {"AK_WORKER__THREADS": "lots"}, yaml_text="worker:\n  threads: 4\n")
    assert (raised.value.path, raised.value.line, raised.value.column) == (None, None, None)
    assert "line" not in str(raised.value) and "'lots'" in str(raised.value)


def test_each_of_several_bad_settings_keeps_its_place(tmp_path):
    yaml_text = "log:\n  format: xml\nwhatsapp:\n  typo: 1\nstore:\n  url: postgres://db\n"
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, {"AK_WORKER__THREADS": "0"}, yaml_text=yaml_text)
    places = {str(problem).split(" ")[0]: (problem.line, problem.column) for problem in raised.value.problems}
    assert places == {
        "whatsapp.typo": (4, 9),
        "worker.threads": (None, None),
        "log.format": (2, 11),
        "store.url": (6, 8),
    }
    assert str(raised.value).startswith("4 settings need fixing: whatsapp.typo (line 4, column 9 of ")
    assert raised.value.line is None  # the sentence names them all; the places are the problems'


@pytest.mark.parametrize(
    ("yaml_text", "place", "words"),
    [
        ("whatsapp:\n  agent: [unclosed\n", (3, 1), "is not valid YAML at line 3, column 1 (ParserError)."),
        ("worker:\n  threads: 2\nwhatsap:\n  agent: x\n", (3, 1), "has an unknown section 'whatsap' at line 3"),
        ("whatsapp:\n  agent: x\nworker: 4\n", (3, 1), "The section 'worker' at line 3, column 1 of"),
        ("- whatsapp\n", (1, 1), "must hold a mapping of sections such as 'whatsapp:', not what is at line 1"),
    ],
    ids=["not-yaml", "unknown-section", "section-not-a-mapping", "not-a-mapping"],
)
def test_a_config_yaml_that_cannot_be_read_is_located(tmp_path, yaml_text, place, words):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, yaml_text=yaml_text)
    assert (raised.value.line, raised.value.column) == place
    assert words in str(raised.value)


def test_a_yaml_error_never_quotes_the_file(tmp_path):
    # PyYAML's own message would quote the line (and here an alias name), which may be a secret.
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, yaml_text="whatsapp:\n  access_token: *EAAG-secret-token\n")
    assert "EAAG" not in str(raised.value)
    assert (raised.value.line, raised.value.column) == (2, 17)


def test_secrets_never_appear_in_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, {"AK_WHATSAPP__ACCESS_TOKEN": "EAAG-secret-token", "AK_WHATSAPP__PHONE_NUMBER_ID": "1"})
    assert "EAAG-secret-token" not in str(raised.value)


def test_the_service_refuses_to_start_with_one_sentence(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "AK_WORKER__THREADS": "lots", "AK_STORE__URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.strip() == (
        "Configuration error: worker.threads must be a positive whole number, not 'lots': "
        "set AK_WORKER__THREADS in the environment or .env, or worker.threads in config.yaml."
    )


def test_every_missing_or_wrong_setting_is_named_in_one_message(tmp_path):
    environ = {"AK_WHATSAPP__ACCESS_TOKEN": "t", "AK_WORKER__THREADS": "lots", "AK_WHATSAPP__TYPO": "1"}
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, environ)
    assert str(raised.value) == (
        "4 settings need fixing: whatsapp.typo is not a known setting (from config.yaml or AK_WHATSAPP__TYPO); "
        "worker.threads must be a positive whole number, not 'lots': set AK_WORKER__THREADS in the environment or "
        ".env, or worker.threads in config.yaml; whatsapp.verify_token and whatsapp.phone_number_id are required "
        "with an access token: set AK_WHATSAPP__VERIFY_TOKEN and AK_WHATSAPP__PHONE_NUMBER_ID in the environment or "
        ".env, or whatsapp.verify_token and whatsapp.phone_number_id in config.yaml; whatsapp.app_secret is required "
        "with an access token, so that only Meta can post webhooks: set AK_WHATSAPP__APP_SECRET in the environment "
        "or .env, or whatsapp.app_secret in config.yaml (App settings > Basic > App secret), or set "
        "whatsapp.allow_unsigned to true to accept unsigned webhooks, which lets anyone post messages."
    )


@pytest.mark.parametrize("number", ["+15551234567", "+1 555 123 4567", "1555-123-4567"])
def test_a_phone_number_given_as_the_phone_number_id_is_refused_with_the_fix(tmp_path, number):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, {**LIVE, "AK_WHATSAPP__PHONE_NUMBER_ID": number})
    assert str(raised.value) == (
        f"whatsapp.phone_number_id is {number!r}, which looks like a phone number: it must be the number's id shown "
        "under WhatsApp > API Setup > Phone number ID (digits only, like 106540352242922): set "
        "AK_WHATSAPP__PHONE_NUMBER_ID in the environment or .env, or whatsapp.phone_number_id in config.yaml."
    )
