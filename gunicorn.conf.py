"""gunicorn's settings for this service: ``gunicorn app:app --config gunicorn.conf.py``.

Options given on the command line win over this file.
"""

import glob
import os
import shutil
import tempfile

# --- Metrics across worker processes --------------------------------------------------------------------------------
# prometheus_client adds up the workers' numbers through files in one folder (its multiprocess mode). The folder must
# be known before any process imports the library, so it is chosen here, when the master reads this file, and every
# worker inherits it. Set PROMETHEUS_MULTIPROC_DIR to choose it; otherwise a fresh temporary folder is made for this
# run and removed when gunicorn exits. See whatsapp/metrics.py.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="whatsapp-metrics-")
    os.environ["WHATSAPP_METRICS_TEMPORARY_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server):
    """Once, in the master, before the first worker: a chosen folder forgets the numbers of an earlier run."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "*.db")):
        os.remove(stale)


def child_exit(server, worker):
    """A worker ended (restarted, killed): its counters stay in the totals; its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and os.environ.get("WHATSAPP_METRICS_TEMPORARY_DIR") == folder:
        shutil.rmtree(folder, ignore_errors=True)
