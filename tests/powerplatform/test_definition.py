"""parse_definition on small hand-written definitions: structure, operations, auth."""

from __future__ import annotations

from typing import Any

import pytest

from functions.errors import NotFoundError
from functions.powerplatform import DefinitionError, inspect_dict, parse_definition


def swagger(**extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "swagger": "2.0",
        "info": {"title": "Demo", "version": "1.0"},
        "host": "api.example.com",
        "basePath": "/v1",
        "schemes": ["https"],
        "paths": {"/items": {"get": {"operationId": "ListItems"}}},
    }
    document.update(extra)
    return document


def properties(**extra: Any) -> dict[str, Any]:
    return {"properties": {"iconBrandColor": "#000000", **extra}}


def secure(required: bool = True) -> dict[str, Any]:
    return {
        "type": "securestring",
        "uiDefinition": {"constraints": {"required": str(required).lower()}},
    }


# --- structure ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        (
            {"swagger": "3.0", "paths": {}},
            "apiDefinition.swagger.json: /swagger: must be \"2.0\" (found '3.0')",
        ),
        ({"paths": {}}, 'apiDefinition.swagger.json: /swagger: must be "2.0" (missing)'),
        (
            {"openapi": "3.0.1", "paths": {}},
            "apiDefinition.swagger.json: /openapi: OpenAPI 3.0.1 is not supported",
        ),
        ({"swagger": "2.0"}, "apiDefinition.swagger.json: /paths: must be an object (missing)"),
        (
            {"swagger": "2.0", "paths": []},
            "apiDefinition.swagger.json: /paths: must be an object (not an object)",
        ),
    ],
)
def test_unusable_swagger_is_a_definition_error(document: dict[str, Any], detail: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(document, {})
    assert caught.value.detail.startswith(detail)
    assert caught.value.code == "invalid_definition" and caught.value.status == 400
    assert caught.value.pointer is not None


def test_base_url_follows_the_definition() -> None:
    assert parse_definition(swagger(), {}).base_url == "https://api.example.com/v1"
    assert parse_definition(swagger(basePath="/"), {}).base_url == "https://api.example.com/"
    assert parse_definition(swagger(basePath="/"), {}).request_base_url == "https://api.example.com"
    assert parse_definition(swagger(schemes=["http"]), {}).base_url == "http://api.example.com/v1"
    assert parse_definition(swagger(schemes=["http", "https"]), {}).base_url.startswith("https:")
    no_host = swagger()
    del no_host["host"]
    definition = parse_definition(no_host, {})
    assert definition.base_url is None
    assert any("no host" in warning for warning in definition.warnings)


def test_sloppy_parts_become_warnings() -> None:
    document = swagger(
        info="not an object",
        paths={
            "/a": "not an object",
            "/b": {"get": "not an object", "post": {"operationId": "B", "parameters": {"x": 1}}},
            "x-ms-extension": {"anything": True},
        },
    )
    definition = parse_definition(document, {"properties": "nope"})
    assert definition.title is None
    assert list(definition.operations) == ["B"]
    text = "\n".join(definition.warnings)
    for expected in (
        "no info.title",
        "path '/a' is not an object",
        "GET /b is not an object",
        "'parameters' is not an array",
        "apiProperties.json has no 'properties' object",
    ):
        assert expected in text


# --- operations -----------------------------------------------------------------------


def test_missing_and_duplicate_operation_ids_are_made_unique() -> None:
    document = swagger(
        paths={
            "/items/{id}": {"get": {}, "delete": {"operationId": "Remove"}},
            "/other": {"post": {"operationId": "Remove"}},
        }
    )
    definition = parse_definition(document, {})
    assert list(definition.operations) == ["get_items_id", "Remove", "Remove_2"]
    assert any("has no operationId; using 'get_items_id'" in w for w in definition.warnings)
    assert any("'Remove' is used more than once" in w for w in definition.warnings)
    summary = inspect_dict(definition, source="x")
    assert summary["operations"][0] == {
        "operationId": "get_items_id",
        "encodedOperationId": "get_items_id",
        "method": "GET",
        "path": "/items/{id}",
    }


def test_parameters_resolve_refs_and_merge_path_level_ones() -> None:
    document = swagger(
        parameters={"Top": {"name": "$top", "in": "query", "type": "integer", "default": 10}},
        paths={
            "/items/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "type": "string"},
                    {"name": "v", "in": "query", "type": "string"},
                ],
                "get": {
                    "operationId": "GetItem",
                    "parameters": [
                        {"$ref": "#/parameters/Top"},
                        {"name": "v", "in": "query", "type": "integer", "required": True},
                        {"$ref": "#/parameters/Missing"},
                    ],
                },
            }
        },
    )
    definition = parse_definition(document, {})
    operation = definition.operation("GetItem")
    assert [(p.name, p.location, p.type, p.required) for p in operation.parameters] == [
        ("id", "path", "string", True),  # path parameters are always required
        ("$top", "query", "integer", False),
        ("v", "query", "integer", True),  # the operation's own definition wins
    ]
    assert any("'#/parameters/Missing' does not resolve" in w for w in definition.warnings)


def test_unknown_operation_is_not_found() -> None:
    with pytest.raises(NotFoundError) as caught:
        parse_definition(swagger(), {}).operation("Nope")
    assert caught.value.code == "operation_not_found"


def test_path_variables_without_parameters_are_warned_about() -> None:
    document = swagger(paths={"/items/{id}": {"get": {"operationId": "GetItem"}}})
    definition = parse_definition(document, {})
    assert any("path variable {id} has no path parameter" in w for w in definition.warnings)


# --- authentication -------------------------------------------------------------------


def _options(document: dict[str, Any], props: dict[str, Any]) -> list[dict[str, Any]]:
    return inspect_dict(parse_definition(document, props))["authOptions"]


def test_no_security_is_none() -> None:
    assert _options(swagger(), properties()) == [
        {"name": None, "type": "none", "gateway": False, "parameters": []}
    ]


def test_basic_from_security_definition_and_parameters() -> None:
    document = swagger(securityDefinitions={"basic": {"type": "basic"}})
    props = properties(connectionParameters={"username": {"type": "string"}, "password": secure()})
    (option,) = _options(document, props)
    assert option["type"] == "basic"
    assert option["parameters"] == [
        {"name": "username", "type": "string", "required": False, "secret": False},
        {"name": "password", "type": "securestring", "required": True, "secret": True},
    ]


def test_api_key_location_and_name() -> None:
    document = swagger(securityDefinitions={"k": {"type": "apiKey", "in": "query", "name": "code"}})
    (option,) = _options(document, properties(connectionParameters={"api_key": secure()}))
    assert option["type"] == "apiKey" and option["apiKey"] == {"in": "query", "name": "code"}


def test_conventional_parameters_are_added_when_missing() -> None:
    document = swagger(
        securityDefinitions={"k": {"type": "apiKey", "in": "header", "name": "X-Key"}}
    )
    definition = parse_definition(document, properties())
    (option,) = inspect_dict(definition)["authOptions"]
    assert option["type"] == "apiKey"
    assert option["parameters"] == [
        {"name": "api_key", "type": "securestring", "required": True, "secret": True}
    ]
    assert any("assumed api_key" in w for w in definition.warnings)


def test_securestring_without_security_definition_is_none_but_secret() -> None:
    props = properties(connectionParameters={"public_key": secure(), "region": {"type": "string"}})
    (option,) = _options(swagger(), props)
    assert option["type"] == "none"
    assert [(p["name"], p["secret"]) for p in option["parameters"]] == [
        ("public_key", True),
        ("region", False),
    ]


def test_oauth_generic_provider_urls() -> None:
    document = swagger(
        securityDefinitions={
            "oauth": {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": "https://login.example.com/authorize",
                "tokenUrl": "https://login.example.com/token",
                "scopes": {"read": "read", "write": "write"},
            }
        }
    )
    props = properties(
        connectionParameters={
            "token": {
                "type": "oauthSetting",
                "oAuthSettings": {"identityProvider": "oauth2", "clientId": "c"},
            }
        }
    )
    definition = parse_definition(document, props)
    (option,) = inspect_dict(definition)["authOptions"]
    assert option["oauth2"] == {
        "identityProvider": "oauth2",
        "authorizationUrl": "https://login.example.com/authorize",
        "tokenUrl": "https://login.example.com/token",
        "refreshUrl": "https://login.example.com/token",
        "scopes": ["read", "write"],
    }
    oauth = definition.auth_options[0].oauth2
    assert oauth is not None and oauth.client_id == "c" and oauth.flow == "accessCode"


def test_well_known_provider_urls_fill_gaps() -> None:
    props = properties(
        connectionParameters={
            "token": {
                "type": "oauthSetting",
                "oAuthSettings": {"identityProvider": "github", "scopes": ["gist"]},
            }
        }
    )
    (option,) = _options(swagger(), props)
    assert option["oauth2"]["identityProvider"] == "github"
    assert option["oauth2"]["tokenUrl"] == "https://github.com/login/oauth/access_token"
    assert option["oauth2"]["scopes"] == ["gist"]


def test_entra_id_endpoints_come_from_login_uri_and_tenant() -> None:
    props = properties(
        connectionParameters={
            "token": {
                "type": "oauthSetting",
                "oAuthSettings": {
                    "identityProvider": "aad",
                    "customParameters": {
                        "loginUri": {"value": "https://login.microsoftonline.com"},
                        "tenantId": {"value": "contoso.onmicrosoft.com"},
                        "resourceUri": {"value": "https://graph.microsoft.com"},
                    },
                },
            }
        }
    )
    (option,) = _options(swagger(), props)
    assert option["oauth2"]["authorizationUrl"] == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
    )


def test_windows_needs_a_gateway_and_an_auth_type_allowing_windows() -> None:
    props = properties(
        connectionParameters={
            "authType": {
                "type": "string",
                "allowedValues": [{"value": "windows"}],
                "uiDefinition": {
                    "constraints": {"allowedValues": [{"text": "Windows", "value": "windows"}]}
                },
            },
            "username": {"type": "securestring"},
            "password": {"type": "securestring"},
            "gateway": {
                "type": "gatewaySetting",
                "gatewaySettings": {"dataSourceType": "CustomConnector"},
            },
        }
    )
    (option,) = _options(swagger(), props)
    assert option["type"] == "windows" and option["gateway"] is True


def test_parameter_sets_give_one_option_each() -> None:
    document = swagger(
        securityDefinitions={
            "basic-auth": {"type": "basic"},
            "key-auth": {"type": "apiKey", "in": "header", "name": "X-Key"},
        }
    )
    props = properties(
        connectionParameterSets={
            "uiDefinition": {"displayName": "Authentication"},
            "values": [
                {"name": "key-auth", "parameters": {"api_key": secure()}},
                {
                    "name": "basic-auth",
                    "parameters": {"username": {"type": "string"}, "password": secure()},
                },
                {"name": "anonymous", "parameters": {}},
            ],
        }
    )
    options = _options(document, props)
    assert [(o["name"], o["type"]) for o in options] == [
        ("key-auth", "apiKey"),
        ("basic-auth", "basic"),
        ("anonymous", "none"),
    ]


def test_undefined_security_requirements_are_warned_about() -> None:
    definition = parse_definition(swagger(security=[{"missing": []}]), properties())
    assert any("'missing' names no security definition" in w for w in definition.warnings)


# --- policies and custom code in the summary ------------------------------------------


def test_policies_are_summarised_and_unsupported_ones_warned_about() -> None:
    props = properties(
        policyTemplateInstances=[
            {
                "templateId": "SetHeader",
                "parameters": {
                    "x-ms-apimTemplateParameter.name": "A",
                    "x-ms-apimTemplateParameter.value": "1",
                },
            },
            {
                "templateId": "convertobjecttoarray",
                "title": "Convert",
                "parameters": {"x-ms-apimTemplate-operationName": ["ListItems"]},
            },
            {"templateId": "setheader", "parameters": {"x-ms-apimTemplateParameter.name": "B"}},
            {
                "templateId": "setheader",
                "parameters": {
                    "x-ms-apimTemplateParameter.name": "C",
                    "x-ms-apimTemplateParameter.value": "@utcNow()",
                },
            },
            {
                "templateId": "dynamichosturl",
                "parameters": {
                    "x-ms-apimTemplateParameter.urlTemplate": "https://x",
                    "x-ms-apimTemplate-operationName": ["Ghost"],
                },
            },
            "not an object",
        ]
    )
    definition = parse_definition(swagger(), props)
    assert inspect_dict(definition)["policies"] == [
        {"templateId": "setheader", "supported": True},
        {"templateId": "convertobjecttoarray", "supported": False},
        {"templateId": "setheader", "supported": False},
        {"templateId": "setheader", "supported": False},
        {"templateId": "dynamichosturl", "supported": True},
        {"templateId": "", "supported": False},
    ]
    text = "\n".join(definition.warnings)
    assert (
        "policy 2 'convertobjecttoarray' (Convert) is not supported: the gateway does not "
        "implement this template; calls to operation ListItems answer 501 policy_not_supported"
    ) in text
    assert "x-ms-apimTemplateParameter.value is missing; calls to any operation" in text
    assert "unknown function 'utcNow'" in text
    assert "policy 5 'dynamichosturl' names operations the definition does not have: Ghost" in text


def test_script_operations_limit_what_custom_code_covers() -> None:
    props = properties(scriptOperations=["ListItems"])
    definition = parse_definition(swagger(), props, has_script=True)
    assert definition.script_operations == ("ListItems",)
    assert definition.script_covers("ListItems") and not definition.script_covers(None)
    everything = parse_definition(swagger(), properties(scriptOperations=[]), has_script=True)
    assert everything.script_operations is None and everything.script_covers(None)


# --- robustness: real definitions with parts replaced by junk --------------------------


def test_junk_anywhere_never_crashes() -> None:
    """Replace random parts of real samples with junk: only DefinitionError may escape."""
    import copy
    import json
    import random

    from functions.errors import GatewayError
    from functions.powerplatform import (
        apply_request_policies,
        prepare_operation,
        validate_connection_parameters,
    )
    from tests.powerplatform.samples import require_connectors_dir, sample_folders

    root = require_connectors_dir()
    documents = []
    for name in sample_folders():
        try:
            documents.append(
                tuple(
                    json.loads((root / name / file).read_bytes().decode("utf-8-sig"))
                    for file in ("apiDefinition.swagger.json", "apiProperties.json")
                )
            )
        except ValueError:
            continue  # the malformed samples
    junk: list[Any] = [None, 0, -1, 2.5, True, "", "x", "@nope()", "@{", "{", [], {}, [None]]
    junk.append({"$ref": "#/definitions/Nope"})

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [prefix] if prefix else []
        children = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else []
        )
        for key, child in children:
            found.extend(paths(child, (*prefix, key)))
        return found

    randomizer = random.Random(20240601)
    for _ in range(300):
        api_definition, api_properties = copy.deepcopy(randomizer.choice(documents))
        for _ in range(randomizer.randint(1, 3)):
            target = randomizer.choice([api_definition, api_properties])
            *parents, last = randomizer.choice(paths(target))
            node = target
            for key in parents:
                node = node[key]
            node[last] = copy.deepcopy(randomizer.choice(junk))
        try:
            definition = parse_definition(api_definition, api_properties)
        except DefinitionError:
            continue
        json.dumps(inspect_dict(definition))
        for option in definition.auth_options:
            try:
                validate_connection_parameters(definition, option.name, {})
            except GatewayError:
                pass
        for operation_id in list(definition.operations)[:3]:
            try:
                prepared = prepare_operation(definition, operation_id, None, {})
                apply_request_policies(
                    definition,
                    operation_id,
                    prepared.request,
                    {},
                    path_parameters=prepared.path_parameters,
                )
            except GatewayError:
                pass
