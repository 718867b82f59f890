"""whatsapp.processes: a claim's holder, a SQLite store's server and a sandbox run count as running only while
their process runs."""

from __future__ import annotations

import os
import subprocess
import sys

from whatsapp.processes import pid_alive, start_time


def test_a_running_process_is_alive_and_an_exited_one_is_not_even_before_it_is_reaped():
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)


def test_start_time_tells_a_process_from_a_later_one_given_the_same_pid():
    ours = start_time(os.getpid())
    assert ours is not None and start_time(os.getpid()) == ours
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        later = start_time(child.pid)  # started after this test began, so after pytest's own start by many ticks
        assert later is not None and int(later) > int(ours)
    finally:
        child.communicate(timeout=10)
