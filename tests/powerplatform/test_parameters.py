"""Connection creation: validating parameters against the definition."""

from __future__ import annotations

from typing import Any

import pytest

from functions.errors import ValidationFailedError
from functions.powerplatform import (
    ConnectorDefinition,
    load_definition,
    parse_definition,
    validate_connection_parameters,
)
from tests.powerplatform.samples import folder_path


def sample(name: str) -> ConnectorDefinition:
    return load_definition(folder_path(name))


def errors_of(
    definition: ConnectorDefinition, parameter_set: str | None, values: dict[str, Any]
) -> dict[str, str]:
    with pytest.raises(ValidationFailedError) as caught:
        validate_connection_parameters(definition, parameter_set, values)
    assert caught.value.status == 422 and caught.value.code == "validation_error"
    return {e["field"]: e["message"] for e in caught.value.errors}


def test_secrets_and_metadata_are_split() -> None:
    jira = sample("certified-connectors/JIRA")
    secret, plain = validate_connection_parameters(
        jira, None, {"jirainstance": "acme", "username": "ann", "password": "s3cret"}
    )
    assert secret == {"password": "s3cret"}
    assert plain == {"jirainstance": "acme", "username": "ann"}


def test_every_problem_is_named_and_no_value_is_echoed() -> None:
    jira = sample("certified-connectors/JIRA")
    errors = errors_of(jira, None, {"username": 5, "password": "", "extra": "s3cret-value"})
    assert errors == {
        "parameters.extra": "unknown parameter (expected: jirainstance, username, password)",
        "parameters.jirainstance": "required",
        "parameters.username": "must be a string",
        "parameters.password": "required",
    }
    with pytest.raises(ValidationFailedError) as caught:
        validate_connection_parameters(jira, None, {"extra": "s3cret-value"})
    assert "s3cret-value" not in caught.value.detail


def test_connectors_without_sets_refuse_a_parameter_set() -> None:
    jira = sample("certified-connectors/JIRA")
    assert errors_of(jira, "basic", {}) == {"parameterSet": "this connector has no parameter sets"}


def test_parameter_sets_must_be_chosen() -> None:
    events = sample("certified-connectors/3E Events")
    names = ", ".join(events.parameter_sets)
    assert errors_of(events, None, {}) == {"parameterSet": f"required (one of: {names})"}
    assert errors_of(events, "nope", {}) == {"parameterSet": f"unknown (expected one of: {names})"}


def test_defaults_and_allowed_values_in_a_set() -> None:
    events = sample("certified-connectors/3E Events")
    secret, plain = validate_connection_parameters(
        events, "aadProd", {"token:3eInstanceId": "inst-1"}
    )
    assert secret == {}
    assert plain == {"token:3eInstanceId": "inst-1", "token:customHost": "api.elite.com"}
    errors = errors_of(
        events, "aadProd", {"token:3eInstanceId": "i", "token:customHost": "evil.com"}
    )
    assert errors == {"parameters.token:customHost": "must be one of: api.elite.com"}


def test_oauth_parameters_come_from_sign_in() -> None:
    events = sample("certified-connectors/3E Events")
    errors = errors_of(events, "aadProd", {"token": "abc", "token:3eInstanceId": "i"})
    assert errors == {"parameters.token": "is set by signing in (OAuth), not given directly"}


def test_each_set_has_its_own_parameters() -> None:
    odn = sample("independent-publisher-connectors/Open Data Network")
    secret, plain = validate_connection_parameters(odn, "api-auth", {"api_key": "k"})
    assert secret == {"api_key": "k"} and plain == {"environment": "api.us.socrata.com"}
    secret, plain = validate_connection_parameters(
        odn, "basic-auth", {"username": "id", "password": "pw", "environment": "api.eu.socrata.com"}
    )
    assert secret == {"password": "pw"}
    assert plain == {"username": "id", "environment": "api.eu.socrata.com"}
    assert errors_of(odn, "basic-auth", {"api_key": "k", "username": "u", "password": "p"}) == {
        "parameters.api_key": "unknown parameter (expected: username, password, environment)"
    }


def test_optional_parameters_may_be_left_out() -> None:
    diffchecker = sample("independent-publisher-connectors/Diffchecker")
    assert validate_connection_parameters(diffchecker, None, {}) == ({}, {})


def test_gateway_settings_are_metadata() -> None:
    bridge = sample("certified-connectors/Connect Bridge")
    secret, plain = validate_connection_parameters(
        bridge, None, {"authType": "anonymous", "gateway": "gw-1"}
    )
    assert secret == {} and plain == {"authType": "anonymous", "gateway": "gw-1"}


def _typed() -> ConnectorDefinition:
    document = {
        "swagger": "2.0",
        "info": {"title": "T"},
        "host": "h.example",
        "paths": {},
    }
    props = {
        "properties": {
            "connectionParameters": {
                "retries": {"type": "int", "uiDefinition": {"constraints": {"required": "true"}}},
                "verbose": {"type": "bool"},
                "region": {
                    "type": "string",
                    "defaultValue": "eu",
                    "allowedValues": [{"value": "eu"}, {"value": "us"}],
                },
                "cert": {"type": "clientCertificate"},
            }
        }
    }
    return parse_definition(document, props)


def test_int_bool_and_certificate_types() -> None:
    definition = _typed()
    secret, plain = validate_connection_parameters(
        definition, None, {"retries": "3", "verbose": "true", "cert": "MIIB..."}
    )
    assert secret == {"cert": "MIIB..."}
    assert plain == {"retries": 3, "verbose": True, "region": "eu"}
    _, plain = validate_connection_parameters(definition, None, {"retries": 0, "verbose": False})
    assert plain == {"retries": 0, "verbose": False, "region": "eu"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"retries": "three"}, {"parameters.retries": "must be an integer"}),
        ({"retries": True}, {"parameters.retries": "must be an integer"}),
        ({"retries": 1, "verbose": "yes"}, {"parameters.verbose": "must be true or false"}),
        ({"retries": 1, "region": "mars"}, {"parameters.region": "must be one of: eu, us"}),
        ({"retries": 1, "cert": {"a": 1}}, {"parameters.cert": "must be a string"}),
        ({}, {"parameters.retries": "required"}),
    ],
)
def test_type_errors(values: dict[str, Any], expected: dict[str, str]) -> None:
    assert errors_of(_typed(), None, values) == expected


def test_synthesized_api_key_parameter_is_validated() -> None:
    document = {
        "swagger": "2.0",
        "info": {"title": "T"},
        "host": "h.example",
        "paths": {},
        "securityDefinitions": {"k": {"type": "apiKey", "in": "header", "name": "X-Key"}},
    }
    definition = parse_definition(document, {"properties": {}})
    assert errors_of(definition, None, {}) == {"parameters.api_key": "required"}
    assert validate_connection_parameters(definition, None, {"api_key": "k"}) == (
        {"api_key": "k"},
        {},
    )
