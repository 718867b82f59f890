"""Two servers started on one SQLite store (a second ``./scripts/start`` on another port, same checkout)."""

from __future__ import annotations

import pytest

from whatsapp.testing.service import Service


def test_a_second_server_on_the_same_sqlite_store_refuses_to_start_and_says_why(start_service, tmp_path):
    first = start_service(workers=2)
    second = Service(tmp_path, dict(first.env), workers=2)  # same folder, same settings, another port
    with pytest.raises(AssertionError, match="gunicorn exited with 3"):
        second.start()
    assert (
        f"Configuration error: Another server (pid {first.process.pid}) is serving the store {tmp_path}/whatsapp.db"
        in second.logs()
    )
    assert "AK_STORE__URL=sqlite:///instance/other.db" in second.logs()
    assert first.health()["status"] == "ok"  # the first one is untouched

    first.stop()
    second.start()  # the store is free once its server has stopped
    assert second.health()["status"] == "ok"
    second.stop()


def test_a_server_killed_with_sigkill_does_not_keep_its_store(start_service):
    service = start_service()
    service.kill()
    service.restart()  # the record of the dead server is stale: the new one takes over the store
    assert service.health()["status"] == "ok"
