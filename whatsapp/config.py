"""Settings, built once at start-up.

Sources, from low to high precedence: built-in defaults < ``config.yaml`` (path from ``AK_CONFIG``) < ``.env``
< the process environment. Environment names are ``AK_<SECTION>__<KEY>`` (``AK_WHATSAPP__VERIFY_TOKEN``), as in
the original design. Nothing else in the service reads ``os.environ``: everything it needs is in :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from .errors import ConfigError


@dataclass(frozen=True)
class WhatsAppSettings:
    verify_token: str | None = None
    access_token: str | None = None
    app_secret: str | None = None
    phone_number_id: str | None = None
    api_version: str = "v24.0"
    graph_url: str = "https://graph.facebook.com"
    agent: str = "general"
    agent_acknowledgement: str | None = None
    typing_indicator: bool = True
    handler: str | None = None
    allowed_senders: tuple[str, ...] = ()
    rate_limit_per_minute: int = 20
    commands: bool = True  # /reset and /help
    allow_unsigned: bool = False  # live without an app secret: anyone who finds the URL can post "messages"


@dataclass(frozen=True)
class ApiSettings:
    max_file_size: int = 10 * 1024 * 1024
    metrics_token: str | None = None  # when set, GET /metrics needs "Authorization: Bearer <token>"
    media_hosts: tuple[str, ...] = ("*.fbsbx.com",)  # where media is downloaded from (media_hosts.META_MEDIA_HOSTS)
    health_token: str | None = None  # /healthz shows its details only to "Authorization: Bearer <token>"


@dataclass(frozen=True)
class StoreSettings:
    url: str = ""
    retention_days: float = 7.0


@dataclass(frozen=True)
class WorkerSettings:
    threads: int = 256  # jobs at once per process: each mostly waits on the model
    lease_seconds: float = 30.0
    max_attempts: int = 5
    retry_delay: float = 2.0
    shutdown_timeout: float = 20.0
    job_timeout: float = 300.0  # an attempt running longer is given up and retried (a tool that never returns)


@dataclass(frozen=True)
class OpenAISettings:
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    base_url: str | None = None
    timeout: float = 60.0
    history_tokens: int = 8000
    history_images: int = 3
    max_input_chars: int = 8000
    max_steps: int = 8
    transcription_model: str = "whisper-1"


@dataclass(frozen=True)
class LogSettings:
    format: str = "text"  # text (for people) or json (one object per line, for log pipelines)


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class SandboxSettings:
    public: bool = False  # answer /simulator and /sandbox/... beyond this machine, with the key printed at start


@dataclass(frozen=True)
class Settings:
    whatsapp: WhatsAppSettings = field(default_factory=WhatsAppSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    log: LogSettings = field(default_factory=LogSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    # Sandbox mode or not: decided once, from the configured access token (sandbox mode later fills in a
    # generated one).
    sandboxed: bool | None = None

    def __post_init__(self) -> None:
        if self.sandboxed is None:
            object.__setattr__(self, "sandboxed", not self.whatsapp.access_token)

    @property
    def mode(self) -> str:
        """``live`` with an access token; ``sandbox`` (local simulator, fake Graph API) without one."""
        return "sandbox" if self.sandboxed else "live"

    @property
    def signature_required(self) -> bool:
        return bool(self.whatsapp.app_secret)


_SECTIONS: dict[str, type] = {
    "whatsapp": WhatsAppSettings,
    "api": ApiSettings,
    "store": StoreSettings,
    "worker": WorkerSettings,
    "openai": OpenAISettings,
    "log": LogSettings,
    "sandbox": SandboxSettings,
}
#: Settings that only mean something to a live deployment: with any of them set, a missing access token is a
#: mistake (misspelt, empty, lost in a redeploy), never a request for the sandbox.
LIVE_SETTINGS = ("verify_token", "app_secret", "phone_number_id")

# Variables of the openai SDK that it reads itself; we read them here so that a value in .env works too.
_OPENAI_VARIABLES = {"OPENAI_API_KEY": "api_key", "OPENAI_BASE_URL": "base_url"}


def env_name(section: str, key: str) -> str:
    return f"AK_{section.upper()}__{key.upper()}"


def how_to_set(section: str, key: str) -> str:
    return f"set {env_name(section, key)} in the environment or .env, or {section}.{key} in config.yaml"


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    dotenv_path: str | os.PathLike[str] | None = ".env",
    instance_path: str | os.PathLike[str] = "instance",
) -> Settings:
    """Read every source once and return validated settings, or raise :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    dotenv = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if dotenv_path else {}
    # .env never overrides a real environment variable.
    variables = {**dotenv, **environ}

    raw: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    path = Path(config_path or variables.get("AK_CONFIG") or "config.yaml")
    places: dict[str, Place] = {}  # where config.yaml wrote each setting still read from it
    if config_path or "AK_CONFIG" in variables or path.exists():
        places = _merge_yaml(raw, path)
    for name, value in variables.items():
        if name.startswith("AK_") and "__" in name:
            section, _, key = name[3:].partition("__")
            raw.setdefault(section.lower(), {})[key.lower()] = value
            places.pop(f"{section.lower()}.{key.lower()}", None)
    for variable, key in _OPENAI_VARIABLES.items():
        if variables.get(variable):
            raw["openai"][key] = variables[variable]
            places.pop(f"openai.{key}", None)

    problems: list[Problem] = []  # every one of them, so that a newcomer fixes them all in one go
    sections = {name: _build_section(name, cls, raw.get(name, {}), problems) for name, cls in _SECTIONS.items()}
    settings = Settings(**sections)
    if not settings.store.url:
        # REDIS_URL is how Heroku, Render and their kind hand an app its Redis; store.url, when set, wins.
        redis_url = (variables.get("REDIS_URL") or "").strip()
        database = Path(instance_path).resolve() / "whatsapp.db"
        settings = _replace(settings, "store", url=redis_url or f"sqlite:///{database}")
    _raise_for(problems + _problems(settings), places)
    return settings


@dataclass(frozen=True)
class Place:
    """Where config.yaml writes something: its path, and the line and column counted from 1, as editors count."""

    path: Path
    line: int
    column: int

    @classmethod
    def of(cls, path: Path, mark: yaml.Mark) -> Place:
        return cls(path, mark.line + 1, mark.column + 1)

    @property
    def at(self) -> str:
        return f"line {self.line}, column {self.column}"

    def __str__(self) -> str:
        return f"{self.at} of {self.path}"


def _config_error(message: str, place: Place | None) -> ConfigError:
    if place is None:
        return ConfigError(message)
    return ConfigError(message, path=place.path, line=place.line, column=place.column)


@dataclass(frozen=True)
class Problem:
    """One thing to fix, in a sentence; when it is about one setting (``worker.threads``), the sentence begins with
    its name, so that the place config.yaml writes it can follow the name."""

    text: str
    setting: str | None = None


def _merge_yaml(raw: dict[str, dict[str, Any]], path: Path) -> dict[str, Place]:
    """Merge config.yaml into ``raw``; returns where it writes each section (``"worker"``) and each setting's value
    (``"worker.threads"``), so that an error can say where to look."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"The config file {path} does not exist: create it or point AK_CONFIG elsewhere.") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = (loader.construct_document(root) if root is not None else None) or {}
    except yaml.YAMLError as error:
        # Only the place and the kind of error: PyYAML's own words quote the text, which may hold a secret.
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        place = Place.of(path, mark) if mark else None
        at = f" at {place.at}" if place else ""
        message = f"The config file {path} is not valid YAML{at} ({error.__class__.__name__})."
        raise _config_error(message, place) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        place = Place.of(path, root.start_mark)
        message = (
            f"The config file {path} must hold a mapping of sections such as 'whatsapp:', not what is at {place.at}."
        )
        raise _config_error(message, place)
    places = _places(path, root) if isinstance(root, yaml.MappingNode) else {}  # not for an empty file
    for section, values in data.items():
        place = places.get(str(section))
        at = f" at {place.at}" if place else ""
        if section not in _SECTIONS:
            raise _config_error(f"The config file {path} has an unknown section '{section}'{at}.", place)
        if not isinstance(values, dict):
            raise _config_error(f"The section '{section}'{at} of {path} must be a mapping of keys.", place)
        raw[section].update({str(k): v for k, v in values.items()})
    return {name: place for name, place in places.items() if "." in name}


def _places(path: Path, root: yaml.MappingNode) -> dict[str, Place]:
    """Each section's key and each setting's value in the parsed document; later ones win, as when loading."""
    places = {}
    for section_node, values_node in root.value:
        section = str(section_node.value)
        places[section] = Place.of(path, section_node.start_mark)
        if isinstance(values_node, yaml.MappingNode):
            for key_node, value_node in values_node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    places[f"{section}.{key_node.value}"] = Place.of(path, value_node.start_mark)
    return places


def _build_section(name: str, cls: type, values: dict[str, Any], problems: list[Problem]) -> Any:
    """The section's settings; what is unknown or invalid is added to ``problems`` and left at its default."""
    fields = cls.__dataclass_fields__
    converted = {}
    for key, value in values.items():
        setting = f"{name}.{key}"
        if key not in fields:
            known = f"{setting} is not a known setting (from config.yaml or {env_name(name, key)})."
            problems.append(Problem(known, setting))
            continue
        try:
            converted[key] = _convert(name, key, value, fields[key].type)
        except ConfigError as error:
            problems.append(Problem(str(error), setting))
    return cls(**converted)


def _convert(section: str, key: str, value: Any, annotation: str) -> Any:
    converter = _CONVERTERS.get(annotation)
    if converter is None:  # pragma: no cover - a new annotation without a converter is a programming error
        raise TypeError(f"no converter for {annotation}")
    try:
        return converter(value)
    except (TypeError, ValueError):
        kind = annotation.split(" ")[0]
        raise ConfigError(
            f"{section}.{key} must be a {_KIND_WORDS.get(kind, kind)}, not {str(value)[:40]!r}: "
            f"{how_to_set(section, key)}."
        ) from None


def _optional_str(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(value)


def _to_positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    number = value if isinstance(value, int) else int(str(value).strip())
    if number <= 0:
        raise ValueError(value)
    return number


def _to_positive_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


def _to_str_tuple(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(str(item).strip().lstrip("+") for item in items if str(item).strip())


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": lambda value: "" if value is None else str(value).strip(),  # "key:" with no value in YAML is None
    "str | None": _optional_str,
    "bool": _to_bool,
    "int": _to_positive_int,
    "float": _to_positive_float,
    "tuple[str, ...]": _to_str_tuple,
}
_KIND_WORDS = {"int": "positive whole number", "float": "positive number", "bool": "true or false"}


def _replace(settings: Settings, section: str, **changes: Any) -> Settings:
    return replace(settings, **{section: replace(getattr(settings, section), **changes)})


def validate(settings: Settings) -> None:
    """Raise :class:`ConfigError` for settings the service must not start with (also for hand-built ones)."""
    _raise_for(_problems(settings))


def _raise_for(problems: list[Problem], places: Mapping[str, Place] | None = None) -> None:
    """One error for all the problems; a setting config.yaml writes is named with its place there."""
    errors = [_error(problem, (places or {}).get(problem.setting or "")) for problem in problems]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        listed = "; ".join(str(error).removesuffix(".") for error in errors)
        raise ConfigError(f"{len(errors)} settings need fixing: {listed}.", problems=tuple(errors))


def _error(problem: Problem, place: Place | None) -> ConfigError:
    if place is None or problem.setting is None:
        return ConfigError(problem.text)
    return _config_error(f"{problem.setting} ({place}){problem.text.removeprefix(problem.setting)}", place)


def _problems(settings: Settings) -> list[Problem]:
    problems = []
    whatsapp = settings.whatsapp
    if whatsapp.access_token:
        missing = [key for key in ("verify_token", "phone_number_id") if not getattr(whatsapp, key)]
        if missing:
            names = " and ".join(f"whatsapp.{key}" for key in missing)
            variables = " and ".join(env_name("whatsapp", key) for key in missing)
            problems.append(
                Problem(
                    f"{names} {'is' if len(missing) == 1 else 'are'} required with an access token: set {variables} "
                    f"in the environment or .env, or {names} in config.yaml."
                )
            )
        if not whatsapp.app_secret and not whatsapp.allow_unsigned:
            problems.append(
                Problem(
                    "whatsapp.app_secret is required with an access token, so that only Meta can post webhooks: "
                    f"{how_to_set('whatsapp', 'app_secret')} (App settings > Basic > App secret), or set "
                    "whatsapp.allow_unsigned to true to accept unsigned webhooks, which lets anyone post messages."
                )
            )
    elif settings.mode == "sandbox":
        problems += _sandbox_problems(settings)
    number_id = whatsapp.phone_number_id
    if number_id and not (number_id.isascii() and number_id.isdigit()):
        problems.append(
            Problem(
                f"whatsapp.phone_number_id is {number_id[:20]!r}, which looks like a phone number: it must be the "
                "number's id shown under WhatsApp > API Setup > Phone number ID (digits only, like 106540352242922): "
                f"{how_to_set('whatsapp', 'phone_number_id')}.",
                "whatsapp.phone_number_id",
            )
        )
    if settings.log.format not in LOG_FORMATS:
        problems.append(
            Problem(
                f"log.format must be text or json, not {settings.log.format[:40]!r}: {how_to_set('log', 'format')}.",
                "log.format",
            )
        )
    if not whatsapp.graph_url.startswith(("http://", "https://")):
        problems.append(
            Problem(
                f"whatsapp.graph_url must start with http:// or https://: {how_to_set('whatsapp', 'graph_url')}.",
                "whatsapp.graph_url",
            )
        )
    if not settings.store.url.startswith(("sqlite:///", "redis://", "rediss://")):
        problems.append(
            Problem(
                f"store.url must look like sqlite:///path.db or redis://host:6379/0: {how_to_set('store', 'url')}.",
                "store.url",
            )
        )
    return problems


def _sandbox_problems(settings: Settings) -> list[Problem]:
    """Sandbox mode only when nothing live is configured, and never on a store a live instance may share.

    ``OPENAI_API_KEY``/``OPENAI_BASE_URL`` are allowed: the model is the developer's own, the sandbox answers only
    this machine (or holders of its key), and the README's first steps use them for real answers.
    """
    problems = []
    live = [f"whatsapp.{key}" for key in LIVE_SETTINGS if getattr(settings.whatsapp, key)]
    if live:
        names = " and ".join(live)
        problems.append(
            Problem(
                f"{names} {'is' if len(live) == 1 else 'are'} set but {env_name('whatsapp', 'access_token')} is not "
                "(missing, empty or misspelt): set the access token to go live, or remove the live settings to run "
                "the local sandbox."
            )
        )
    if settings.store.url.startswith(("redis://", "rediss://")):
        problems.append(
            Problem(
                f"The sandbox (no {env_name('whatsapp', 'access_token')}) never runs on a Redis store, which a live "
                f"instance may share: set the access token to go live, or unset {env_name('store', 'url')} and "
                "REDIS_URL to keep the sandbox in its local SQLite file."
            )
        )
    return problems
