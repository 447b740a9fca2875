"""Building upstream requests from operation parameters."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions.errors import NotFoundError, ValidationFailedError
from functions.powerplatform import (
    ConnectorDefinition,
    build_operation_request,
    load_definition,
    parse_definition,
    prepare_operation,
)
from tests.powerplatform.samples import folder_path

DEFINITIONS = {
    "Item": {
        "type": "object",
        "required": ["name", "kind"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "count": {"type": "integer"},
            "price": {"type": "number"},
            "active": {"type": "boolean"},
            "source": {"type": "string", "default": "gateway", "x-ms-visibility": "internal"},
            "note": {"type": "string", "default": "optional defaults stay unsent"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "owner": {"$ref": "#/definitions/Owner"},
        },
    },
    "Owner": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
}


def _definition() -> ConnectorDefinition:
    document = {
        "swagger": "2.0",
        "info": {"title": "Demo"},
        "host": "api.example.com",
        "basePath": "/v1/",
        "consumes": ["application/json"],
        "definitions": DEFINITIONS,
        "paths": {
            "/items/{id}": {
                "get": {
                    "operationId": "GetItem",
                    "parameters": [
                        {"name": "id", "in": "path", "type": "string"},
                        {"name": "expand", "in": "query", "type": "boolean"},
                        {"name": "limit", "in": "query", "type": "integer", "default": 10},
                        {
                            "name": "format",
                            "in": "query",
                            "type": "string",
                            "default": "json",
                            "x-ms-visibility": "internal",
                        },
                        {"name": "mode", "in": "query", "type": "string", "enum": ["fast", "full"]},
                        {
                            "name": "ids",
                            "in": "query",
                            "type": "array",
                            "items": {"type": "integer"},
                        },
                        {
                            "name": "each",
                            "in": "query",
                            "type": "array",
                            "items": {"type": "string"},
                            "collectionFormat": "multi",
                        },
                        {
                            "name": "piped",
                            "in": "query",
                            "type": "array",
                            "items": {"type": "string"},
                            "collectionFormat": "pipes",
                        },
                        {"name": "X-Trace", "in": "header", "type": "string"},
                        {
                            "name": "version",
                            "in": "query",
                            "type": "string",
                            "required": True,
                            "default": "2024-01-01",
                        },
                    ],
                }
            },
            "/files/{path}/raw": {
                "get": {
                    "operationId": "GetFile",
                    "parameters": [
                        {
                            "name": "path",
                            "in": "path",
                            "type": "string",
                            "x-ms-url-encoding": "double",
                        }
                    ],
                }
            },
            "/items": {
                "post": {
                    "operationId": "CreateItem",
                    "parameters": [
                        {
                            "name": "item",
                            "in": "body",
                            "required": True,
                            "schema": {"$ref": "#/definitions/Item"},
                        }
                    ],
                }
            },
            "/notes": {
                "post": {
                    "operationId": "CreateNote",
                    "consumes": ["text/plain"],
                    "parameters": [{"name": "body", "in": "body", "schema": {"type": "string"}}],
                }
            },
            "/upload": {
                "post": {
                    "operationId": "Upload",
                    "consumes": ["multipart/form-data"],
                    "parameters": [
                        {"name": "file", "in": "formData", "type": "file", "required": True},
                        {"name": "title", "in": "formData", "type": "string"},
                    ],
                }
            },
            "/form": {
                "post": {
                    "operationId": "SubmitForm",
                    "consumes": ["application/x-www-form-urlencoded"],
                    "parameters": [
                        {"name": "a", "in": "formData", "type": "string", "required": True},
                        {"name": "b", "in": "formData", "type": "integer"},
                    ],
                }
            },
            "/search?mode=advanced#v2": {
                "get": {
                    "operationId": "SearchAdvanced",
                    "parameters": [{"name": "q", "in": "query", "type": "string"}],
                }
            },
        },
    }
    return parse_definition(document, {})


def _errors(operation_id: str, parameters: dict[str, Any], body: Any = None) -> dict[str, str]:
    with pytest.raises(ValidationFailedError) as caught:
        build_operation_request(_definition(), operation_id, None, parameters, body)
    return {e["field"]: e["message"] for e in caught.value.errors}


def test_path_query_and_header_parameters() -> None:
    request = build_operation_request(
        _definition(),
        "GetItem",
        None,
        {
            "id": "a b/c?d",
            "expand": "true",
            "mode": "fast",
            "ids": [1, "2"],
            "each": ["x", "y"],
            "piped": ["p", "q"],
            "X-Trace": 42,
        },
    )
    assert request.method == "GET"
    assert request.base_url == "https://api.example.com/v1"
    assert request.path == "/items/a%20b%2Fc%3Fd"
    assert request.query == [
        ("expand", "true"),
        ("format", "json"),  # internal default: always sent
        ("mode", "fast"),
        ("ids", "1,2"),
        ("each", "x"),
        ("each", "y"),
        ("piped", "p|q"),
        ("version", "2024-01-01"),  # required default: sent
    ]
    assert request.headers == [("X-Trace", "42")]
    assert request.body is None


def test_explicit_base_url_wins() -> None:
    request = build_operation_request(
        _definition(), "GetItem", "https://other.example/", {"id": "1"}
    )
    assert request.base_url == "https://other.example"


def test_double_url_encoding() -> None:
    request = build_operation_request(_definition(), "GetFile", None, {"path": "dir/file name"})
    assert request.path == "/files/dir%252Ffile%2520name/raw"


def test_query_and_fragment_in_path_templates() -> None:
    request = build_operation_request(_definition(), "SearchAdvanced", None, {"q": "x"})
    assert request.path == "/search"
    assert request.query == [("mode", "advanced"), ("q", "x")]


def test_prepare_returns_raw_path_values() -> None:
    prepared = prepare_operation(_definition(), "GetItem", None, {"id": "a/b"})
    assert prepared.path_parameters == {"id": "a/b"}
    assert prepared.operation.operation_id == "GetItem"


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, {"parameters.id": "required"}),
        ({"id": ".."}, {"parameters.id": "must not be empty, '.' or '..'"}),
        ({"id": ""}, {"parameters.id": "must not be empty, '.' or '..'"}),
        ({"id": "1", "expand": "maybe"}, {"parameters.expand": "must be true or false"}),
        ({"id": "1", "limit": "ten"}, {"parameters.limit": "must be an integer"}),
        ({"id": "1", "mode": "slow"}, {"parameters.mode": "must be one of: fast, full"}),
        ({"id": "1", "ids": "1,2"}, {"parameters.ids": "must be an array"}),
        ({"id": "1", "ids": [1, "x"]}, {"parameters.ids": "items must be an integer"}),
        ({"id": {"a": 1}}, {"parameters.id": "must be a single value"}),
        (
            {"id": "1", "X-Trace": "a\r\nInjected: 1"},
            {"parameters.X-Trace": "must be ASCII text without line breaks (a header)"},
        ),
        (
            {"id": "1", "nope": 1},
            {
                "parameters.nope": "not a parameter of GetItem (expected: id, expand, limit, "
                "format, mode, ids, each, piped, X-Trace, version)"
            },
        ),
    ],
)
def test_parameter_errors(parameters: dict[str, Any], expected: dict[str, str]) -> None:
    assert _errors("GetItem", parameters) == expected


def test_json_body_is_validated_against_its_schema() -> None:
    errors = _errors(
        "CreateItem", {}, {"kind": "c", "count": "3", "owner": {}, "tags": [1], "active": "no"}
    )
    assert errors == {
        "body.name": "required",
        "body.kind": "must be one of: a, b",
        "body.count": "must be an integer",
        "body.owner.id": "required",
        "body.tags[0]": "must be a string",
        "body.active": "must be true or false",
    }


def test_valid_json_body_is_sent_unchanged_except_defaults() -> None:
    item = {"name": "n", "kind": "a", "count": 3, "owner": {"id": 7}}
    request = build_operation_request(_definition(), "CreateItem", None, {}, item)
    assert json.loads(request.body or b"") == {**item, "source": "gateway"}
    assert item == {"name": "n", "kind": "a", "count": 3, "owner": {"id": 7}}  # not mutated


def test_body_may_be_given_under_its_parameter_name() -> None:
    request = build_operation_request(
        _definition(), "CreateItem", None, {"item": {"name": "n", "kind": "b"}}
    )
    assert json.loads(request.body or b"")["kind"] == "b"


def test_body_problems() -> None:
    assert _errors("CreateItem", {}) == {"body": "required"}
    assert _errors("CreateItem", {}, [1]) == {"body": "must be an object"}
    assert _errors("GetItem", {"id": "1"}, {"a": 1}) == {"body": "GetItem takes no body"}


def test_text_body() -> None:
    request = build_operation_request(_definition(), "CreateNote", None, {}, "hello")
    assert request.body == b"hello"
    assert request.headers == [("Content-Type", "text/plain")]


def test_binary_body_as_power_automate_sends_it() -> None:
    content = {"$content-type": "image/png", "$content": base64.b64encode(b"\x89PNG").decode()}
    request = build_operation_request(_definition(), "CreateNote", None, {}, content)
    assert request.body == b"\x89PNG"
    assert request.headers == [("Content-Type", "image/png")]
    assert _errors("CreateNote", {}, {"$content": "not base64!"}) == {
        "body.$content": "must be base64"
    }


def test_urlencoded_form() -> None:
    request = build_operation_request(_definition(), "SubmitForm", None, {"a": "x y&z", "b": "2"})
    assert request.body == b"a=x+y%26z&b=2"
    assert request.headers == [("Content-Type", "application/x-www-form-urlencoded")]
    assert _errors("SubmitForm", {"b": 1}) == {"parameters.a": "required"}


def test_multipart_form_with_a_file() -> None:
    file = {
        "$content-type": "text/csv",
        "$content": base64.b64encode(b"a,b\n1,2\n").decode(),
        "filename": "d.csv",
    }
    request = build_operation_request(_definition(), "Upload", None, {"file": file, "title": "T"})
    content_type = dict(request.headers)["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=")[1]
    assert (
        request.body
        == (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="d.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
            "a,b\n1,2\n\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="title"\r\n\r\n'
            "T\r\n"
            f"--{boundary}--\r\n"
        ).encode()
    )


def test_unknown_operation() -> None:
    with pytest.raises(NotFoundError) as caught:
        build_operation_request(_definition(), "Nope", None, {})
    assert caught.value.code == "operation_not_found" and caught.value.status == 404


# --- real samples ---------------------------------------------------------------------


def test_odata_style_paths_keep_their_punctuation() -> None:
    jedox = load_definition(folder_path("certified-connectors/Jedox OData Hub"))
    request = build_operation_request(jedox, "DatabaseById", None, {"DatabaseId": 3})
    assert request.path == "/Databases(3)"
    assert request.base_url == "https://cloud.jedox.com"
    with pytest.raises(ValidationFailedError):
        build_operation_request(jedox, "DatabaseById", None, {"DatabaseId": "three"})


def test_required_internal_defaults_from_a_sample() -> None:
    fred = load_definition(
        folder_path("independent-publisher-connectors/Federal Reserve Economic Data")
    )
    request = build_operation_request(fred, "CategoryGetChild", None, {"category_id": "13"})
    assert request.path == "/category/children"
    assert request.query == [("category_id", "13"), ("file_type", "json")]


def test_multipart_upload_from_a_sample() -> None:
    workspan = load_definition(folder_path("certified-connectors/WorkSpan"))
    request = build_operation_request(
        workspan,
        "BulkloadOpportunityFileAttachment",
        None,
        {"integration_id": "i-1", "has_header_row": True, "file": "a,b\n"},
    )
    assert request.query == [("integration_id", "i-1"), ("has_header_row", "true")]
    assert b'name="file"; filename="file"' in (request.body or b"")


def test_deeply_nested_bodies_are_refused_not_crashed() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": deep}
    assert _errors("CreateNote", {}, deep) == {"body": "is nested too deeply"}
