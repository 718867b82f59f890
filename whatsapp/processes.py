"""Whether a process of this machine still runs: one answer for the worker's sweep (a claim whose holder died is
released), the one-server check on a SQLite store and the sandbox's once-per-run start-up line."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs, here or as another user's process; a zombie (exited, not yet reaped) is dead.

    ``/proc`` tells a zombie apart on Linux; where there is none (macOS), signal 0 asks the kernel instead.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):  # a /proc without this pid: no such process
            return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def start_time(pid: int) -> str | None:
    """When ``pid`` started (Linux: clock ticks since boot), or None where /proc is missing (macOS).

    With the pid it names one process: a pid the system gave again to a new process has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]
