"""Policy-template expressions: parsed once at import, evaluated on every call.

Power Platform policy template parameters use three related notations; this module
parses each into small immutable trees (`Node`) and evaluates them against an
`EvaluationContext` (connection parameters, request headers and query, a JSON body).

Expressions (`parse_expression`)::

    @connectionParameters('name')            connectionParameters('name', 'default')
    @headers('X-Region')   @header('x')      @queryParameters('v')  @queryParameter('v')
    @body().gifts   body()['@odata.id']      @item().id   @body()?.a?[0]

  An optional leading `@`, one function call (or a string / number / true / false / null
  literal) and any number of `.name` / `['key']` / `[0]` accessors (`?.` and `?[` are
  accepted; evaluation is always null-safe). Strings use single quotes, `''` inside one
  is a quote; typographic quotes (U+2018/U+2019, as Microsoft's docs render them and
  makers paste them) are accepted too. Function names are case-insensitive. An unknown
  function is an `ExpressionError` naming it and listing the supported ones.

String templates (`parse_template`), for header and query values, host URL and path
templates::

    https://@connectionParameters('host')/api     Bearer @headers('Authorization')
    @{connectionParameters('port')}               user@@example.com  (literal "@")

  Literal text with embedded expressions. A bare `@name(...)` ends at its closing
  parenthesis, so `https://@connectionParameters('sub').inserve.nl` is the call followed
  by the literal `.inserve.nl` (accessors need the `@{...}` form). `@@` is a literal `@`;
  any other `@` that does not start `@{` or `@name(` is literal text (e-mail addresses,
  `@odata.nextLink`).

Value templates (`parse_value_template`), for `setproperty` values::

    {@body().payments}                 the referenced value itself (any JSON type)
    [{@body().payments}]               a JSON array of templates
    '{@item()['id']}-{@item()['reference']}'   a string with `{...}` holes
    https://host/objects/{@body()['@odata.id']}  likewise, unquoted
    30                                 a constant string (as Microsoft's examples show)

Missing values: a parameter, header, query value or property that does not exist
evaluates to `MISSING` (distinct from JSON `null`); the second argument of
`connectionParameters` / `headers` / `queryParameters` is returned instead when given.
What a policy does with `MISSING` is the policy's decision (see `policies.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol


class _Missing:
    """The type of `MISSING`: a value that does not exist (not JSON null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

# Canonical function name -> (minimum, maximum) number of arguments.
FUNCTIONS: Final[dict[str, tuple[int, int]]] = {
    "connectionParameters": (1, 2),
    "headers": (1, 2),
    "queryParameters": (1, 2),
    "body": (0, 0),
    "item": (0, 0),
}
# Microsoft's own examples use the singular spellings (`@header('test')`).
_LOOKUP: Final[dict[str, str]] = {name.lower(): name for name in FUNCTIONS} | {
    "header": "headers",
    "queryparameter": "queryParameters",
}
QUOTES: Final = "'\u2018\u2019"
_CALL_START = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*\(")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_$\-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_OPENERS = {"(": ")", "[": "]", "{": "}"}


class ExpressionError(ValueError):
    """An expression that cannot be parsed. `position` is 0-based within `source`."""

    def __init__(self, message: str, source: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1} of {source!r})")
        self.message = message
        self.source = source
        self.position = position


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    name: str  # canonical spelling, a key of FUNCTIONS
    args: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Access:
    target: Node
    key: Node


Node = Literal | Call | Access


@dataclass(frozen=True)
class EvaluationContext:
    """What expressions can read. Values are live references: `body()` is the document."""

    connection_parameters: Mapping[str, Any] = field(default_factory=dict)
    headers: Sequence[tuple[str, str]] = ()
    query: Sequence[tuple[str, str]] = ()
    body: Any = MISSING
    item: Any = MISSING

    def with_item(self, item: Any) -> EvaluationContext:
        return EvaluationContext(
            self.connection_parameters, self.headers, self.query, self.body, item
        )


# --- parsing --------------------------------------------------------------------------


class _Parser:
    """Recursive descent over `source` from `pos`; leaves `pos` after what it consumed."""

    def __init__(self, source: str, pos: int = 0) -> None:
        self.source = source
        self.pos = pos

    def error(self, message: str, position: int | None = None) -> ExpressionError:
        return ExpressionError(message, self.source, self.pos if position is None else position)

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.source[index] if index < len(self.source) else ""

    def skip_ws(self) -> None:
        while self.peek() and self.peek().isspace():
            self.pos += 1

    def expression(self) -> Node:
        self.skip_ws()
        if self.peek() == "@":
            self.pos += 1
        return self.accessors(self.primary())

    def primary(self) -> Node:
        self.skip_ws()
        start = self.pos
        ch = self.peek()
        if not ch:
            raise self.error("unexpected end of expression")
        if ch in QUOTES:
            return Literal(self.string())
        number = _NUMBER.match(self.source, self.pos)
        if number:
            self.pos = number.end()
            text = number.group()
            return Literal(float(text) if "." in text else int(text))
        identifier = _IDENTIFIER.match(self.source, self.pos)
        if identifier is None:
            raise self.error(f"unexpected character {ch!r}")
        name = identifier.group()
        self.pos = identifier.end()
        self.skip_ws()
        if self.peek() == "(":
            return self.call(name, start)
        keyword = name.lower()
        if keyword in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[keyword])
        raise self.error(f"expected '(' after '{name}'")

    def call(self, name: str, start: int) -> Call:
        canonical = _LOOKUP.get(name.lower())
        if canonical is None:
            supported = ", ".join(FUNCTIONS)
            raise self.error(f"unknown function '{name}' (supported: {supported})", start)
        self.pos += 1  # "("
        args: list[Node] = []
        self.skip_ws()
        if self.peek() == ")":
            self.pos += 1
        else:
            while True:
                args.append(self.expression())
                self.skip_ws()
                ch = self.peek()
                self.pos += 1
                if ch == ")":
                    break
                if ch != ",":
                    self.pos -= 1
                    raise self.error(f"expected ',' or ')' in the arguments of {canonical}()")
        low, high = FUNCTIONS[canonical]
        if not low <= len(args) <= high:
            expected = str(low) if low == high else f"{low} or {high}"
            raise self.error(f"{canonical}() takes {expected} argument(s), got {len(args)}", start)
        return Call(canonical, tuple(args))

    def accessors(self, node: Node) -> Node:
        while True:
            saved = self.pos
            if self.peek() == "?":  # null-safe operator: evaluation is always null-safe
                self.pos += 1
            ch = self.peek()
            if ch == ".":
                self.pos += 1
                name = _NAME_CHARS.match(self.source, self.pos)
                if name is None:
                    raise self.error("expected a property name after '.'")
                self.pos = name.end()
                node = Access(node, Literal(name.group()))
            elif ch == "[":
                self.pos += 1
                key = self.expression()
                self.skip_ws()
                if self.peek() != "]":
                    raise self.error("expected ']'")
                self.pos += 1
                node = Access(node, key)
            else:
                self.pos = saved
                return node

    def string(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise self.error("unterminated string", start)
            self.pos += 1
            if ch in QUOTES:
                if self.peek() and self.peek() in QUOTES:  # '' is an escaped quote
                    out.append("'")
                    self.pos += 1
                    continue
                return "".join(out)
            out.append(ch)


def parse_expression(source: str) -> Node:
    """Parse a whole expression (`@body().x`, `connectionParameters('a', 'b')`)."""
    parser = _Parser(source)
    node = parser.expression()
    parser.skip_ws()
    if parser.pos != len(source):
        raise parser.error("unexpected text after the expression")
    return node


def parse_property_path(source: str) -> tuple[str | int, ...]:
    """Parse a relative property path: `payments`, `['@odata.id']`, `a.b[0]`."""
    text = source.strip()
    parser = _Parser(text)
    keys: list[str | int] = []
    if text and text[0] not in ".[":
        name = _NAME_CHARS.match(text)
        if name is None:
            raise parser.error("expected a property name")
        keys.append(name.group())
        parser.pos = name.end()
    node = parser.accessors(Literal(None))
    if parser.pos != len(text) or (not keys and isinstance(node, Literal)):
        raise parser.error("expected a property path such as name, a.b or ['key']")
    chain: list[str | int] = []
    while isinstance(node, Access):
        if not isinstance(node.key, Literal) or not isinstance(node.key.value, str | int):
            raise parser.error("property path keys must be names, 'strings' or numbers")
        chain.append(node.key.value)
        node = node.target
    return tuple(keys + chain[::-1])


# --- evaluation -----------------------------------------------------------------------


def evaluate(node: Node, context: EvaluationContext) -> Any:
    """The value of `node`; `MISSING` for anything that does not exist."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Access):
        target = evaluate(node.target, context)
        key = evaluate(node.key, context)
        if isinstance(target, dict):
            return target.get(key if isinstance(key, str) else to_text(key), MISSING)
        if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
            return target[key] if -len(target) <= key < len(target) else MISSING
        return MISSING
    if node.name == "body":
        return context.body
    if node.name == "item":
        return context.item
    args = [evaluate(arg, context) for arg in node.args]
    default = args[1] if len(args) > 1 else MISSING
    if args[0] is MISSING or args[0] is None:
        return default
    name = to_text(args[0])
    value: Any = MISSING
    if node.name == "connectionParameters":
        value = context.connection_parameters.get(name, MISSING)
        value = MISSING if value is None else value
    elif node.name == "headers":
        lowered = name.lower()
        found = [v for k, v in context.headers if k.lower() == lowered]
        value = ", ".join(found) if found else MISSING
    elif node.name == "queryParameters":
        value = next((v for k, v in context.query if k == name), MISSING)
    return default if value is MISSING else value


def to_text(value: Any) -> str:
    """How a value reads inside a string: JSON spelling for non-strings, "" for nothing."""
    if isinstance(value, str):
        return value
    if value is None or value is MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def functions_used(node: Node) -> frozenset[str]:
    if isinstance(node, Literal):
        return frozenset()
    if isinstance(node, Access):
        return functions_used(node.target) | functions_used(node.key)
    found = frozenset({node.name})
    for arg in node.args:
        found |= functions_used(arg)
    return found


# --- string templates -----------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """Literal text mixed with expressions. `parts` alternate `str` and `Node`."""

    source: str
    parts: tuple[str | Node, ...]

    @property
    def is_constant(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    def functions(self) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for part in self.parts:
            if not isinstance(part, str):
                found |= functions_used(part)
        return found

    def evaluate(self, context: EvaluationContext) -> Any:
        """A lone expression gives its own value (possibly MISSING); mixed text a string."""
        if len(self.parts) == 1 and not isinstance(self.parts[0], str):
            return evaluate(self.parts[0], context)
        return "".join(
            part if isinstance(part, str) else to_text(evaluate(part, context))
            for part in self.parts
        )

    def render(self, context: EvaluationContext) -> str | None:
        """The template as text; None when it is a lone expression whose value is missing."""
        value = self.evaluate(context)
        return None if value is MISSING else to_text(value)


def parse_template(source: str) -> Template:
    """Parse a string template (see the module docstring)."""
    parts: list[str | Node] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            parts.append("".join(text))
            text.clear()

    index = 0
    while index < len(source):
        ch = source[index]
        if ch == "@":
            following = source[index + 1 : index + 2]
            if following == "@":
                text.append("@")
                index += 2
                continue
            if following == "{":
                parser = _Parser(source, index + 2)
                node = parser.expression()
                parser.skip_ws()
                if parser.peek() != "}":
                    raise parser.error("expected '}' to close '@{'")
                flush()
                parts.append(node)
                index = parser.pos + 1
                continue
            if _CALL_START.match(source, index + 1):
                parser = _Parser(source, index + 1)
                node = parser.primary()
                flush()
                parts.append(node)
                index = parser.pos
                continue
        text.append(ch)
        index += 1
    flush()
    return Template(source, tuple(parts))


# --- value templates (setproperty) ----------------------------------------------------


class ValueTemplate(Protocol):
    @property
    def source(self) -> str: ...

    def evaluate(self, context: EvaluationContext) -> Any: ...

    def functions(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class ExpressionValue:
    source: str
    node: Node

    def evaluate(self, context: EvaluationContext) -> Any:
        return evaluate(self.node, context)

    def functions(self) -> frozenset[str]:
        return functions_used(self.node)


@dataclass(frozen=True)
class ArrayValue:
    source: str
    items: tuple[ValueTemplate, ...]

    def evaluate(self, context: EvaluationContext) -> Any:
        values = [item.evaluate(context) for item in self.items]
        return MISSING if any(value is MISSING for value in values) else values

    def functions(self) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for item in self.items:
            found |= item.functions()
        return found


@dataclass(frozen=True)
class StringValue:
    source: str
    parts: tuple[str | Node, ...]

    def evaluate(self, context: EvaluationContext) -> Any:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = evaluate(part, context)
            if value is MISSING:
                return MISSING
            out.append(to_text(value))
        return "".join(out)

    def functions(self) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for part in self.parts:
            if not isinstance(part, str):
                found |= functions_used(part)
        return found


@dataclass(frozen=True)
class ConstantValue:
    source: str
    value: Any

    def evaluate(self, context: EvaluationContext) -> Any:
        return self.value

    def functions(self) -> frozenset[str]:
        return frozenset()


def parse_value_template(source: str) -> ValueTemplate:
    """Parse a `setproperty` value template (see the module docstring)."""
    text = source.strip()
    if text[:1] in ("[", "{") and _matching_close(text, 0) == len(text) - 1:
        try:  # a JSON literal array or object is a constant
            return ConstantValue(source, json.loads(text))
        except ValueError:
            pass
        inner = text[1:-1]
        if text[0] == "[":
            pieces = _split_top_level(inner) if inner.strip() else []
            return ArrayValue(source, tuple(parse_value_template(piece) for piece in pieces))
        return ExpressionValue(source, parse_expression(inner))
    if len(text) >= 2 and text[0] in QUOTES and text[-1] in QUOTES:
        return StringValue(source, _brace_parts(text[1:-1]))
    parts = _brace_parts(source)
    if all(isinstance(part, str) for part in parts):
        return ConstantValue(source, "".join(str(part) for part in parts))
    return StringValue(source, parts)


def _brace_parts(text: str) -> tuple[str | Node, ...]:
    """Split `a {expr} b` into literal text and parsed `{...}` holes."""
    parts: list[str | Node] = []
    start = 0
    index = 0
    while index < len(text):
        if text[index] == "{":
            close = _matching_close(text, index)
            if close > index:
                if index > start:
                    parts.append(text[start:index])
                parts.append(parse_expression(text[index + 1 : close]))
                index = start = close + 1
                continue
        index += 1
    if start < len(text):
        parts.append(text[start:])
    return tuple(parts)


def _matching_close(text: str, open_index: int) -> int:
    """Index of the bracket closing the one at `open_index` (quotes respected), or -1."""
    stack: list[str] = []
    index = open_index
    while index < len(text):
        ch = text[index]
        if ch in QUOTES:
            index += 1
            while index < len(text) and text[index] not in QUOTES:
                index += 1
        elif ch in _OPENERS:
            stack.append(_OPENERS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return index
        index += 1
    return -1


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are outside quotes and brackets."""
    pieces: list[str] = []
    depth = 0
    start = 0
    index = 0
    while index < len(text):
        ch = text[index]
        if ch in QUOTES:
            index += 1
            while index < len(text) and text[index] not in QUOTES:
                index += 1
        elif ch in _OPENERS:
            depth += 1
        elif ch in _OPENERS.values():
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:index])
            start = index + 1
        index += 1
    pieces.append(text[start:])
    return pieces
