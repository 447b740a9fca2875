"""A connector's definition pair rewritten to call it through this gateway.

`export_definition(api_definition, api_properties, gateway_base_url=..., audience=...)`
returns `(swagger, apiProperties)` that a maker imports into Power Automate / Power Apps
as a custom connector (`paconn create --api-def apiDefinition.swagger.json --api-prop
apiProperties.json`, or the custom connector wizard's "Import an OpenAPI file"), and
that describes the URLs a Logic Apps workflow calls.

What changes (everything else is kept as written: operationIds, summaries, descriptions,
parameters, responses, `definitions`, `parameters`, `responses`, `x-ms-*`):
- `host`/`schemes`/`basePath` are the gateway's: `host[:port]` and scheme of
  `gateway_base_url`, base path `<its path>/api` (a URL already ending in `/api` is
  taken as the API root).
- Every path becomes the gateway's raw invoke route for a connection:
  `/connections/{connectionId}/invoke` + the original `basePath` (without a trailing
  slash; "/" counts as none) + the original path (including any `?query`/`#fragment`
  that made it unique). The gateway receives the upstream's own path below `invoke`,
  matches the operation by method and path (`routing.py`, after removing the base path),
  and runs its policies and credential injection itself. `include_base_path=False`
  leaves the original base path out, for an invoke route that takes paths relative to
  the connector's base URL.
- Every operation gets a required `connectionId` path parameter, a `$ref` to one shared
  entry in `parameters` (`x-ms-summary: "Gateway connection"`). With `connection_id`
  it has that `default` and `x-ms-visibility: internal`, so Power Platform fills it in
  and makers never see it. If the definition already uses the name `connectionId` (a
  path variable, a parameter, or a `parameters` entry), `gatewayConnectionId` is used
  (then `gatewayConnectionId2`, ...). Each `x-ms-dynamic-values/-schema/-properties/
  -list/-tree` lookup passes it on to the operation it calls.
- Operations without an `operationId` get the one the gateway generated for them, so
  policies scoped by id and the re-imported definition keep the same ids.
- Authentication: `securityDefinitions` is Power Platform's "Azure Active Directory"
  template (`oauth2-auth`, flow accessCode) with top-level `security` requiring it;
  every operation-level `security` and `schemes` is removed (each call needs the Entra
  token, on the gateway's scheme). Header and query parameters that carried the
  upstream credential (the name of each apiKey security definition) and header
  parameters named `Authorization` (that header now carries the Entra token, and the
  gateway never forwards it) are removed, along with their `parameters` entries: the
  gateway injects the connection's credential.
- apiProperties: `connectionParameters` is the Entra `token` oauthSetting
  (identityProvider `aad`, `clientId` = `client_id` or a placeholder to replace,
  `resourceUri` = `audience`, the gateway's app ID URI); `policyTemplateInstances` is
  empty (the gateway runs the original policies) and there is no `scriptOperations`;
  `iconBrandColor`, `capabilities` (without `gateway`: the on-premises data gateway is
  the gateway's business now), `publisher` and `stackOwner` are kept.

Round trip: `parse_definition(*export_definition(...))` gives the same (operationId,
method) pairs and no policies. Raises DefinitionError when the original is not a usable
OpenAPI 2.0 document (as `parse_definition` would), ValueError for a gateway URL that is
not http(s) with a host.

Calling it:
- Power Automate / Power Apps: import the pair, create a connection (sign in with Entra
  ID: the app registration `client_id` must be allowed to request tokens for
  `audience`); actions call `<gateway>/api/connections/<id>/invoke/...` with the user's
  token.
- Logic Apps: an HTTP action with authentication type "Managed identity", audience =
  the gateway's app ID URI (`audience`), URI
  `<gateway>/api/connections/<id>/invoke<basePath><path>`; the managed identity must be
  allowed to use the connection.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from functions.powerplatform.model import HTTP_METHODS
from functions.powerplatform.swagger import check_structure, parse_operations, resolve_ref

SECURITY_NAME = "oauth2-auth"
CLIENT_ID_PLACEHOLDER = "<client id of the app registration Power Platform signs in with>"
GATEWAY_API_PREFIX = "/api"
CONNECTION_PARAMETER_SUMMARY = "Gateway connection"
ENTRA_LOGIN_URI = "https://login.microsoftonline.com"
REDIRECT_URL = "https://global.consent.azure-apim.net/redirect"

# Power Platform's "Azure Active Directory" template, as its wizard writes it (the
# tokenUrl really is the authorize endpoint; Power Platform ignores both URLs for aad
# and uses the apiProperties settings).
ENTRA_SECURITY_DEFINITION: Mapping[str, Any] = {
    "type": "oauth2",
    "flow": "accessCode",
    "authorizationUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
    "tokenUrl": "https://login.windows.net/common/oauth2/authorize",
    "scopes": {},
}
# apiProperties entries that describe the connector itself, not how it connects.
_KEPT_PROPERTIES = ("iconBrandColor", "capabilities", "publisher", "stackOwner")
_GATEWAY_CAPABILITIES = frozenset({"gateway"})
_DYNAMIC_BY_PARAMETER = ("x-ms-dynamic-values", "x-ms-dynamic-schema", "x-ms-dynamic-properties")
_DYNAMIC_BY_REFERENCE = ("x-ms-dynamic-list",)
_VARIABLE = re.compile(r"{([^{}]+)}")


def export_definition(
    api_definition: Mapping[str, Any],
    api_properties: Mapping[str, Any],
    *,
    gateway_base_url: str,
    audience: str,
    client_id: str | None = None,
    connection_id: str | None = None,
    title: str | None = None,
    include_base_path: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (apiDefinition.swagger.json, apiProperties.json) pair pointing at the gateway.

    The inputs are not modified. See the module docstring for every rule.
    """
    check_structure(api_definition)
    scheme, host, gateway_path = _gateway_parts(gateway_base_url)
    # One private copy: the result shares parts of it, and lookups are edited in place.
    original: dict[str, Any] = copy.deepcopy(dict(api_definition))
    swagger = dict(original)

    operation_ids = {
        (operation.path, operation.method): operation.operation_id
        for operation in parse_operations(original, []).values()
    }
    parameter_name = _connection_parameter_name(original)
    connection_ref = {"$ref": f"#/parameters/{_escape_pointer(parameter_name)}"}
    credential = _CredentialParameters(original)

    shared = swagger.get("parameters")
    shared = dict(shared) if isinstance(shared, dict) else {}
    for key in [k for k, v in shared.items() if credential.matches(v)]:
        del shared[key]
    shared[parameter_name] = _connection_parameter(parameter_name, connection_id)
    swagger["parameters"] = shared

    prefix = f"/connections/{{{parameter_name}}}/invoke" + (
        _original_base_path(original) if include_base_path else ""
    )
    paths: dict[str, Any] = {}
    for key, item in original["paths"].items():
        if not isinstance(key, str) or key.startswith("x-"):
            paths[key] = item
            continue
        new_key = prefix + (key if key.startswith("/") else "/" + key)
        # "items" and "/items" would collide; a fragment keeps them apart and is
        # dropped by Power Platform and by the gateway.
        suffix = 2
        while new_key in paths:
            new_key = f"{prefix}{key if key.startswith('/') else '/' + key}#{suffix}"
            suffix += 1
        paths[new_key] = _rewrite_path_item(item, key, operation_ids, connection_ref, credential)
    swagger["paths"] = paths

    swagger["host"] = host
    swagger["schemes"] = [scheme]
    swagger["basePath"] = gateway_path + GATEWAY_API_PREFIX
    swagger["securityDefinitions"] = {SECURITY_NAME: copy.deepcopy(dict(ENTRA_SECURITY_DEFINITION))}
    swagger["security"] = [{SECURITY_NAME: []}]
    if title is not None:
        info = swagger.get("info")
        swagger["info"] = {**(info if isinstance(info, dict) else {}), "title": title}
    _pass_connection_to_lookups(swagger, parameter_name)
    return swagger, _export_properties(api_properties, audience=audience, client_id=client_id)


def gateway_parts(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], API-less path) of the gateway's base URL; ValueError if it is
    not an http(s) URL with a host. For other exports of the gateway (functions/mcp)."""
    return _gateway_parts(url)


def entra_properties(audience: str, client_id: str | None) -> dict[str, Any]:
    """apiProperties for a connector that signs in to the gateway with Entra ID only."""
    return _export_properties({}, audience=audience, client_id=client_id)


# --- swagger --------------------------------------------------------------------------


def _gateway_parts(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path without trailing slash) of the gateway's base URL."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"gateway_base_url must be an http(s) URL with a host: {url!r}")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError("gateway_base_url must not contain credentials, a query or a fragment")
    host = parts.netloc.lower()
    path = parts.path.rstrip("/")
    if path.lower().endswith(GATEWAY_API_PREFIX):
        # Given as ".../api" already: the API prefix is added once, below.
        path = path[: -len(GATEWAY_API_PREFIX)]
    return parts.scheme.lower(), host, path


def _original_base_path(api_definition: Mapping[str, Any]) -> str:
    base_path = api_definition.get("basePath")
    if not isinstance(base_path, str):
        return ""
    base_path = base_path.strip().rstrip("/")
    if base_path and not base_path.startswith("/"):
        base_path = "/" + base_path
    return base_path


def _connection_parameter_name(api_definition: Mapping[str, Any]) -> str:
    """`connectionId`, unless the definition already uses that name somewhere."""
    used: set[str] = set()
    shared = api_definition.get("parameters")
    if isinstance(shared, dict):
        used.update(k for k in shared if isinstance(k, str))
        used.update(v["name"] for v in shared.values() if isinstance(v, dict) and "name" in v)
    for key, item in api_definition["paths"].items():
        if not isinstance(key, str) or not isinstance(item, dict):
            continue
        used.update(name.strip() for name in _VARIABLE.findall(key))
        for entry in _path_item_parameters(api_definition, item):
            if isinstance(entry.get("name"), str):
                used.add(entry["name"])
    candidates = ["connectionId", "gatewayConnectionId"]
    candidates += (f"gatewayConnectionId{n}" for n in range(2, 1000))
    return next(name for name in candidates if name not in used)


def _path_item_parameters(
    document: Mapping[str, Any], item: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    lists = [item.get("parameters")] + [
        item[m].get("parameters") for m in HTTP_METHODS if isinstance(item.get(m), dict)
    ]
    for entries in lists:
        for entry in entries if isinstance(entries, list) else ():
            resolved = _resolved(document, entry)
            if resolved is not None:
                yield resolved


def _connection_parameter(name: str, connection_id: str | None) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": name,
        "in": "path",
        "required": True,
        "type": "string",
        "description": "Id of the gateway connection whose credentials the call uses.",
        "x-ms-summary": CONNECTION_PARAMETER_SUMMARY,
    }
    if connection_id is not None:
        parameter["default"] = connection_id
        parameter["x-ms-visibility"] = "internal"
    return parameter


class _CredentialParameters:
    """Which header/query parameters carried the upstream credential."""

    def __init__(self, api_definition: Mapping[str, Any]) -> None:
        self._document = api_definition
        # The gateway token occupies Authorization; the gateway never forwards it.
        self._headers = {"authorization"}
        self._query: set[str] = set()
        definitions = api_definition.get("securityDefinitions")
        for scheme in definitions.values() if isinstance(definitions, dict) else ():
            if not isinstance(scheme, dict) or scheme.get("type") != "apiKey":
                continue
            name = scheme.get("name")
            if not isinstance(name, str):
                continue
            if scheme.get("in") == "header":
                self._headers.add(name.lower())  # header names are case-insensitive
            elif scheme.get("in") == "query":
                self._query.add(name)

    def matches(self, entry: Any) -> bool:
        parameter = _resolved(self._document, entry)
        if parameter is None or not isinstance(parameter.get("name"), str):
            return False
        if parameter.get("in") == "header":
            return parameter["name"].lower() in self._headers
        return parameter.get("in") == "query" and parameter["name"] in self._query


def _rewrite_path_item(
    item: Any,
    path: str,
    operation_ids: Mapping[tuple[str, str], str],
    connection_ref: Mapping[str, str],
    credential: _CredentialParameters,
) -> Any:
    if not isinstance(item, dict):
        return item  # parse_definition warns about it, as it does for the original
    item = dict(item)
    if isinstance(item.get("parameters"), list):
        item["parameters"] = [p for p in item["parameters"] if not credential.matches(p)]
    for method in HTTP_METHODS:
        operation = item.get(method)
        if not isinstance(operation, dict):
            continue
        operation = dict(operation)
        generated = operation_ids.get((path, method.upper()))
        if generated is not None:
            operation["operationId"] = generated
        own = operation.get("parameters")
        kept = [p for p in own if not credential.matches(p)] if isinstance(own, list) else []
        operation["parameters"] = [dict(connection_ref), *kept]
        operation.pop("security", None)
        operation.pop("schemes", None)
        item[method] = operation
    return item


def _pass_connection_to_lookups(node: Any, parameter_name: str) -> None:
    """Make every dynamic lookup pass the caller's connection to the operation it calls."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
            continue
        if not isinstance(current, dict):
            continue
        for key, value in current.items():
            if key in _DYNAMIC_BY_PARAMETER:
                _add_lookup_parameter(value, parameter_name, {"parameter": parameter_name})
            elif key in _DYNAMIC_BY_REFERENCE:
                _add_lookup_parameter(value, parameter_name, {"parameterReference": parameter_name})
            elif key == "x-ms-dynamic-tree" and isinstance(value, dict):
                for step in ("open", "browse"):
                    _add_lookup_parameter(
                        value.get(step), parameter_name, {"parameterReference": parameter_name}
                    )
            else:
                stack.append(value)


def _add_lookup_parameter(lookup: Any, name: str, reference: dict[str, str]) -> None:
    if not isinstance(lookup, dict) or not isinstance(lookup.get("operationId"), str):
        return  # built-in capabilities (file pickers) call no operation of ours
    parameters = lookup.get("parameters")
    if parameters is None:
        lookup["parameters"] = parameters = {}
    if isinstance(parameters, dict):
        parameters.setdefault(name, reference)


def _resolved(document: Mapping[str, Any], entry: Any) -> dict[str, Any] | None:
    if isinstance(entry, dict) and isinstance(entry.get("$ref"), str):
        entry = resolve_ref(document, entry["$ref"])
    return entry if isinstance(entry, dict) else None


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


# --- apiProperties --------------------------------------------------------------------


def _export_properties(
    api_properties: Mapping[str, Any], *, audience: str, client_id: str | None
) -> dict[str, Any]:
    original = api_properties.get("properties") if isinstance(api_properties, Mapping) else None
    original = original if isinstance(original, dict) else {}
    properties: dict[str, Any] = {
        "connectionParameters": {
            "token": {
                "type": "oauthSetting",
                "oAuthSettings": {
                    "identityProvider": "aad",
                    "clientId": client_id or CLIENT_ID_PLACEHOLDER,
                    "scopes": [],
                    "redirectMode": "Global",
                    "redirectUrl": REDIRECT_URL,
                    "properties": {
                        "IsFirstParty": "False",
                        "AzureActiveDirectoryResourceId": audience,
                    },
                    "customParameters": {
                        "loginUri": {"value": ENTRA_LOGIN_URI},
                        "tenantId": {"value": "common"},
                        "resourceUri": {"value": audience},
                        "enableOnbehalfOfLogin": {"value": "false"},
                    },
                },
            }
        },
    }
    for key in _KEPT_PROPERTIES:
        if key not in original:
            continue
        value = copy.deepcopy(original[key])
        if key == "capabilities" and isinstance(value, list):
            value = [
                c for c in value if not (isinstance(c, str) and c.lower() in _GATEWAY_CAPABILITIES)
            ]
        properties[key] = value
    properties["policyTemplateInstances"] = []
    return {"properties": properties}
