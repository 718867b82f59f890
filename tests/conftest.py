from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from whatsapp.testing.graph import FakeGraph
from whatsapp.testing.openai_server import FakeOpenAI
from whatsapp.testing.service import ACCESS_TOKEN, Service, base_environment


@pytest.fixture(scope="session")
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(access_token=ACCESS_TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def model() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fakes(graph: FakeGraph, model: FakeOpenAI) -> Iterator[tuple[FakeGraph, FakeOpenAI]]:
    graph.reset()
    model.reset()
    yield graph, model
    model.release()


@pytest.fixture
def start_service(tmp_path, fakes) -> Iterator[Callable[..., Service]]:
    """``start_service(workers=2, threads=4, project=None, **environment)`` runs gunicorn against the fakes.

    ``project`` is a folder holding the user's own ``agents`` package (see ``tests/agent_modules.py``).
    """
    graph, model = fakes
    started: list[Service] = []

    def start(workers: int = 2, threads: int = 4, project: Path | None = None, **environment: str) -> Service:
        env = base_environment(graph.url, model.url + "/v1", tmp_path / "whatsapp.db")
        env.update(environment)
        service = Service(tmp_path, env, workers=workers, threads=threads, project=project)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def service(start_service) -> Service:
    return start_service()
