"""Tools from definitions (functions/mcp): names, schemas and the round trip from a tool's
arguments to the operation request, over every sample definition."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from functions.errors import ValidationFailedError
from functions.mcp import tools_for_definition
from functions.mcp.names import connection_prefixes, prefixed, unique_names
from functions.mcp.schemas import RECURSION_NOTE, SchemaConverter
from functions.powerplatform import (
    DefinitionError,
    load_definition,
    parse_definition,
    prepare_operation,
)
from tests.powerplatform.samples import folder_path, malformed_folders, sample_folders

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ARGUMENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ALLOWED_KEYWORDS = {
    "type", "title", "description", "properties", "required", "items",
    "additionalProperties", "enum", "default", "format", "examples", "pattern",
    "minimum", "maximum", "multipleOf", "minLength", "maxLength", "minItems",
    "maxItems", "uniqueItems",
}  # fmt: skip


def walk(schema: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (sub)schema with its location."""
    found: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(schema, dict):
        return found
    found.append((where, schema))
    for name, child in (schema.get("properties") or {}).items():
        found += walk(child, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        found += walk(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += walk(schema["additionalProperties"], f"{where}{{}}")
    return found


def example_value(schema: dict[str, Any], depth: int = 0) -> Any:
    """What a caller following the definition would send: the definition's own example,
    else its default, else the first allowed value, else a value of the declared type."""
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return max(1.5, schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items") or {}
        return [example_value(items, depth + 1)] * max(1, schema.get("minItems", 1))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {
            name: example_value(properties[name], depth + 1)
            for name in schema.get("required", [])
            if name in properties and depth < 8
        }
    if schema.get("format") == "date-time":
        return "2026-01-02T03:04:05Z"
    if schema.get("format") == "date":
        return "2026-01-02"
    return "x" * max(1, schema.get("minLength", 1))


def arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Every required argument, and every optional one the definition shows an example of."""
    arguments: dict[str, Any] = {}
    for name, child in schema["properties"].items():
        if name in schema.get("required", []) or child.get("examples"):
            arguments[name] = example_value(child)
    return arguments


@pytest.mark.parametrize("folder", sample_folders())
def test_every_sample_gives_valid_strict_tools_that_its_examples_can_call(folder: str) -> None:
    path = folder_path(folder)
    if folder in malformed_folders():
        with pytest.raises(DefinitionError):
            load_definition(path)
        return
    definition = load_definition(path)
    tools = tools_for_definition(definition)
    names = [t.name for t in tools]
    assert len(set(names)) == len(names)
    for tool in tools:
        assert TOOL_NAME.match(tool.name), tool.name
        operation = definition.operations[tool.operation_id or ""]
        assert not operation.deprecated
        for schema in (tool.input_schema, tool.output_schema):
            if schema is None:
                continue
            Draft202012Validator.check_schema(schema)
            assert schema["type"] == "object"
            assert "$ref" not in json.dumps(schema)
            for where, sub in walk(schema):
                # One type per schema, only keywords strict clients know.
                assert not isinstance(sub.get("type"), list), (tool.name, where)
                assert set(sub) <= ALLOWED_KEYWORDS, (tool.name, where, set(sub))
        assert all(ARGUMENT_NAME.match(name) for name in tool.input_schema["properties"])
        # A parameter set the definition's own examples would send is valid for the
        # schema, and the gateway builds the operation's request from it.
        arguments = arguments_for(tool.input_schema)
        Draft202012Validator(tool.input_schema).validate(arguments)
        parameters, body = tool.split(arguments)
        prepared = prepare_operation(
            definition, operation.operation_id, "https://api.example.test", parameters, body
        )
        assert prepared.request.method == operation.method


def document(**paths: Any) -> dict[str, Any]:
    return {"swagger": "2.0", "host": "api.example.test", "paths": paths, "definitions": {}}


def test_operations_left_out_and_parameters_shaped() -> None:
    api = document(
        **{
            "/items/{id}": {
                "get": {
                    "operationId": "Get item",
                    "summary": "Get an item",
                    "description": "  Reads\n one   item. ",
                    "parameters": [
                        {"name": "id", "in": "path", "type": "string", "x-ms-summary": "Item"},
                        {"name": "$filter", "in": "query", "type": "string"},
                        {"name": "api-version", "in": "query", "type": "string",
                         "required": True, "default": "2026-01-01", "x-ms-visibility": "internal"},
                        {"name": "top", "in": "query", "type": "integer", "required": True,
                         "default": 10},
                    ],
                    "responses": {"200": {"description": "ok", "schema": {"$ref": "#/definitions/Item"}}},
                },
                "delete": {"operationId": "Old", "deprecated": True, "responses": {}},
                "put": {"operationId": "Hidden", "x-ms-visibility": "internal", "responses": {}},
            }
        }
    )  # fmt: skip
    api["definitions"]["Item"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "child": {"$ref": "#/definitions/Item"}},
        "required": ["name"],
    }
    tools = tools_for_definition(parse_definition(api, {}))
    assert [t.name for t in tools] == ["Get_item"]
    tool = tools[0]
    assert tool.title == "Get an item" and tool.description == "Reads one item."
    assert tool.input_schema == {
        "type": "object",
        "properties": {
            "id": {"type": "string", "title": "Item", "minLength": 1},
            "_filter": {"type": "string"},
            "top": {"type": "integer", "default": 10},
        },
        "required": ["id"],
        "additionalProperties": False,
    }
    assert tool.split({"id": "a", "_filter": "x eq 1"}) == ({"id": "a", "$filter": "x eq 1"}, None)
    with pytest.raises(ValidationFailedError) as refused:
        tool.split({"id": "a", "api-version": "1999"})
    assert refused.value.errors[0]["field"] == "arguments.api-version"
    # Output: annotations only, the recursion cut after one level.
    assert tool.output_schema == {
        "type": "object",
        "properties": {"name": {}, "child": {"description": RECURSION_NOTE}},
    }


def test_schema_conversion_resolves_merges_and_hides() -> None:
    api = document()
    api["definitions"] = {
        "Base": {"type": "object", "properties": {"id": {"type": "integer", "format": "int64"}}},
        "Node": {"type": "object", "properties": {"next": {"$ref": "#/definitions/Node"}}},
    }
    converted = SchemaConverter(api).convert(
        {
            "allOf": [{"$ref": "#/definitions/Base"}],
            "properties": {
                "kind": {"type": ["string", "null"], "x-ms-summary": "Kind", "example": "a",
                         "x-ms-dynamic-values": {"operationId": "X"}},
                "secret": {"type": "string", "default": "v1", "x-ms-visibility": "internal"},
                "mode": {"type": "string", "default": "fast"},
                "node": {"$ref": "#/definitions/Node"},
                "blob": {"type": "file"},
                "bad": {"type": "string", "pattern": "(unclosed"},
            },
            "required": ["mode", "kind", "secret"],
        }
    )  # fmt: skip
    assert converted == {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "title": "Kind", "examples": ["a"]},
            "mode": {"type": "string", "default": "fast"},
            "node": {
                "type": "object",
                "properties": {"next": {"type": "object", "description": RECURSION_NOTE}},
            },
            "blob": {"type": "string"},
            "bad": {"type": "string"},
            "id": {"type": "integer", "format": "int64"},
        },
        "required": ["kind"],
    }


def test_names_are_valid_unique_stable_and_short() -> None:
    long_id = "Get" + "VeryLong" * 12
    names = unique_names(["List items", "List-items", "List_items", long_id, long_id + "2"])
    assert names[:3] == ["List_items", "List-items", "List_items_2"]
    assert all(TOOL_NAME.match(n) for n in names) and len(set(names)) == 5
    assert len(names[3]) == 64 and names[3] != names[4]
    assert unique_names([long_id]) == [names[3]]  # stable
    prefixes = connection_prefixes({"c1aaaaaa": "My mail", "c2bbbbbb": "My mail", "c3": "Ünïcode!"})
    assert prefixes == {
        "c1aaaaaa": "My_mail_c1aaaa__",
        "c2bbbbbb": "My_mail_c2bbbb__",
        "c3": "n_code__",
    }
    tool = prefixed(prefixes["c1aaaaaa"], names[3], source=long_id)
    assert len(tool) <= 64 and TOOL_NAME.match(tool)
