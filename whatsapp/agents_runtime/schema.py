"""JSON schemas for tool parameters, made the way the OpenAI Agents SDK makes them.

A tool's parameters become a pydantic model (so pydantic models, dataclasses, enums, ``Literal``, ``Annotated``
constraints and defaults all work as arguments), whose JSON schema is then made *strict*: every object closes its
properties and lists all of them as required, which is what OpenAI's function calling wants.
"""

from __future__ import annotations

import copy
from typing import Any

STRICT_EMPTY: dict[str, Any] = {"additionalProperties": False, "type": "object", "properties": {}, "required": []}


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A strict copy of ``schema`` (``{}`` becomes the strict empty object)."""
    if not schema:
        return copy.deepcopy(STRICT_EMPTY)
    root = copy.deepcopy(schema)
    return _strict(root, root)


def _strict(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    for key in ("$defs", "definitions"):
        for name, definition in (node.get(key) or {}).items():
            node[key][name] = _strict(definition, root)
    if node.get("type") == "object":
        if node.get("additionalProperties"):
            raise TypeError("an object that allows additional properties cannot be described strictly")
        node["additionalProperties"] = False
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["required"] = list(properties)
        node["properties"] = {name: _strict(value, root) for name, value in properties.items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root)
    variants = [*node.get("anyOf", []), *node.pop("oneOf", [])]
    if variants:
        node["anyOf"] = [_strict(variant, root) for variant in variants]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            node.pop("allOf")
            node.update(_strict(all_of[0], root))
        else:
            node["allOf"] = [_strict(part, root) for part in all_of]
    if "default" in node and node["default"] is None:
        del node["default"]  # "nullable" already says it
    reference = node.get("$ref")
    if isinstance(reference, str) and len(node) > 1:  # a $ref cannot have siblings: inline what it points to
        target = _resolve(root, reference)
        node.pop("$ref")
        return _strict({**copy.deepcopy(target), **node}, root)
    return node


def _resolve(root: dict[str, Any], reference: str) -> dict[str, Any]:
    if not reference.startswith("#/"):
        raise TypeError(f"unexpected $ref {reference!r}")
    found: Any = root
    for part in reference[2:].split("/"):
        found = found[part]
    return found
