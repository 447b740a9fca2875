"""JSON Schema (Draft 2020-12) from Swagger 2.0 schemas, in the shape strict MCP clients
accept.

Copilot Studio drops tools whose schemas hold references or type lists, and model APIs
reject keywords they do not know; so the result is self-contained and plain:
- every `$ref` is replaced by what it points at; a reference back into itself (a tree,
  a linked list) is cut after the first level, to `{"type": "object"}` with a note;
- one `type` per schema (Swagger's `file` becomes `string`; a list keeps its first
  non-null entry); `allOf` parts are merged into one object;
- only these keywords are kept: type, title, description, properties, required, items,
  additionalProperties, enum, default, format, examples, and the numeric, length and
  size bounds; `pattern` only when it compiles; `x-ms-summary` becomes `title`;
  `example` becomes `examples` (when it has the declared type); every other `x-ms-*`
  is dropped;
- inputs: properties that are `x-ms-visibility: internal` and have a default are
  hidden (the gateway fills them in, as Power Platform does), and a required property
  with a default is no longer required (the gateway sends the default).
- outputs: annotations only (titles, descriptions, structure). Definitions often
  describe answers loosely (`null` where a string is declared); clients validate
  results against the output schema, and a loose description must not turn a good
  answer into a client error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from functions.powerplatform.swagger import resolve_ref

JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
MAX_DEPTH = 24
MAX_TEXT = 1024
_BOUNDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
)
RECURSION_NOTE = "(recursive structure; nested levels are not described)"


def text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A trimmed description, cut at `limit` characters; None when empty."""
    if not isinstance(value, str):
        return None
    trimmed = " ".join(value.split())
    if not trimmed:
        return None
    return trimmed if len(trimmed) <= limit else trimmed[: limit - 1].rstrip() + "…"


def single_type(raw: Any) -> str | None:
    if isinstance(raw, list):
        raw = next((t for t in raw if isinstance(t, str) and t != "null"), None)
    if raw == "file":
        return "string"
    return raw if isinstance(raw, str) and raw in JSON_TYPES else None


class SchemaConverter:
    """Converts schemas of one Swagger document (for `$ref` lookups)."""

    def __init__(self, document: Mapping[str, Any], *, output: bool = False) -> None:
        self._document = document
        self._output = output

    def convert(self, schema: Any) -> dict[str, Any]:
        return self._convert(schema, (), 0)

    def _resolve(
        self, schema: Any, stack: tuple[str, ...]
    ) -> tuple[Mapping[str, Any] | None, tuple[str, ...], bool]:
        """(target, stack, recursive): follows `$ref`s; `recursive` when one repeats."""
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if ref in stack:
                return None, stack, True
            stack = (*stack, ref)
            schema = resolve_ref(self._document, ref)
        return (schema if isinstance(schema, Mapping) else None), stack, False

    def _convert(self, raw: Any, stack: tuple[str, ...], depth: int) -> dict[str, Any]:
        schema, stack, recursive = self._resolve(raw, stack)
        if recursive or depth > MAX_DEPTH:
            stub: dict[str, Any] = {"description": RECURSION_NOTE}
            return stub if self._output else {"type": "object", **stub}
        if schema is None:
            return {}
        parts = [schema]
        for part in schema.get("allOf") or []:
            resolved, _, _ = self._resolve(part, stack)
            if resolved is not None:
                parts.append(resolved)
        out: dict[str, Any] = {}
        kind = single_type(schema.get("type"))
        if kind is None and any(isinstance(p.get("properties"), Mapping) for p in parts):
            kind = "object"
        if kind is None and len(parts) > 1:
            kind = next((single_type(p.get("type")) for p in parts[1:] if p.get("type")), None)
        if kind is not None and kind != "null" and not self._output:
            out["type"] = kind
        title = text(schema.get("x-ms-summary"), 200) or text(schema.get("title"), 200)
        if title:
            out["title"] = title
        description = text(schema.get("description"))
        if description:
            out["description"] = description
        if kind == "object" or kind is None:
            self._object(parts, stack, depth, out)
        if kind == "array" or (kind is None and "items" in schema):
            items = schema.get("items")
            if isinstance(items, list):  # a tuple form: describe its first entry
                items = items[0] if items else None
            if isinstance(items, Mapping):
                out["items"] = self._convert(items, stack, depth + 1)
        if self._output:
            return out
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            unique: list[Any] = []
            for value in enum:
                if value not in unique and not isinstance(value, dict | list):
                    unique.append(value)
            if unique:
                out["enum"] = unique
        if "default" in schema and not isinstance(schema["default"], dict | list):
            out["default"] = schema["default"]
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt:
            out["format"] = fmt
        for key in _BOUNDS:
            value = schema.get(key)
            if key == "uniqueItems":
                if isinstance(value, bool):
                    out[key] = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if key in ("minLength", "maxLength", "minItems", "maxItems"):
                    if isinstance(value, int) and value >= 0:
                        out[key] = value
                elif key == "multipleOf":
                    if value > 0:
                        out[key] = value
                elif key.startswith("exclusive"):
                    pass  # booleans in Swagger 2.0, numbers in 2020-12: leave them out
                else:
                    out[key] = value
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and _compiles(pattern):
            out["pattern"] = pattern
        example = schema.get("example")
        if example is not None and _fits(out, example):
            out["examples"] = [example]
        return out

    def _object(
        self,
        parts: list[Mapping[str, Any]],
        stack: tuple[str, ...],
        depth: int,
        out: dict[str, Any],
    ) -> None:
        properties: dict[str, Any] = {}
        required: list[str] = []
        additional: Any = None
        for part in parts:
            raw_properties = part.get("properties")
            if isinstance(raw_properties, Mapping):
                for name, raw_property in raw_properties.items():
                    if not isinstance(name, str):
                        continue
                    resolved, _, _ = self._resolve(raw_property, stack)
                    if not self._output and resolved is not None and _hidden(resolved):
                        continue
                    properties[name] = self._convert(raw_property, stack, depth + 1)
            raw_required = part.get("required")
            if isinstance(raw_required, list):
                required.extend(r for r in raw_required if isinstance(r, str))
            if "additionalProperties" in part:
                additional = part["additionalProperties"]
        if properties:
            out["properties"] = properties
        if not self._output:
            needed = [
                name
                for name in dict.fromkeys(required)
                if name in properties and "default" not in properties[name]
            ]
            if needed:
                out["required"] = needed
            if isinstance(additional, bool):
                out["additionalProperties"] = additional
            elif isinstance(additional, Mapping):
                out["additionalProperties"] = self._convert(additional, stack, depth + 1)


def _hidden(schema: Mapping[str, Any]) -> bool:
    """Internal with a default: Power Platform never shows it and always sends it."""
    visibility = schema.get("x-ms-visibility")
    return isinstance(visibility, str) and visibility.lower() == "internal" and "default" in schema


def _fits(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether an example is valid for its own schema (definitions' examples often are
    not: an object for an array, a string for a number); a wrong one misleads a model."""
    # Imported here: the app's import (a Functions cold start) should not pay for it.
    from jsonschema import Draft202012Validator

    return bool(Draft202012Validator(schema).is_valid(value))


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except (re.error, RecursionError):
        return False
    return True
