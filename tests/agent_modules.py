"""A user's own project for the service to load: an ``agents`` package with the modules a test writes.

The package's ``__init__.py`` is the repository's, as a user copying the project would have it; the service
started with ``start_service(project=...)`` finds this package ahead of the repository's.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def agent_project(folder: Path, modules: dict[str, str]) -> Path:
    """``folder/project/agents/`` with the repository's ``__init__.py`` and ``modules`` (file name -> source)."""
    package = folder / "project" / "agents"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text((ROOT / "agents" / "__init__.py").read_text())
    for name, source in modules.items():
        (package / name).write_text(textwrap.dedent(source))
    return package.parent
