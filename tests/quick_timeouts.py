"""The service's gunicorn worker with short deadlines, so that a test sees a slow client cut off in seconds.

Start a service with ``GUNICORN_CMD_ARGS="--worker-class tests.quick_timeouts.Worker"``.
"""

from whatsapp.slow_clients import ThreadWorker


class Worker(ThreadWorker):
    head_timeout = 2.0
    body_timeout = 2.0
