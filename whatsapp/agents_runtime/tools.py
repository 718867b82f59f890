"""Tools: typed Python functions offered to the model, declared as in the OpenAI Agents SDK.

``@function_tool`` reads the function's signature, type hints and docstring once, when the module loads, so a
parameter the schema cannot express fails at start, not in the middle of a customer's conversation. The first
parameter may be a ``RunContextWrapper``: it is filled by the runner and hidden from the model. ``async def`` tools
are awaited on the runtime's event loop; plain ones run in the runner's threads.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from pydantic import BaseModel, Field, ValidationError, create_model

from .awaiting import resolve
from .context import RunContextWrapper
from .schema import strict

log = logging.getLogger("agents")

ToolErrorFunction = Callable[[RunContextWrapper[Any], Exception], "str | Awaitable[str]"]


def default_tool_error_function(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """What the model reads when a tool fails, in the SDK's words."""
    if isinstance(error, _ArgumentsNotJSON):
        return (
            "An error occurred while parsing tool arguments. Please try again with valid JSON. "
            f"Error: {error.__cause__}"
        )
    return f"An error occurred while running the tool. Please try again. Error: {error}"


class _ArgumentsNotJSON(ValueError):
    """The model's arguments for a tool were not JSON."""


@dataclass
class FunctionTool:
    """A tool as the SDK defines it: a name, a description, a JSON schema and ``on_invoke_tool(ctx, arguments)``.

    ``on_invoke_tool`` receives the :class:`RunContextWrapper` and the model's arguments as a JSON string and
    returns the result (anything; the model reads ``str()`` of it), or an awaitable of it.
    """

    name: str
    description: str
    params_json_schema: dict[str, Any]
    on_invoke_tool: Callable[[RunContextWrapper[Any], str], Any]
    strict_json_schema: bool = True

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", self.name):
            raise ValueError(f"tool name {self.name!r} must be 1-64 characters of a-z, A-Z, 0-9, _ or -")


@typing.overload
def function_tool(func: Callable[..., Any], /) -> FunctionTool: ...


@typing.overload
def function_tool(
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    failure_error_function: ToolErrorFunction | None = default_tool_error_function,
    strict_mode: bool = True,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def function_tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    failure_error_function: ToolErrorFunction | None = default_tool_error_function,
    strict_mode: bool = True,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make ``func`` a tool: ``@function_tool`` or ``@function_tool(name_override=..., description_override=...)``.

    The description is the docstring's text; a parameter is described by the docstring's ``Args:`` entry or by
    ``Annotated[T, "description"]`` (the docstring wins, as in the SDK). ``failure_error_function`` words a
    failure for the model; ``None`` lets the error fail the run instead.
    """

    def build(function: Callable[..., Any]) -> FunctionTool:
        return _build(function, name_override, description_override, failure_error_function, strict_mode)

    return build if func is None else build(func)


def _build(
    function: Callable[..., Any],
    name_override: str | None,
    description_override: str | None,
    failure_error_function: ToolErrorFunction | None,
    strict_mode: bool,
) -> FunctionTool:
    name = name_override or function.__name__
    summary, argument_docs = parse_docstring(inspect.getdoc(function) or "")
    hints = get_type_hints(function, include_extras=True)
    parameters = list(inspect.signature(function).parameters.values())
    takes_context = bool(parameters) and _is_context(hints.get(parameters[0].name))
    fields: dict[str, Any] = {}
    for position, parameter in enumerate(parameters):
        if position == 0 and takes_context:
            continue
        hint = hints.get(parameter.name, Any)
        if _is_context(hint):
            raise TypeError(f"tool {name}: RunContextWrapper must be the first parameter, not {parameter.name}")
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args and **kwargs cannot be described to the model")
        description = argument_docs.get(parameter.name) or _annotated_description(hint)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hint, Field(default, description=description))
    try:
        arguments_model = create_model(f"{name}_args", __base__=BaseModel, **fields)
        schema = arguments_model.model_json_schema()
    except Exception as error:  # pydantic's own errors say which type it could not describe
        raise TypeError(f"tool {name}: {error}") from None
    keyword_only = frozenset(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
    invoke = _Invoker(function, name, arguments_model, takes_context, keyword_only, failure_error_function)
    return FunctionTool(
        name=name,
        description=description_override or summary,
        params_json_schema=strict(schema) if strict_mode else schema,
        on_invoke_tool=invoke,
        strict_json_schema=strict_mode,
    )


@dataclass(frozen=True)
class _Invoker:
    """``on_invoke_tool`` of a decorated function: parse, validate, call (awaiting if async), word failures."""

    function: Callable[..., Any]
    name: str
    arguments_model: type[BaseModel]
    takes_context: bool
    keyword_only: frozenset[str]
    failure_error_function: ToolErrorFunction | None

    def __call__(self, ctx: RunContextWrapper[Any], arguments: str) -> Any:
        try:
            return self._call(ctx, arguments)
        except Exception as error:
            if self.failure_error_function is None:
                raise
            log.warning("tool %s failed: %s: %s", self.name, type(error).__name__, error)
            return resolve(self.failure_error_function(ctx, error))

    def _call(self, ctx: RunContextWrapper[Any], arguments: str) -> Any:
        try:
            data = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            raise _ArgumentsNotJSON(f"Invalid JSON input for tool {self.name}: {arguments}") from error
        if not isinstance(data, dict):
            raise ValueError(f"Invalid JSON input for tool {self.name}: {arguments}")
        try:
            parsed = self.arguments_model.model_validate(data)
        except ValidationError as error:
            raise ValueError(f"Invalid JSON input for tool {self.name}: {error}") from None
        args = [ctx] if self.takes_context else []
        kwargs = {}
        for name in type(parsed).model_fields:  # in the signature's order
            if name in self.keyword_only:
                kwargs[name] = getattr(parsed, name)
            else:
                args.append(getattr(parsed, name))
        return resolve(self.function(*args, **kwargs))


def _is_context(hint: Any) -> bool:
    """``RunContextWrapper``, ``RunContextWrapper[T]``, or either of them ``Annotated``."""
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    return hint is RunContextWrapper or get_origin(hint) is RunContextWrapper


def _annotated_description(hint: Any) -> str | None:
    """The first string of ``Annotated[T, ...]``'s metadata."""
    if get_origin(hint) is Annotated:
        return next((extra for extra in get_args(hint)[1:] if isinstance(extra, str)), None)
    return None


_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_OTHER_SECTION = re.compile(r"^(Returns|Return|Raises|Yields|Examples?|Notes?):\s*$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """A Google-style docstring's description (the text before its first section) and its ``Args:`` entries."""
    lines = doc.splitlines()
    sections = [i for i, line in enumerate(lines) if _ARGS_HEADER.match(line) or _OTHER_SECTION.match(line)]
    summary = "\n".join(lines[: sections[0]] if sections else lines).strip()
    start = next((i for i in sections if _ARGS_HEADER.match(lines[i])), None)
    arguments: dict[str, str] = {}
    if start is None:
        return summary, arguments
    current = None
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():  # the next section
            break
        match = _ARG_LINE.match(line)
        if match and (current is None or len(line) - len(line.lstrip()) <= 4):
            current = match.group(1)
            arguments[current] = match.group(2).strip()
        elif current is not None and line.strip():
            arguments[current] = f"{arguments[current]} {line.strip()}".strip()
    return summary, arguments
