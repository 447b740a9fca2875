"""Lenient scalars where a definition contradicts itself: a boolean whose enum lists
"false"/"true" (or an integer whose enum lists words) accepts what either reading
allows, in query parameters, JSON bodies and connection parameters; definitions that
agree with themselves stay strict."""

from __future__ import annotations

from typing import Any

import pytest

from functions.errors import ValidationFailedError
from functions.powerplatform import (
    ConnectorDefinition,
    build_operation_request,
    parse_definition,
    validate_connection_parameters,
)


def definition(connection_parameters: dict[str, Any] | None = None) -> ConnectorDefinition:
    swagger = {
        "swagger": "2.0",
        "info": {"title": "Lenient"},
        "host": "api.example.test",
        "paths": {
            "/things": {
                "post": {
                    "operationId": "Post",
                    "consumes": ["application/json"],
                    "parameters": [
                        {
                            "name": "flag",
                            "in": "query",
                            "type": "boolean",
                            "enum": ["false", "true"],
                        },
                        {"name": "strict", "in": "query", "type": "boolean", "enum": [True]},
                        {"name": "mode", "in": "query", "type": "integer", "enum": ["all", 1]},
                        {
                            "name": "body",
                            "in": "body",
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "on": {"type": "boolean", "enum": ["false", "true"]},
                                    "kind": {"type": "string", "enum": ["a", "b"]},
                                },
                            },
                        },
                    ],
                }
            }
        },
    }
    properties = {"connectionParameters": connection_parameters or {}}
    return parse_definition(swagger, {"properties": properties})


@pytest.mark.parametrize(
    ("given", "sent"), [(True, "true"), ("true", "true"), ("false", "false"), (False, "false")]
)
def test_boolean_with_string_enum_accepts_both_spellings(given: Any, sent: str) -> None:
    request = build_operation_request(definition(), "Post", None, {"flag": given})
    assert request.query == [("flag", sent)]


def test_contradictory_enum_accepts_the_members_as_written_and_the_type() -> None:
    assert build_operation_request(definition(), "Post", None, {"mode": "all"}).query == [
        ("mode", "all")
    ]
    assert build_operation_request(definition(), "Post", None, {"mode": "7"}).query == [
        ("mode", "7")
    ]
    with pytest.raises(ValidationFailedError) as caught:
        build_operation_request(definition(), "Post", None, {"mode": "some"})
    assert caught.value.errors == [{"field": "parameters.mode", "message": "must be an integer"}]


def test_consistent_enums_stay_strict() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        build_operation_request(definition(), "Post", None, {"strict": False, "flag": "yes"})
    fields = {e["field"]: e["message"] for e in caught.value.errors}
    assert fields == {
        "parameters.flag": "must be true or false",
        "parameters.strict": "must be one of: true",
    }
    with pytest.raises(ValidationFailedError):
        build_operation_request(definition(), "Post", None, None, body={"kind": "c"})


@pytest.mark.parametrize("given", [True, False, "true", "false"])
def test_json_body_boolean_with_string_enum(given: Any) -> None:
    request = build_operation_request(definition(), "Post", None, None, body={"on": given})
    assert request.body is not None and b'"on"' in request.body


def test_json_body_contradiction_still_refuses_other_values() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        build_operation_request(definition(), "Post", None, None, body={"on": "maybe"})
    assert caught.value.errors == [{"field": "body.on", "message": "must be true or false"}]


def test_connection_bool_with_word_allowed_values() -> None:
    parameters = {
        "flag": {"type": "bool", "uiDefinition": {"constraints": {"allowedValues": ["yes", "no"]}}},
        "cased": {
            "type": "bool",
            "uiDefinition": {"constraints": {"allowedValues": [{"value": "True"}, "False"]}},
        },
    }
    parsed = definition(parameters)
    _, plain = validate_connection_parameters(parsed, None, {"flag": "yes", "cased": "true"})
    assert plain == {"flag": "yes", "cased": True}
    _, plain = validate_connection_parameters(parsed, None, {"flag": True, "cased": False})
    assert plain == {"flag": True, "cased": False}
    with pytest.raises(ValidationFailedError) as caught:
        validate_connection_parameters(parsed, None, {"flag": "maybe", "cased": "maybe"})
    assert {e["field"] for e in caught.value.errors} == {"parameters.flag", "parameters.cased"}
