"""gunicorn's settings for this service, read by the Procfile, ``scripts/start``, the tests and the bench alike.

``gunicorn app:app --config gunicorn.conf.py --bind ...``: options given on the command line win over this file.
Sections: sizing (how many workers and threads), slow and oversized clients (what one client may cost), metrics
across worker processes, serving (which process starts what).

The app is loaded once, in the master, before it listens (``preload_app``): a worker is forked ready instead of
importing everything while connections already wait for it. Each worker then warms up (starts its background
worker, opens the store's connections, runs a health check and an empty webhook through the app) before it accepts
a connection, so the first webhook is acknowledged as fast as the thousandth.
"""

import glob
import os
import shutil
import signal
import sys
import tempfile

# --- Sizing ---------------------------------------------------------------------------------------------------------
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 8
preload_app = True  # see the top of this file

# --- Slow and oversized clients -------------------------------------------------------------------------------------
# A worker whose main loop is silent this long is killed and replaced (gthread: the loop, not a request).
timeout = 30
# An idle keep-alive connection is closed after this many seconds (it waits in the poller, not in a thread).
keepalive = 2
# Request line (method, path and query), number of header fields, and size of one header field, in bytes.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# The gthread worker, but a client gets no thread before its request head has arrived: the head within 10 s, the
# body within 30 s (see whatsapp/slow_clients.py; gunicorn itself has no timeout for either).
worker_class = "whatsapp.slow_clients.ThreadWorker"

# --- Metrics across worker processes --------------------------------------------------------------------------------
# prometheus_client adds up the workers' numbers through files in one folder (its multiprocess mode). The folder must
# be known before any process imports the library, so it is chosen here, when the master reads this file, and every
# worker inherits it. Set PROMETHEUS_MULTIPROC_DIR to choose it; otherwise a fresh temporary folder is made for this
# run and removed when gunicorn exits. See whatsapp/metrics.py.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="whatsapp-metrics-")
    os.environ["WHATSAPP_METRICS_TEMPORARY_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


# --- Serving --------------------------------------------------------------------------------------------------------
# gunicorn serves the app through the hooks below, and the app is told so here, before gunicorn loads it (no hook runs
# before a preloaded app is loaded): create_app then only builds it. The master builds a preloaded app and forks the
# workers from it, and a background worker started there would answer every message in the master, its threads lost
# at the fork. So on_starting (in the master, with preload_app) or post_worker_init (in each worker, without it)
# holds the store for this server and logs what a server says at start, and post_worker_init starts each worker
# process's own background worker. See create_app in whatsapp/service.py.
os.environ["WHATSAPP_SERVER"] = "gunicorn"


def on_starting(server):
    """Once, in the master, before it listens and before the first worker: a chosen metrics folder forgets the
    numbers of an earlier run, and an app preloaded in this process starts serving."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "*.db")):
        os.remove(stale)
    if server.cfg.preload_app:
        _start_serving(server.app.wsgi(), server.pid)


def _start_serving(app, server_pid):
    """Hold the store for the server ``server_pid`` and log what a server says at start; a configuration error
    (another server holds the store) stops gunicorn as app.py does."""
    from whatsapp import ConfigError
    from whatsapp.extension import is_whatsapp_app
    from whatsapp.service import start_serving

    if not is_whatsapp_app(app):  # another app run with this file (the bench's yardstick)
        return
    try:
        start_serving(app, server_pid)
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        sys.exit(3)  # gunicorn's "worker failed to boot": the master stops instead of restarting forever


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def post_fork(server, worker):
    """Keep the master's signal queue as this worker inherited it (see :func:`post_worker_init`)."""
    worker.inherited_signals = server.SIG_QUEUE


def _master_is_stopping(worker) -> bool:
    """A worker forked as gunicorn stops (it replaces one that exited on the same SIGTERM before the master handled
    it) finds the stop signal in its copy of the master's queue, or gets it there before its own handlers are set:
    either way it would never see it, and would claim messages until the master kills it at the graceful timeout, so
    it starts nothing and exits."""
    queued = worker.inherited_signals
    signals = set()
    while not queued.empty():
        signals.add(queued.get_nowait())
    return bool(signals & _STOP_SIGNALS)


def post_worker_init(worker):
    """In each worker process, after the fork and before it accepts connections: start serving (without
    preload_app), warm up (which starts this process's background worker), and on SIGTERM stop claiming at once (the
    running jobs get ``worker.shutdown_timeout`` when the process exits)."""
    from whatsapp.extension import current_service, is_whatsapp_app
    from whatsapp.service import warm_up

    app = worker.wsgi
    if not is_whatsapp_app(app):  # another app run with this file (the bench's yardstick)
        return
    if _master_is_stopping(worker):
        worker.alive = False
        return
    if not worker.cfg.preload_app:  # the app was built in this process, and the master has none
        _start_serving(app, worker.ppid)
    warm_up(app)
    background = current_service(app).worker
    graceful_exit = signal.getsignal(signal.SIGTERM)

    def stop_claiming_then_exit(signum, frame):
        background.stop_claiming()
        if callable(graceful_exit):
            graceful_exit(signum, frame)

    signal.signal(signal.SIGTERM, stop_claiming_then_exit)


def child_exit(server, worker):
    """A worker ended (restarted, killed): its counters stay in the totals; its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and os.environ.get("WHATSAPP_METRICS_TEMPORARY_DIR") == folder:
        shutil.rmtree(folder, ignore_errors=True)
