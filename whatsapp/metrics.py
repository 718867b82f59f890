"""Prometheus metrics: ``GET /metrics``, with ``prometheus_client``.

Two kinds of numbers, each counted where it is true for every process at once:

- **Events** (messages received, answered, failed, retries, latencies, Graph errors) are counted by the process that
  saw them. Under gunicorn each worker is a process of its own, so ``gunicorn.conf.py`` gives them one folder
  (``PROMETHEUS_MULTIPROC_DIR``) where ``prometheus_client``'s multiprocess mode keeps each process's numbers; a
  scrape adds up every process's file, so it shows the same totals whichever worker answers it, and a worker that
  was restarted still counts. Without that folder (``flask run``, one process) they are this process's own.
- **State** (queue depth, the oldest waiting message, claims held) is read from the store at each scrape, so it is
  the same for every process, every instance behind a load balancer, and after a restart.

``api.metrics_token``, when set, must come with the scrape as ``Authorization: Bearer <token>``; unset, the page is
open on the address the service is bound to, like ``/healthz``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from .errors import StoreUnavailable
from .extension import current_service
from .store import State, Store

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

RECEIVED = Counter("whatsapp_messages_received", "Messages recorded in the inbox (first deliveries only).")
DUPLICATES = Counter("whatsapp_duplicate_deliveries", "Deliveries of a message id already in the inbox.")
ANSWERED = Counter("whatsapp_messages_answered", "Messages finished done (answered, or needing no answer).")
FAILED = Counter(
    "whatsapp_messages_failed",
    "Messages finished failed, by reason: graph (Graph refused a send), model (the model API failed), "
    "crashed (no attempt ended with an error: their worker died or ran past worker.job_timeout every time) or "
    "internal (any other error).",
    ["reason"],
)
RETRIES = Counter("whatsapp_retries", "Attempts that failed for a reason worth retrying and were put back to wait.")
DELIVERY_STATUSES = Counter(
    "whatsapp_delivery_statuses", "Status webhooks about our reply parts, by status (failed: undelivered).", ["status"]
)
GRAPH_SEND_ERRORS = Counter(
    "whatsapp_graph_send_errors",
    "Reply parts Graph refused, by Meta's error code (http_<status> without one, transport without an answer).",
    ["code"],
)
DOCUMENTS_UNREADABLE = Counter(
    "whatsapp_documents_unreadable", "Documents the customer was told could not be read (type, damage, budget)."
)

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
WEBHOOK_ACK = Histogram(
    "whatsapp_webhook_ack_seconds", "Time to answer a POST to the webhook (Meta wants < 250 ms median).", buckets=_FAST
)
MODEL = Histogram(
    "whatsapp_model_seconds", "Time the agent took to answer (every model call of a turn).", buckets=_SLOW
)
ANSWER = Histogram(
    "whatsapp_answer_seconds",
    "From the webhook receiving a message to Graph accepting the first part of its reply.",
    buckets=_SLOW,
)

bp = Blueprint("metrics", __name__)


class StoreState:
    """Gauges read from the store at each scrape: the same whichever process or instance answers."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("whatsapp_store_up", "1 when the store answered this scrape, else 0.")
        try:
            stats = self.store.stats()
        except StoreUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counts = stats.counts
        by_state = GaugeMetricFamily(
            "whatsapp_messages", "Messages in the store by state (finished ones until retention).", labels=["state"]
        )
        for state, count in counts.items():
            by_state.add_metric([state.value], count)
        yield by_state
        yield GaugeMetricFamily(
            "whatsapp_queue_depth", "Messages received and waiting for a worker.", value=counts[State.RECEIVED]
        )
        yield GaugeMetricFamily(
            "whatsapp_claims_held",
            "Messages a worker holds (claimed, or answered and being sent).",
            value=counts[State.CLAIMED] + counts[State.ANSWERED],
        )
        yield GaugeMetricFamily(
            "whatsapp_oldest_waiting_seconds",
            "Age of the oldest message not finished yet (0 when none).",
            value=stats.oldest_open_age_seconds,
        )


class _ThisProcess:
    """This process's own metrics (when there is no multiprocess folder), without the store's gauges twice."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


@bp.get("/metrics")
def scrape() -> Response:
    service = current_service()
    token = service.settings.api.metrics_token
    if token and not _bearer_matches(request.headers.get("Authorization", ""), token):
        return Response(
            "a bearer token is required", status=401, mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"}
        )
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(StoreState(service.store))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
