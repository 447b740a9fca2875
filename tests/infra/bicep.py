"""Reading Bicep without the Bicep compiler: tree-sitter with the Bicep grammar.

`parse` gives the syntax tree, `syntax_errors` every ERROR or MISSING node as
file:line:column, and the small helpers below turn declarations and object literals into
Python values so the tests can assert structure (a property's literal value, the keys of
an object, the comment above a declaration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@dataclass(frozen=True)
class BicepFile:
    path: Path
    root: Node

    @property
    def rel(self) -> str:
        return self.path.relative_to(REPO).as_posix()

    def declarations(self, kind: str) -> list[Node]:
        return [child for child in self.root.named_children if child.type == kind]

    def resources(self) -> list[Resource]:
        return [Resource.of(self, node) for node in self.declarations("resource_declaration")]

    def resources_of_type(self, prefix: str) -> list[Resource]:
        return [r for r in self.resources() if r.type_name == prefix]

    def resource(self, symbol: str) -> Resource:
        for r in self.resources():
            if r.symbol == symbol:
                return r
        raise KeyError(f"{self.rel}: no resource named {symbol}")

    def variable(self, name: str) -> Node:
        for node in self.declarations("variable_declaration"):
            if text(node.named_children[0]) == name:
                return node.named_children[-1]
        raise KeyError(f"{self.rel}: no var {name}")

    def variables(self) -> dict[str, Node]:
        return {
            text(node.named_children[0]): node.named_children[-1]
            for node in self.declarations("variable_declaration")
        }

    def parameters(self) -> dict[str, Node]:
        """param name -> its declaration node."""
        return {
            text(node.named_children[0]): node
            for node in self.declarations("parameter_declaration")
        }

    def outputs(self) -> list[str]:
        return [text(node.named_children[0]) for node in self.declarations("output_declaration")]

    def modules(self) -> dict[str, str]:
        """module symbol -> module path (as written)."""
        return {
            text(node.named_children[0]): string_value(node.named_children[1])
            for node in self.declarations("module_declaration")
        }


@dataclass(frozen=True)
class Resource:
    file: BicepFile
    node: Node
    symbol: str
    type_version: str
    body: Node  # the object literal (inside `if (...)` or `[for ...]` when present)

    @classmethod
    def of(cls, file: BicepFile, node: Node) -> Resource:
        named = node.named_children
        symbol = text(named[0])
        type_version = string_value(named[1])
        return cls(file, node, symbol, type_version, _body(named[-1]))

    @property
    def type_name(self) -> str:
        return self.type_version.split("@", 1)[0]

    @property
    def api_version(self) -> str:
        return self.type_version.split("@", 1)[1] if "@" in self.type_version else ""

    @property
    def line(self) -> int:
        return self.node.start_point[0] + 1

    def where(self) -> str:
        return f"{self.file.rel}:{self.line} ({self.symbol})"

    def props(self) -> dict[str, Node]:
        return object_props(self.body)

    def get(self, *path: str) -> Node | None:
        node: Node | None = self.body
        for key in path:
            if node is None or node.type != "object":
                return None
            node = object_props(node).get(key)
        return node

    def comment_above(self) -> str | None:
        return comment_above(self.node)


def comment_above(node: Node) -> str | None:
    """The block of comment lines directly above a declaration (decorators skipped), or
    None when a blank line or code separates them."""
    lines: list[str] = []
    top = node.start_point[0]
    prev = node.prev_named_sibling
    while prev is not None and prev.type == "decorators":
        top = prev.start_point[0]
        prev = prev.prev_named_sibling
    while prev is not None and prev.type == "comment" and prev.end_point[0] == top - 1:
        lines.insert(0, text(prev))
        top = prev.start_point[0]
        prev = prev.prev_named_sibling
    return "\n".join(lines) or None


def _body(node: Node) -> Node:
    if node.type == "if_statement":
        return node.named_children[-1]
    if node.type == "for_statement":
        body = node.child_by_field_name("body")
        assert body is not None
        return _body(body)
    return node


def text(node: Node) -> str:
    assert node.text is not None
    return node.text.decode("utf-8")


def string_value(node: Node) -> str:
    """A string literal's value; interpolations are kept as written (`${...}`)."""
    if node.type != "string":
        raise ValueError(f"not a string literal: {text(node)!r}")
    return text(node)[1:-1]


def object_props(node: Node) -> dict[str, Node]:
    if node.type != "object":
        raise ValueError(f"not an object literal: {text(node)[:60]!r}")
    props: dict[str, Node] = {}
    for prop in node.named_children:
        if prop.type != "object_property":
            continue
        key_node, value_node = prop.named_children[0], prop.named_children[-1]
        key = string_value(key_node) if key_node.type == "string" else text(key_node)
        props[key] = value_node
    return props


def literal(node: Node | None) -> Any:
    """Python value of a literal (string, number, boolean, null, array, object);
    anything else (an expression) comes back as its source text."""
    if node is None:
        return None
    if node.type == "string":
        return string_value(node)
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "null":
        return None
    if node.type == "array":
        return [literal(child) for child in node.named_children if child.type != "comment"]
    if node.type == "object":
        return {key: literal(value) for key, value in object_props(node).items()}
    return text(node)


def parse(path: Path) -> BicepFile:
    return BicepFile(path, _parser().parse(path.read_bytes()).root_node)


def parse_source(source: str) -> Node:
    return _parser().parse(source.encode("utf-8")).root_node


def syntax_errors(root: Node, name: str) -> list[str]:
    """Every ERROR or MISSING node as `name:line:column: ...` (1-based)."""
    found: list[str] = []

    def visit(node: Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            what = f"missing {node.type!r}" if node.is_missing else "syntax error"
            snippet = text(node).splitlines()[0][:60] if node.text else ""
            found.append(f"{name}:{line + 1}:{column + 1}: {what} near {snippet!r}")
            if node.type == "ERROR":
                return
        for child in node.children:
            visit(child)

    visit(root)
    return found


def load_json(name: str) -> Any:
    return json.loads((INFRA / name).read_text("utf-8"))
