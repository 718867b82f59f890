"""The yardstick for the intake ceiling: a Flask app that only reads the webhook body and answers 200.

It does what any webhook receiver must do at the least (accept the connection, parse HTTP, read the body, answer),
and nothing of what ours adds (signature check, JSON, parsing, a durable insert, the hand-off to the worker). Run it
under the same gunicorn settings as ours and the ratio of the two ceilings is the price of that work.
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/whatsapp/webhook")
def receive() -> Response:
    request.get_data(cache=False)
    return Response("OK", status=200, mimetype="text/plain")


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok", status=200, mimetype="text/plain")
