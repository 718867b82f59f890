"""One server per SQLite store.

Every process of one server (gunicorn's workers, its threads) shares the SQLite store safely. Two servers on one
file are another matter: a second ``./scripts/start`` on another port, from the same checkout, would silently share
``instance/whatsapp.db`` and each would answer the other's customers with its own agent and token. So the server that
starts first writes who it is beside the file (``whatsapp.db.server``), and another server on this machine refuses to
start while that one runs. Several servers on one store is what Redis is for (README, "Scaling out").
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from ..errors import ConfigError
from ..processes import pid_alive, start_time


def hold(database: str | os.PathLike[str], run: int) -> None:
    """Record the server ``run`` (the pid of gunicorn's master, or of ``flask run``) as the one serving ``database``.

    Raises :class:`ConfigError` when another server of this machine, still running, holds it.
    """
    marker = Path(f"{database}.server")
    me = {"host": socket.gethostname(), "pid": run, "started": start_time(run)}
    with open(marker, "a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # two servers booting at once: one reads, decides and writes at a time
        file.seek(0)
        try:
            holder = json.loads(file.read() or "{}")
        except ValueError:
            holder = {}
        if holder.get("pid") != run and holder.get("host") == me["host"] and _running(holder):
            raise ConfigError(
                f"Another server (pid {holder['pid']}) is serving the store {database} and two servers on one "
                "SQLite file would answer each other's customers: stop that one, or give this one its own store "
                "with AK_STORE__URL=sqlite:///instance/other.db (several servers on one store need Redis)."
            )
        file.seek(0)
        file.truncate()
        json.dump(me, file)


def _running(holder: dict) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return False
    return start_time(pid) == holder.get("started")  # not a new process that was given a dead server's pid
