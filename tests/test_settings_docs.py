"""README's settings table, ``.env.example`` and ``config.example.yaml`` name every setting the code reads, with
its real default: a newcomer copying either file gets the defaults, and nothing is accepted but undocumented."""

from __future__ import annotations

import re
from dataclasses import fields

import yaml

from whatsapp.config import _OPENAI_VARIABLES, _SECTIONS, Settings, env_name, load_settings
from whatsapp.testing.service import ROOT

README = (ROOT / "README.md").read_text()
ENV_EXAMPLE = ROOT / ".env.example"
YAML_EXAMPLE = ROOT / "config.example.yaml"
ALIASES = {("openai", key): variable for variable, key in _OPENAI_VARIABLES.items()}


def settings_in_code() -> dict[str, object]:
    """``section.key`` -> default, for every setting."""
    return {f"{name}.{f.name}": getattr(cls(), f.name) for name, cls in _SECTIONS.items() for f in fields(cls)}


def readme_table() -> dict[str, tuple[str, str]]:
    """``section.key`` -> (environment column, default column) of README's settings table."""
    section = README.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    return {key.strip("| `"): (env, default) for key, env, default, _ in rows}


def shown(default: object) -> str:
    """How the table shows a default."""
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`" if default else "empty"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def defaults() -> Settings:
    return load_settings({}, dotenv_path=None, config_path=None, instance_path="instance")


def test_the_readme_table_has_every_setting_with_its_environment_name_and_default():
    code, table = settings_in_code(), readme_table()
    assert sorted(table) == sorted(code)
    for name, default in code.items():
        section, key = name.split(".")
        env, documented = table[name]
        assert f"`{env_name(section, key)}`" in env, name
        if (section, key) in ALIASES:
            assert f"`{ALIASES[section, key]}`" in env, name
        expected = "`sqlite:///instance/whatsapp.db`" if name == "store.url" else shown(default)
        assert documented.startswith(expected), f"{name}: README says {documented}, the code {expected}"


def test_env_example_lists_every_setting_and_as_copied_gives_the_defaults():
    listed = set(re.findall(r"^([A-Z_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    for name in settings_in_code():
        section, key = name.split(".")
        assert {env_name(section, key), ALIASES.get((section, key))} & listed, f"{name} is not in .env.example"
    assert load_settings({}, dotenv_path=ENV_EXAMPLE, instance_path="instance") == defaults()


def test_config_example_yaml_lists_every_setting_and_as_copied_gives_the_defaults():
    data = yaml.safe_load(YAML_EXAMPLE.read_text())
    assert sorted(f"{section}.{key}" for section, keys in data.items() for key in keys) == sorted(settings_in_code())
    assert load_settings({}, dotenv_path=None, config_path=YAML_EXAMPLE, instance_path="instance") == defaults()


def test_config_yaml_is_ignored_by_git_and_its_example_is_not():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "config.yaml" in ignored and ".env" in ignored
    assert "config.example.yaml" not in ignored
