"""Files that hold conversations are the service user's alone: folders it creates 0700, SQLite files (with their
-wal and -shm) 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from whatsapp.sandbox import _records
from whatsapp.store import InboxEntry
from whatsapp.store.sqlite import SQLiteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022): without care, new folders are 0755 and files 0644, readable by every local user."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_store_folder_and_files_are_private(tmp_path, open_umask):
    path = tmp_path / "instance" / "whatsapp.db"
    store = SQLiteStore(path)
    entry = InboxEntry(id="wamid.1", sender="15550001", timestamp=int(time.time()), payload={}, received_at=time.time())
    store.record([entry])
    assert mode(tmp_path / "instance") == 0o700
    for name in ("whatsapp.db", "whatsapp.db-wal", "whatsapp.db-shm"):
        assert mode(tmp_path / "instance" / name) == 0o600, name
    store.close()


def test_an_existing_store_file_readable_by_others_is_made_private(tmp_path, open_umask):
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    path.chmod(0o644)
    SQLiteStore(path).close()
    assert mode(path) == 0o600


def test_the_sandbox_records_are_private(tmp_path, open_umask):
    records = _records(str(tmp_path / "instance"))
    records.secret("probe", lambda: "value")
    assert mode(tmp_path / "instance") == 0o700
    assert mode(tmp_path / "instance" / "sandbox.db") == 0o600
    assert mode(tmp_path / "instance" / "sandbox.db-wal") == 0o600
