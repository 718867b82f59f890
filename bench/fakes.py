"""The fake Graph API and fake OpenAI of ``whatsapp.testing``, run in a child process of their own.

In the bench's own process they would share its GIL with the load generator, and every reply the fake Graph
records would delay the next webhook the generator sends. In a child process they cost the generator nothing and
stand where the real peers stand: in another process, over loopback HTTP. Their records come back through a pipe;
arrival times are ``time.monotonic()``, which is system-wide and so comparable with the generator's.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from whatsapp.testing import http as fake_http
from whatsapp.testing.graph import FakeGraph
from whatsapp.testing.openai_server import FakeOpenAI
from whatsapp.testing.service import ACCESS_TOKEN

CHAT_PATH = "/v1/chat/completions"


def _commands(graph: FakeGraph, model: FakeOpenAI) -> dict[str, Any]:
    def texts() -> list[tuple[str, str | None, float]]:
        return [(t["to"], t["reply_to"], t["at"]) for t in graph.sent_texts()]

    def reads() -> list[tuple[str, float]]:
        return [(r["message_id"], r["at"]) for r in graph.reads()]

    def chats() -> list[tuple[float, int, int, str]]:
        """(arrival, request bytes, number of messages, last user text) of every chat request."""
        found = []
        for request in model.requests:
            if request.path != CHAT_PATH or not isinstance(request.json, dict):
                continue
            messages = request.json.get("messages") or []
            users = [m.get("content") for m in messages if m.get("role") == "user"]
            last = users[-1] if users and isinstance(users[-1], str) else ""
            found.append((request.at, len(request.body), len(messages), last))
        return found

    def wait_texts(count: int, to: str | None, timeout: float) -> bool:
        try:
            graph.wait_for_texts(count, to=to, timeout=timeout)
        except AssertionError:
            return False
        return True

    def reset() -> None:
        graph.reset()
        model.reset()

    return {
        "urls": lambda: (graph.url, model.url),
        "reset": reset,
        "delay": model.delay,
        "texts": texts,
        "text_count": lambda: len(graph.sent_texts()),
        "failed_sends": lambda: len(graph.failed_sends()),
        "reads": reads,
        "chats": chats,
        "wait_texts": wait_texts,
    }


def _serve(pipe: Connection) -> None:
    # The fakes write an answer's head and body in two sends; with Nagle's algorithm on, the body then waits for
    # the client's delayed ACK of the head: 40 ms per call on Linux, a stall no real peer adds. Turn it off here.
    fake_http._Handler.disable_nagle_algorithm = True
    graph = FakeGraph(access_token=ACCESS_TOKEN).start()
    model = FakeOpenAI().start()
    commands = _commands(graph, model)
    try:
        while True:
            try:
                name, args = pipe.recv()
            except EOFError:
                return
            if name == "stop":
                pipe.send(("ok", None))
                return
            try:
                pipe.send(("ok", commands[name](*args)))
            except Exception as error:  # the bench decides what a failure means
                pipe.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        model.stop()
        graph.stop()


class Fakes:
    """Handle on the child process: ``call("texts")`` and friends (see ``_commands``)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), name="bench-fakes", daemon=True)
        self._process.start()
        child.close()
        self.graph_url, self.model_url = self.call("urls")

    def call(self, name: str, *args: Any) -> Any:
        self._pipe.send((name, args))
        kind, value = self._pipe.recv()
        if kind == "error":
            raise RuntimeError(f"fakes: {name} failed: {value}")
        return value

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self.call("stop")
            except (EOFError, OSError):
                pass
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
        self._pipe.close()

    def __enter__(self) -> Fakes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
