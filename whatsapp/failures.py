"""How a failed attempt is named: a short reason for the logs and the inbox, a class for the metrics.

Apart from the handler, so that the worker depends on its ``JobHandler`` protocol only, never on the pipeline.
"""

from __future__ import annotations

import openai

from .errors import GraphAPIError


def describe(error: BaseException) -> str:
    """A short reason for logs and the inbox; never carries a secret (our errors don't hold any)."""
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, GraphAPIError) and error.hint:
        reason = f"{reason} -- {error.hint}"
    return reason[:400]


def failure_class(error: BaseException | None) -> str:
    """What kind of failure failed a message, for the metrics: graph (Graph refused a send), model (the model API
    failed), crashed (no error: its worker died, or its attempt ran past ``worker.job_timeout``, every time) or
    internal (any other error)."""
    if error is None:
        return "crashed"
    if isinstance(error, GraphAPIError):
        return "graph"
    if isinstance(error, openai.OpenAIError):
        return "model"
    return "internal"
