"""Tools: typed Python functions offered to the model through Chat Completions' function calling.

``@tool`` reads the function's type hints and docstring once, at import time, so a hint the schema cannot express
fails when the agent module loads, not in the middle of a customer's conversation.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class RunContext:
    """Who the agent is talking to; handed to callable instructions and to tools that ask for it."""

    sender: str
    profile_name: str | None = None


_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class FunctionTool:
    """A function with its function-calling schema. Calling it calls the function unchanged."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any] = field(repr=False)
    context_parameter: str | None = None  # the parameter that receives the RunContext, if any

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    @property
    def schema(self) -> dict[str, Any]:
        """The entry for the request's ``tools`` list."""
        function: dict[str, Any] = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}

    def invoke(self, arguments: dict[str, Any], context: RunContext) -> Any:
        """Call the function with the model's arguments, adding the run context where it was asked for."""
        if self.context_parameter is not None:
            arguments = {**arguments, self.context_parameter: context}
        return self.function(**arguments)


@typing.overload
def tool(function: Callable[..., Any], /) -> FunctionTool: ...


@typing.overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    function: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make ``function`` a tool: ``@tool`` or ``@tool(name=..., description=...)``.

    The description is the docstring (an ``Args:`` section, if present, describes the parameters); a parameter's
    ``Annotated[T, "description"]`` wins over it. Parameters without a default are required. A parameter annotated
    :class:`RunContext` is filled by the runner and is not shown to the model.
    """

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        return _build(fn, name, description)

    return wrap if function is None else wrap(function)


def as_tool(value: Any) -> FunctionTool:
    """A :class:`FunctionTool` as is; a plain function made into one."""
    if isinstance(value, FunctionTool):
        return value
    if callable(value):
        return tool(value)
    raise TypeError(f"{value!r} is not a tool: decorate a function with @tool")


def _build(fn: Callable[..., Any], name: str | None, description: str | None) -> FunctionTool:
    tool_name = name or fn.__name__
    if not _NAME.match(tool_name):
        raise ValueError(f"tool name {tool_name!r} must be 1-64 characters of a-z, A-Z, 0-9, _ or -")
    summary, argument_docs = _parse_docstring(inspect.getdoc(fn) or "")
    hints = get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    context_parameter = None
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name}: *args and **kwargs cannot be described to the model")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise TypeError(f"tool {tool_name}: parameter {parameter.name} must be passable by keyword")
        hint = hints.get(parameter.name)
        if hint is None:
            raise TypeError(f"tool {tool_name}: parameter {parameter.name} needs a type hint")
        if _is_context(hint):
            context_parameter = parameter.name
            continue
        try:
            schema = json_schema(hint)
        except TypeError as error:
            raise TypeError(f"tool {tool_name}: parameter {parameter.name}: {error}") from None
        if "description" not in schema and parameter.name in argument_docs:
            schema = {**schema, "description": argument_docs[parameter.name]}
        if parameter.default is not parameter.empty:
            _add_default(schema, parameter.default)
        else:
            required.append(parameter.name)
        properties[parameter.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    parameters["additionalProperties"] = False
    return FunctionTool(
        name=tool_name,
        description=description if description is not None else summary,
        parameters=parameters,
        function=fn,
        context_parameter=context_parameter,
    )


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a type hint: scalars, list[...], dict, Literal[...], Enum, Optional and Annotated."""
    hint, description = _strip_annotated(hint)
    schema = _schema(hint)
    if description:
        schema["description"] = description
    return schema


def _schema(hint: Any) -> dict[str, Any]:
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum([member.value for member in hint])
    origin, arguments = get_origin(hint), get_args(hint)
    if hint is list or origin is list:
        return {"type": "array", "items": json_schema(arguments[0])} if arguments else {"type": "array"}
    if hint is dict or origin is dict:
        return {"type": "object"}
    if origin is Literal:
        return _enum(list(arguments))
    if origin in (Union, types.UnionType):
        present = [a for a in arguments if a is not type(None)]
        if len(present) != 1:
            raise TypeError(f"{hint!r}: only Optional[T] unions are supported")
        inner = json_schema(present[0])
        if len(present) == len(arguments):
            return inner
        if isinstance(inner.get("type"), str):
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    raise TypeError(f"{hint!r} has no JSON schema here: use str, int, float, bool, list, dict, Literal or an Enum")


def _enum(values: list[Any]) -> dict[str, Any]:
    kinds = {_SCALARS.get(type(value)) for value in values}
    if None in kinds or len(kinds) != 1:
        raise TypeError(f"choices {values!r} must all be str, or all int, float or bool")
    return {"type": kinds.pop(), "enum": values}


def _strip_annotated(hint: Any) -> tuple[Any, str | None]:
    """``Annotated[T, "text", ...]`` -> (T, "text"); anything else -> (hint, None)."""
    if get_origin(hint) is Annotated:
        base, *extras = get_args(hint)
        text = next((extra for extra in extras if isinstance(extra, str)), None)
        return base, text
    return hint, None


def _is_context(hint: Any) -> bool:
    """``RunContext``, ``RunContext | None`` or either of them ``Annotated``."""
    hint = _strip_annotated(hint)[0]
    if get_origin(hint) in (Union, types.UnionType):
        return RunContext in get_args(hint) and set(get_args(hint)) <= {RunContext, type(None)}
    return hint is RunContext


def _add_default(schema: dict[str, Any], default: Any) -> None:
    if isinstance(default, enum.Enum):
        default = default.value
    try:
        json.dumps(default)
    except (TypeError, ValueError):
        return  # a default the model cannot see is still the function's default
    schema["default"] = default


_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and its ``Args:`` entries."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if _ARGS_HEADER.match(line)), None)
    if start is None:
        return doc.strip(), {}
    arguments: dict[str, str] = {}
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
    return "\n".join(lines[:start]).strip(), arguments
