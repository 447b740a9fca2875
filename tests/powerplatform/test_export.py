"""Exporting a definition pair that calls the connector through the gateway."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from functions.powerplatform import DefinitionError, load_folder, parse_definition
from functions.powerplatform.export import (
    CLIENT_ID_PLACEHOLDER,
    ENTRA_SECURITY_DEFINITION,
    export_definition,
)
from functions.powerplatform.model import HTTP_METHODS
from functions.powerplatform.routing import build_router
from tests.powerplatform.samples import (
    NOT_FOUND,
    folder_path,
    malformed_folders,
    sample_folders,
)

GATEWAY = "https://gateway.example.com"
AUDIENCE = "api://connector-gateway"
MALFORMED = set(malformed_folders())
READABLE = [name for name in sample_folders() if name not in MALFORMED]


def _export(api_definition: dict, api_properties: dict | None = None, **options: Any) -> tuple:
    options.setdefault("gateway_base_url", GATEWAY)
    options.setdefault("audience", AUDIENCE)
    return export_definition(api_definition, api_properties or {}, **options)


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [
        (path, method, item[method])
        for path, item in document["paths"].items()
        if isinstance(item, dict) and not path.startswith("x-")
        for method in HTTP_METHODS
        if isinstance(item.get(method), dict)
    ]


def _without_lookup_connection(node: Any) -> Any:
    """`node` without the connectionId entries export adds to x-ms-dynamic-* lookups.

    Applied to both sides: an empty lookup `parameters` object counts as none.
    """
    if isinstance(node, list):
        return [_without_lookup_connection(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _without_lookup_connection(value) for key, value in node.items()}
    for key, value in result.items():
        if key.startswith("x-ms-dynamic-") and isinstance(value, dict):
            lookups = [value, value.get("open"), value.get("browse")]
            for lookup in (item for item in lookups if isinstance(item, dict)):
                parameters = lookup.get("parameters")
                if isinstance(parameters, dict):
                    parameters.pop("connectionId", None)
                    if not parameters:
                        del lookup["parameters"]
    return result


def _joined_base_path(document: dict) -> str:
    base = document.get("basePath") or ""
    return base.rstrip("/")


@pytest.mark.parametrize("name", READABLE or [NOT_FOUND])
def test_every_readable_sample_round_trips(name: str) -> None:
    api_definition, api_properties = load_folder(folder_path(name))
    pristine = copy.deepcopy((api_definition, api_properties))
    original = parse_definition(api_definition, api_properties)

    swagger, properties = _export(api_definition, api_properties, connection_id="conn-1")
    assert (api_definition, api_properties) == pristine, "the inputs must not change"
    # What a maker would upload: plain JSON.
    swagger, properties = json.loads(json.dumps(swagger)), json.loads(json.dumps(properties))
    exported = parse_definition(swagger, properties)

    assert {(o.operation_id, o.method) for o in exported.operations.values()} == {
        (o.operation_id, o.method) for o in original.operations.values()
    }
    assert exported.policies == []
    assert not any("not supported" in warning for warning in exported.warnings)
    assert exported.base_url == f"{GATEWAY}/api"
    (option,) = exported.auth_options
    assert option.type == "oauth2"
    assert option.oauth2 is not None and option.oauth2.identity_provider == "aad"
    assert option.oauth2.custom_parameters["resourceUri"] == AUDIENCE

    prefix = "/connections/{connectionId}/invoke" + _joined_base_path(api_definition)
    for operation in original.operations.values():
        twin = exported.operations[operation.operation_id]
        assert twin.path == prefix + operation.path
        assert twin.method == operation.method
        connection = twin.parameter("connectionId", "path")
        assert connection is not None and connection.required
        assert connection.default == "conn-1" and connection.visibility == "internal"
    exported_raw = {
        (path[len(prefix) :], method): raw for path, method, raw in _operations(swagger)
    }
    for path, method, raw in _operations(api_definition):
        twin_raw = exported_raw[(path if path.startswith("/") else "/" + path, method)]
        assert twin_raw["parameters"][0] == {"$ref": "#/parameters/connectionId"}
        assert "security" not in twin_raw
        # Everything else of the operation is kept (no sample sends its credential
        # as a declared parameter, so none is removed here).
        ignored = ("parameters", "security", "schemes")
        assert _without_lookup_connection(
            {k: v for k, v in twin_raw.items() if k not in ignored}
        ) == _without_lookup_connection({k: v for k, v in raw.items() if k not in ignored})
        assert _without_lookup_connection(twin_raw["parameters"][1:]) == _without_lookup_connection(
            raw.get("parameters", [])
        )
    assert swagger["securityDefinitions"] == {"oauth2-auth": dict(ENTRA_SECURITY_DEFINITION)}
    assert swagger["security"] == [{"oauth2-auth": []}]
    # Kept as written, except that dynamic lookups now pass the connection on.
    for section in ("definitions", "responses"):
        assert _without_lookup_connection(swagger.get(section)) == _without_lookup_connection(
            api_definition.get(section)
        )
    assert properties["properties"]["policyTemplateInstances"] == []
    assert "scriptOperations" not in properties["properties"]
    assert list(properties["properties"]["connectionParameters"]) == ["token"]


def test_gateway_host_scheme_and_base_path() -> None:
    api_definition, api_properties = load_folder(folder_path("certified-connectors/JIRA"))
    swagger, _ = _export(api_definition, api_properties, gateway_base_url="http://127.0.0.1:7071/")
    assert (swagger["host"], swagger["schemes"], swagger["basePath"]) == (
        "127.0.0.1:7071",
        ["http"],
        "/api",
    )
    swagger, _ = _export(
        api_definition, api_properties, gateway_base_url="https://GW.example.com/edge/api"
    )
    assert (swagger["host"], swagger["schemes"], swagger["basePath"]) == (
        "gw.example.com",
        ["https"],
        "/edge/api",
    )
    assert "/connections/{connectionId}/invoke/rest/api/issue/{issueKey}" in swagger["paths"]
    for bad in (
        "ftp://gw.example.com",
        "gw.example.com",
        "https://user:pw@gw.example.com",
        "https://gw?x=1",
    ):
        with pytest.raises(ValueError):
            _export(api_definition, api_properties, gateway_base_url=bad)


def test_exported_paths_route_back_to_the_original_operations() -> None:
    """A call made from the export reaches the right operation in the gateway."""
    api_definition, api_properties = load_folder(folder_path("certified-connectors/JIRA"))
    original = parse_definition(api_definition, api_properties)
    router = build_router(original)
    # What Power Platform sends for GetIssue, below the gateway's /api base path.
    sent = "/connections/conn-1/invoke/rest/api/issue/ABC-1"
    after_invoke = sent.split("/invoke", 1)[1]
    relative = router.strip_base_path(after_invoke)
    assert relative == "/issue/ABC-1"
    found = router.match("GET", relative)
    assert found is not None and found[0].operation_id == "GetIssue"


def test_properties_are_the_entra_template() -> None:
    api_definition, api_properties = load_folder(folder_path("certified-connectors/Connect Bridge"))
    _, properties = _export(
        api_definition, api_properties, client_id="11111111-2222-3333-4444-555555555555"
    )
    settings = properties["properties"]["connectionParameters"]["token"]
    assert settings == {
        "type": "oauthSetting",
        "oAuthSettings": {
            "identityProvider": "aad",
            "clientId": "11111111-2222-3333-4444-555555555555",
            "scopes": [],
            "redirectMode": "Global",
            "redirectUrl": "https://global.consent.azure-apim.net/redirect",
            "properties": {"IsFirstParty": "False", "AzureActiveDirectoryResourceId": AUDIENCE},
            "customParameters": {
                "loginUri": {"value": "https://login.microsoftonline.com"},
                "tenantId": {"value": "common"},
                "resourceUri": {"value": AUDIENCE},
                "enableOnbehalfOfLogin": {"value": "false"},
            },
        },
    }
    original = api_properties["properties"]
    assert "gateway" in original["capabilities"]
    assert "gateway" not in properties["properties"]["capabilities"]
    for key in ("iconBrandColor", "publisher", "stackOwner"):
        if key in original:
            assert properties["properties"][key] == original[key]
    assert set(properties["properties"]) <= {
        "connectionParameters",
        "iconBrandColor",
        "capabilities",
        "publisher",
        "stackOwner",
        "policyTemplateInstances",
    }


def test_without_client_or_connection_id() -> None:
    api_definition, api_properties = load_folder(folder_path("certified-connectors/Docurain"))
    swagger, properties = _export(api_definition, api_properties)
    settings = properties["properties"]["connectionParameters"]["token"]["oAuthSettings"]
    assert settings["clientId"] == CLIENT_ID_PLACEHOLDER
    parameter = swagger["parameters"]["connectionId"]
    assert parameter["x-ms-summary"] == "Gateway connection"
    assert parameter["required"] is True and parameter["in"] == "path"
    assert "default" not in parameter and "x-ms-visibility" not in parameter


def _minimal(**top: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "swagger": "2.0",
        "info": {"title": "Minimal", "version": "1.0"},
        "paths": {
            "/items/{id}": {
                "get": {
                    "operationId": "GetItem",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "type": "string"}
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    document.update(top)
    return document


def test_no_host_and_no_base_path() -> None:
    swagger, _ = _export(_minimal(), title="Through the gateway")
    assert swagger["host"] == "gateway.example.com"
    assert list(swagger["paths"]) == ["/connections/{connectionId}/invoke/items/{id}"]
    assert swagger["info"] == {"title": "Through the gateway", "version": "1.0"}
    exported = parse_definition(swagger, {})
    assert exported.operations["GetItem"].path == "/connections/{connectionId}/invoke/items/{id}"
    # A root base path adds nothing; one without a leading slash gets one.
    swagger, _ = _export(_minimal(host="h", basePath="/"))
    assert list(swagger["paths"]) == ["/connections/{connectionId}/invoke/items/{id}"]
    swagger, _ = _export(_minimal(host="h", basePath="v2/"))
    assert list(swagger["paths"]) == ["/connections/{connectionId}/invoke/v2/items/{id}"]
    swagger, _ = _export(_minimal(host="h", basePath="/v2"), include_base_path=False)
    assert list(swagger["paths"]) == ["/connections/{connectionId}/invoke/items/{id}"]


def test_invalid_definitions_are_refused_like_parse_definition() -> None:
    with pytest.raises(DefinitionError):
        _export({"swagger": "2.0"})
    with pytest.raises(DefinitionError):
        _export({"openapi": "3.0.0", "paths": {}})


def test_credential_parameters_and_upstream_security_are_removed() -> None:
    document = _minimal(
        securityDefinitions={
            "key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "q": {"type": "apiKey", "in": "query", "name": "token"},
            "basic": {"type": "basic"},
        },
        security=[{"key": []}],
        parameters={
            "ApiKey": {"name": "x-api-key", "in": "header", "required": True, "type": "string"},
            "Top": {"name": "top", "in": "query", "type": "integer"},
        },
        paths={
            "/items": {
                "parameters": [{"name": "token", "in": "query", "type": "string"}],
                "get": {
                    "operationId": "List",
                    "security": [{"basic": []}],
                    "schemes": ["http"],
                    "parameters": [
                        {"$ref": "#/parameters/ApiKey"},
                        {"$ref": "#/parameters/Top"},
                        {"name": "Authorization", "in": "header", "type": "string"},
                        {"name": "token", "in": "header", "type": "string"},
                    ],
                    "responses": {},
                },
            }
        },
    )
    swagger, _ = _export(document)
    item = swagger["paths"]["/connections/{connectionId}/invoke/items"]
    assert item["parameters"] == []
    assert item["get"]["parameters"] == [
        {"$ref": "#/parameters/connectionId"},
        {"$ref": "#/parameters/Top"},
        # Same name as the query credential but a header: not the credential.
        {"name": "token", "in": "header", "type": "string"},
    ]
    assert "security" not in item["get"] and "schemes" not in item["get"]
    assert set(swagger["parameters"]) == {"Top", "connectionId"}
    assert list(swagger["securityDefinitions"]) == ["oauth2-auth"]
    parsed = parse_definition(swagger, {})
    assert [p.name for p in parsed.operations["List"].parameters] == [
        "connectionId",
        "top",
        "token",
    ]


def test_generated_and_duplicate_operation_ids_are_written_out() -> None:
    document = _minimal(
        paths={
            "/items": {"get": {"responses": {}}, "post": {"operationId": "Make", "responses": {}}},
            "/things": {"post": {"operationId": "Make", "responses": {}}},
            "x-ms-notes": {"kept": True},
        }
    )
    original = parse_definition(document, {})
    swagger, _ = _export(document)
    exported = parse_definition(swagger, {})
    assert (
        sorted(exported.operations)
        == sorted(original.operations)
        == [
            "Make",
            "Make_2",
            "get_items",
        ]
    )
    assert swagger["paths"]["x-ms-notes"] == {"kept": True}


def test_connection_parameter_name_avoids_collisions() -> None:
    document = _minimal(
        paths={
            "/connections/{connectionId}": {
                "get": {
                    "operationId": "GetConnection",
                    "parameters": [
                        {"name": "connectionId", "in": "path", "required": True, "type": "string"}
                    ],
                    "responses": {},
                }
            }
        }
    )
    swagger, _ = _export(document, connection_id="c9")
    (path,) = swagger["paths"]
    assert path == "/connections/{gatewayConnectionId}/invoke/connections/{connectionId}"
    assert swagger["parameters"]["gatewayConnectionId"]["name"] == "gatewayConnectionId"
    exported = parse_definition(swagger, {})
    operation = exported.operations["GetConnection"]
    assert [p.name for p in operation.parameters] == ["gatewayConnectionId", "connectionId"]


def test_dynamic_lookups_pass_the_connection_on() -> None:
    document = _minimal(
        paths={
            "/lists": {"get": {"operationId": "Lists", "responses": {}}},
            "/items": {
                "get": {
                    "operationId": "Items",
                    "parameters": [
                        {
                            "name": "list",
                            "in": "query",
                            "type": "string",
                            "x-ms-dynamic-values": {"operationId": "Lists", "value-path": "id"},
                        },
                        {
                            "name": "other",
                            "in": "query",
                            "type": "string",
                            "x-ms-dynamic-list": {
                                "operationId": "Lists",
                                "parameters": {"a": {"parameterReference": "list"}},
                            },
                        },
                        {
                            "name": "file",
                            "in": "query",
                            "type": "string",
                            "x-ms-dynamic-values": {"capability": "file-picker"},
                        },
                    ],
                    "responses": {},
                }
            },
        }
    )
    swagger, _ = _export(document)
    parameters = swagger["paths"]["/connections/{connectionId}/invoke/items"]["get"]["parameters"]
    assert parameters[1]["x-ms-dynamic-values"]["parameters"] == {
        "connectionId": {"parameter": "connectionId"}
    }
    assert parameters[2]["x-ms-dynamic-list"]["parameters"] == {
        "a": {"parameterReference": "list"},
        "connectionId": {"parameterReference": "connectionId"},
    }
    assert parameters[3]["x-ms-dynamic-values"] == {"capability": "file-picker"}
    # The original is untouched.
    assert (
        "parameters"
        not in document["paths"]["/items"]["get"]["parameters"][0]["x-ms-dynamic-values"]
    )


def test_paths_with_query_and_fragment_keep_them() -> None:
    document = _minimal(
        paths={
            "/items?type=a": {"get": {"operationId": "A", "responses": {}}},
            "/items#b": {"get": {"operationId": "B", "responses": {}}},
            "items": {"put": {"operationId": "C", "responses": {}}},
            "/items": {"put": {"operationId": "D", "responses": {}}},
        },
        basePath="/v1",
    )
    swagger, _ = _export(document)
    prefix = "/connections/{connectionId}/invoke/v1"
    assert list(swagger["paths"]) == [
        f"{prefix}/items?type=a",
        f"{prefix}/items#b",
        f"{prefix}/items",
        f"{prefix}/items#2",
    ]
    exported = parse_definition(swagger, {})
    assert sorted(exported.operations) == ["A", "B", "C", "D"]


def test_sample_folder_files_are_what_paconn_would_upload(tmp_path: Path) -> None:
    api_definition, api_properties = load_folder(
        folder_path("independent-publisher-connectors/Square Payments")
    )
    swagger, properties = _export(api_definition, api_properties, connection_id="c")
    (tmp_path / "apiDefinition.swagger.json").write_text(json.dumps(swagger, indent=2))
    (tmp_path / "apiProperties.json").write_text(json.dumps(properties, indent=2))
    again = load_folder(tmp_path)
    assert again == (swagger, properties)
    assert len(parse_definition(*again).operations) == 87
