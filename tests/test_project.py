"""pyproject.toml's [project] table says what requirements.txt installs, so tools and IDEs see the same project."""

from __future__ import annotations

import tomllib
from pathlib import Path

from whatsapp.health import VERSION

ROOT = Path(__file__).resolve().parent.parent


def runtime_requirements() -> list[str]:
    """The pinned lines of requirements.txt before its ``# Tests`` part."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    runtime = lines[: lines.index("# Tests")] if "# Tests" in lines else lines
    return [line.strip() for line in runtime if line.strip() and not line.startswith("#")]


def test_the_project_table_lists_the_runtime_requirements_and_the_version_healthz_shows():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"], key=str.lower) == sorted(runtime_requirements(), key=str.lower), (
        "a runtime requirement in requirements.txt goes into pyproject.toml's [project] dependencies too"
    )
    assert project["version"] == VERSION
    assert project["requires-python"] == ">=3.11"
