"""The app factory: settings, store, Graph client, agents, handler and worker, wired once per process."""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click
import httpx2
import openai
import pydantic
from flask import Flask, Response, request
from openai.types.chat import ChatCompletion

from . import logs
from .agents_runtime import Agent, ChatRunner, OfflineModel, load_agents
from .client import GraphClient
from .config import Settings, how_to_set, load_settings, validate
from .errors import ConfigError, StoreUnavailable
from .extension import WhatsAppService, current_service, install
from .handler import AgentWhatsAppRequestHandler
from .messages import parse_webhook
from .questions import Transcriber
from .store import one_server, open_store
from .worker import Worker

log = logging.getLogger("whatsapp")

#: ``gunicorn.conf.py`` sets it to ``gunicorn`` before gunicorn loads the app: its hooks serve it (see create_app).
SERVER_VARIABLE = "WHATSAPP_SERVER"


def create_app(
    settings: Settings | None = None,
    *,
    handler: type[AgentWhatsAppRequestHandler] | None = None,
    serve: bool | None = None,
) -> Flask:
    """Build the Flask app. Raises :class:`ConfigError` (one sentence) when a setting is missing or wrong.

    ``serve``: this process serves the app: :func:`start_serving` (hold the store, say what a server says at start)
    and :func:`start_worker`. By default it does, except in two cases. A ``flask`` command other than ``run`` never
    serves, so that ``flask whatsapp doctor`` never claims a customer's message. And under gunicorn, whose
    ``gunicorn.conf.py`` says so before it loads the app (:data:`SERVER_VARIABLE`), the app is only built here and the
    file's hooks serve it: gunicorn builds a preloaded app in its master and forks the workers from it, and a worker
    started in the master would answer every message there (its threads do not survive the fork).
    """
    # instance/ of the folder the service starts in, like .env and config.yaml: a checkout's own data stays in the
    # checkout, and a test (or a second copy) started in another folder keeps its data there.
    app = Flask("whatsapp", root_path=None, instance_path=os.path.abspath("instance"))
    under_gunicorn = os.environ.get(SERVER_VARIABLE) == "gunicorn"
    if not under_gunicorn and "gunicorn.arbiter" in sys.modules:
        raise ConfigError(
            "gunicorn was started without this project's gunicorn.conf.py, whose hooks start the worker in each "
            "process and share /metrics between them: start it with --config gunicorn.conf.py, as the Procfile does"
        )
    if serve is None:
        serve = not under_gunicorn and _flask_command() in (None, "run")
    settings = settings or load_settings(instance_path=app.instance_path)
    logs.configure(settings.log.format, logging.INFO if serve or under_gunicorn else logging.WARNING)  # commands print
    validate(settings)  # settings built by hand get the same refusals as loaded ones
    if settings.mode == "sandbox":
        from . import sandbox

        settings = sandbox.configure(settings, app.instance_path)
    app.config["MAX_CONTENT_LENGTH"] = None  # the webhook enforces its own limit with a plain 413

    agents = _load_agents(settings)
    store = open_store(settings.store.url, settings.store.retention_days)
    client = GraphClient(
        access_token=settings.whatsapp.access_token or "",
        phone_number_id=settings.whatsapp.phone_number_id or "",
        graph_url=settings.whatsapp.graph_url,
        api_version=settings.whatsapp.api_version,
        pool_size=settings.worker.threads + 2,
        media_hosts=settings.api.media_hosts,
    )
    if settings.mode == "sandbox":
        sandbox.init_app(app, client, public=settings.sandbox.public)
    else:
        from .home import bp as home_bp

        app.register_blueprint(home_bp)
    handler_class = handler or _handler_class(settings)
    watch = sandbox.current_sandbox(app).watch_model if settings.mode == "sandbox" else None
    runner, transcribe = _model(settings, watch, connections=settings.worker.threads + 2)
    job_handler = handler_class(
        settings=settings, store=store, client=client, runner=runner, agents=agents, transcribe=transcribe
    )
    worker = Worker(store, job_handler, settings.worker, retention_days=settings.store.retention_days)
    install(app, WhatsAppService(settings=settings, store=store, worker=worker, handler=job_handler))

    from .cli import whatsapp as whatsapp_cli
    from .health import bp as health_bp
    from .metrics import bp as metrics_bp
    from .webhook import bp as webhook_bp

    app.register_blueprint(webhook_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(metrics_bp)
    app.register_error_handler(TimeoutError, _body_too_slow)
    app.cli.add_command(whatsapp_cli)

    if serve:
        start_serving(app)
        start_worker(app)
    return app


def start_serving(app: Flask, server: int | None = None) -> None:
    """Make this process's server the one serving ``app``'s store, and log what a server's log says at start.

    ``server`` is the pid that stands for the whole server, by which another server started on the same SQLite
    store recognises this one: gunicorn's master (``gunicorn.conf.py`` passes it), by default this process. Raises
    :class:`ConfigError` when another server of this machine holds the store. A command (doctor, send…) never calls
    this: it says what matters itself.
    """
    settings = current_service(app).settings
    server = server or os.getpid()
    if settings.mode == "sandbox":
        from . import sandbox

        sandbox.announce(app, server)
    _announce(settings)
    if settings.store.url.startswith("sqlite:///"):
        one_server.hold(settings.store.url.removeprefix("sqlite:///"), server)


def start_worker(app: Flask) -> None:
    """Start ``app``'s background worker in this process (again after a fork); it stops when the process exits."""
    worker = current_service(app).worker
    worker.start()
    atexit.register(worker.stop)


def _announce(settings: Settings) -> None:
    if not settings.signature_required:  # only live with whatsapp.allow_unsigned: said at every start
        log.warning(
            "INSECURE: whatsapp.allow_unsigned is true and no app secret is set: webhook signatures are NOT "
            "checked, so anyone who finds the URL can post messages that the agent answers at your cost (%s)",
            how_to_set("whatsapp", "app_secret"),
        )
    if not (settings.openai.api_key or settings.openai.base_url):
        log.warning("no OPENAI_API_KEY or OPENAI_BASE_URL: agents answer with the offline demonstration model")


def _body_too_slow(error: TimeoutError) -> Response:
    """gunicorn.conf.py's worker gives a request body a deadline (whatsapp/slow_clients.py): past it, a 408."""
    log.warning("%s %s answered 408: %s", request.method, request.path, error)
    return Response("request body too slow", status=408, mimetype="text/plain")


def warm_up(app: Flask) -> None:
    """Make the first webhook as fast as the thousandth: start the worker, open the store's connections, and run a
    health check through the app and an empty webhook through the parser, so that what they load is ready (the
    webhook itself is not called: /metrics would count it).

    gunicorn calls this in each worker process before it accepts connections (``post_worker_init`` in
    ``gunicorn.conf.py``)."""
    service = current_service(app)
    start_worker(app)
    try:
        service.store.warm_up()
    except StoreUnavailable as error:  # the webhook answers 503 until the store is back, and the worker retries
        log.warning("could not open the store's connections before serving: %s", error)
    parse_webhook({"object": "whatsapp_business_account", "entry": []})
    with app.test_client() as client:
        client.get("/healthz")


def _flask_command() -> str | None:
    """The ``flask`` command that is loading the app: ``run``, or the CLI's own name while it looks up another
    command (``whatsapp``, ``shell``...); None outside the ``flask`` CLI (gunicorn, a test, another WSGI server)."""
    command = click.get_current_context(silent=True)
    return command.info_name if command else None


def _load_agents(settings: Settings) -> dict[str, Agent]:
    agents = load_agents()
    if settings.whatsapp.agent not in agents:
        names = ", ".join(sorted(agents)) or "none"
        raise ConfigError(
            f"whatsapp.agent is {settings.whatsapp.agent!r}, but the agents that exist are: {names} "
            f"({how_to_set('whatsapp', 'agent')})."
        )
    return agents


def _handler_class(settings: Settings) -> type[AgentWhatsAppRequestHandler]:
    """``whatsapp.handler: "module:Class"`` names a subclass of the handler."""
    name = settings.whatsapp.handler
    if not name:
        return AgentWhatsAppRequestHandler
    module_name, _, class_name = name.partition(":")
    how = how_to_set("whatsapp", "handler")
    if not (module_name and class_name):
        raise ConfigError(f"whatsapp.handler {name!r} must be written module:Class ({how}).")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a broken module: say what and where in one line, instead of a traceback
        if isinstance(error, ModuleNotFoundError) and error.name == module_name:
            raise ConfigError(
                f"whatsapp.handler {name!r} could not be imported as module:Class: there is no module {module_name} "
                f"in the folder the service starts in or on PYTHONPATH ({how})."
            ) from None
        raise ConfigError(f"whatsapp.handler {name!r} could not be imported: {_failure(error)}.") from None
    found = getattr(module, class_name, None)
    if found is None:
        raise ConfigError(f"whatsapp.handler {name!r}: the module {module_name} has no {class_name} ({how}).")
    if not (isinstance(found, type) and issubclass(found, AgentWhatsAppRequestHandler)):
        raise ConfigError(f"whatsapp.handler {name!r} is not a subclass of AgentWhatsAppRequestHandler.")
    return found


def _failure(error: Exception) -> str:
    """``NameError: name 'x' is not defined (myhandler.py, line 3)``: the error and the user's line that raised it."""
    if isinstance(error, SyntaxError):
        where = (error.filename, error.lineno)
    else:
        frames = traceback.extract_tb(error.__traceback__)
        own = [f for f in frames if "importlib" not in f.filename] or frames
        where = (own[-1].filename, own[-1].lineno) if own else (None, None)
    text = str(error.msg if isinstance(error, SyntaxError) else error).splitlines()[0] if str(error) else ""
    line = f" ({os.path.basename(where[0])}, line {where[1]})" if where[0] else ""
    return f"{type(error).__name__}{': ' + text if text else ''}{line}"


def _model(
    settings: Settings, watch: Callable[[Any], Any] | None = None, connections: int = 100
) -> tuple[ChatRunner, Transcriber]:
    """The real model through the ``openai`` SDK; the offline demonstration model when none is configured.

    ``watch`` wraps the model client (the sandbox keeps each request for the simulator's inspector). The SDK keeps
    at most 100 idle connections; with more jobs than that waiting on the model at once, every call past the
    hundredth would open (TLS and all) and close a connection of its own: ``connections`` is the number of jobs
    this process runs at once, plus a margin.
    """
    config = settings.openai
    watch = watch or (lambda model: model)
    if not (config.api_key or config.base_url):
        return ChatRunner(watch(OfflineModel()), config.model, config.max_steps), _offline_transcript
    client = openai.OpenAI(
        api_key=config.api_key or "no-key-needed",
        base_url=config.base_url,
        timeout=config.timeout,
        max_retries=2,
        http_client=openai.DefaultHttpxClient(
            limits=httpx2.Limits(max_connections=max(1000, connections), max_keepalive_connections=connections)
        ),
    )

    def transcribe(audio: bytes, filename: str, mime_type: str) -> str:
        result = client.audio.transcriptions.create(model=config.transcription_model, file=(filename, audio, mime_type))
        return result.text

    return ChatRunner(watch(ChatCompletions(client)), config.model, config.max_steps), transcribe


class ChatCompletions:
    """``chat.completions.create`` without the SDK's request transform and response construction.

    The SDK walks every message of a request against its TypedDict annotations and gives back our plain JSON
    unchanged: 64 % of the worker's CPU at turn 500 of a conversation (docs/benchmarks.md). It then builds the
    ``ChatCompletion`` field by field in Python (about 0.7 ms a response, a quarter of the model call's CPU under
    load); pydantic's own parser does it in about 0.03 ms, and the SDK's lax construction is kept for a server whose
    answer does not validate. Retries, timeouts and errors are the SDK's own.
    """

    def __init__(self, client: openai.OpenAI) -> None:
        self._client = client

    def create(self, *, model: str, messages: list[dict], **kwargs: Any) -> ChatCompletion:
        body = {"model": model, "messages": messages, **kwargs}
        raw = self._client.post("/chat/completions", body=body, cast_to=bytes)
        try:
            return ChatCompletion.model_validate_json(raw)
        except pydantic.ValidationError:
            return ChatCompletion.construct(**json.loads(raw))


def _offline_transcript(audio: bytes, filename: str, mime_type: str) -> str:
    return (
        f"[a voice note of {len(audio) // 1024} KB that the offline demonstration model cannot transcribe; "
        "set OPENAI_API_KEY to have it heard]"
    )
