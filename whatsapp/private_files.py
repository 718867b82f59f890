"""Files that hold customers' messages are readable by the service's own user only.

The store and the sandbox's records hold conversations, phone numbers and the sandbox's generated secrets. A folder
the service creates for them is ``0700`` and each SQLite file ``0600``; SQLite gives its ``-wal`` and ``-shm`` files
the permissions of the database file, so creating the database file first is what keeps those private too.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("whatsapp.files")

SIDE_FILES = ("", "-wal", "-shm", "-journal")


def private_database(path: str | os.PathLike[str]) -> None:
    """Create ``path``'s folders ``0700`` and the database file ``0600`` if missing; tighten existing ones."""
    database = Path(path)
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
    for suffix in SIDE_FILES:
        _owner_only(Path(f"{database}{suffix}"))


def _owner_only(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
    except FileNotFoundError:
        return
    except OSError as error:
        log.warning("%s is readable by other users and cannot be made private: %s", path, error)
