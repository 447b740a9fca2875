"""From the two connector files to a `ConnectorDefinition`, and its `inspect` summary.

`parse_definition(api_definition, api_properties, has_script=False)` raises
DefinitionError only when the swagger is unusable (not OpenAPI 2.0, no `paths`);
everything else it can work around becomes a line in `warnings`, including every
policy template and custom code (script.csx) the gateway cannot run, with the operations
that will therefore answer 501 `policy_not_supported`.

`inspect_dict(definition, source=...)` is the JSON object `connectors inspect` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from functions.powerplatform.auth import (
    infer_auth_options,
    parse_connection_parameters,
    parse_parameter_sets,
)
from functions.powerplatform.errors import DefinitionError
from functions.powerplatform.loading import (
    API_PROPERTIES_FILE,
    SCRIPT_FILE,
    find_file,
    load_folder,
)
from functions.powerplatform.model import AuthOption, ConnectorDefinition, PolicyTemplateInstance
from functions.powerplatform.swagger import base_url, check_structure, parse_operations
from functions.powerplatform.templates import parse_policy_instances
from functions.upstream.urls import encode_component

NOT_SUPPORTED = "answer 501 policy_not_supported"


def parse_definition(
    api_definition: Mapping[str, Any],
    api_properties: Mapping[str, Any],
    *,
    has_script: bool = False,
) -> ConnectorDefinition:
    """Build the definition; raise DefinitionError if the swagger cannot be used at all."""
    check_structure(api_definition)
    warnings: list[str] = []
    properties = api_properties.get("properties") if isinstance(api_properties, Mapping) else None
    if not isinstance(properties, dict):
        if api_properties:
            warnings.append(f"{API_PROPERTIES_FILE} has no 'properties' object; ignored")
        properties = {}

    info = api_definition.get("info")
    info = info if isinstance(info, dict) else {}
    title = info.get("title") if isinstance(info.get("title"), str) else None
    if title is None:
        warnings.append("apiDefinition.swagger.json has no info.title")
    description = info.get("description") if isinstance(info.get("description"), str) else None

    url = base_url(api_definition, warnings)
    operations = parse_operations(api_definition, warnings)
    connection_parameters = parse_connection_parameters(
        properties.get("connectionParameters"), "connectionParameters", warnings
    )
    parameter_sets = parse_parameter_sets(properties.get("connectionParameterSets"), warnings)
    if parameter_sets and connection_parameters:
        warnings.append(
            "connectionParameters is ignored because connectionParameterSets is present"
        )
    auth_options = infer_auth_options(
        api_definition, connection_parameters, parameter_sets, warnings
    )
    policies = parse_policy_instances(properties.get("policyTemplateInstances"), warnings)
    script_operations = (
        _script_operations(properties.get("scriptOperations")) if has_script else None
    )

    warnings.extend(_policy_warnings(policies, operations))
    if has_script:
        covered = _coverage(script_operations or ())
        warnings.append(f"custom code ({SCRIPT_FILE}) is not supported; {covered} {NOT_SUPPORTED}")
        warnings.extend(
            _unknown_operation_warnings(SCRIPT_FILE, script_operations or (), operations)
        )
    if url is None and not any(p.supported and p.template_id == "dynamichosturl" for p in policies):
        warnings.append(
            "no host in apiDefinition.swagger.json: set a base URL to call this connector"
        )

    return ConnectorDefinition(
        title=title,
        description=description,
        base_url=url,
        auth_options=auth_options,
        operations=operations,
        policies=policies,
        warnings=warnings,
        connection_parameters=connection_parameters,
        parameter_sets=parameter_sets,
        has_script=has_script,
        script_operations=script_operations,
        api_definition=dict(api_definition),
        api_properties=dict(api_properties),
    )


def load_definition(path: str | Path) -> ConnectorDefinition:
    """Read and parse a connector folder (raises DefinitionError)."""
    folder = Path(path)
    api_definition, api_properties = load_folder(folder)
    has_script = find_file(folder, SCRIPT_FILE) is not None
    definition = parse_definition(api_definition, api_properties, has_script=has_script)
    if find_file(folder, API_PROPERTIES_FILE) is None:
        definition.warnings.insert(
            0, f"{API_PROPERTIES_FILE} not found: no connection parameters or policies"
        )
    return definition


def inspect_dict(definition: ConnectorDefinition, *, source: str | None = None) -> dict[str, Any]:
    """The `connectors inspect` object for one folder (key order as documented)."""
    return {
        "source": source,
        "title": definition.title,
        "baseUrl": definition.base_url,
        "authOptions": [_auth_option_dict(option) for option in definition.auth_options],
        "operations": [
            {
                "operationId": op.operation_id,
                # How to write it in `/operations/{operationId}`: ids may contain `/`.
                "encodedOperationId": encode_component(op.operation_id),
                "method": op.method,
                "path": op.path,
            }
            for op in definition.operations.values()
        ],
        "policies": [
            {"templateId": policy.template_id, "supported": policy.supported}
            for policy in definition.policies
        ],
        "warnings": list(definition.warnings),
    }


def definition_error_dict(error: DefinitionError, *, source: str | None = None) -> dict[str, Any]:
    """The `connectors inspect` object for a folder that cannot be read."""
    return {"source": source, "error": error.detail}


def _auth_option_dict(option: AuthOption) -> dict[str, Any]:
    data: dict[str, Any] = {"name": option.name, "type": option.type}
    if option.api_key is not None:
        data["apiKey"] = {"in": option.api_key.location, "name": option.api_key.name}
    if option.oauth2 is not None:
        data["oauth2"] = {
            "identityProvider": option.oauth2.identity_provider,
            "authorizationUrl": option.oauth2.authorization_url,
            "tokenUrl": option.oauth2.token_url,
            "refreshUrl": option.oauth2.refresh_url,
            "scopes": list(option.oauth2.scopes),
        }
    data["gateway"] = option.gateway
    data["parameters"] = [
        {"name": p.name, "type": p.type, "required": p.required, "secret": p.secret}
        for p in option.parameters
    ]
    return data


def _script_operations(raw: Any) -> tuple[str, ...] | None:
    # An empty or missing list is treated as "all operations": published connectors
    # (ForceManager CRM, Open Data Network) have code for many operations and `[]`.
    if isinstance(raw, list):
        names = tuple(name for name in raw if isinstance(name, str) and name)
        return names or None
    return None


def _policy_warnings(
    policies: list[PolicyTemplateInstance], operations: Mapping[str, Any]
) -> list[str]:
    warnings: list[str] = []
    for policy in policies:
        label = f"policy {policy.index + 1} '{policy.template_id or '?'}'"
        if policy.title:
            label += f" ({policy.title})"
        if not policy.supported:
            warnings.append(
                f"{label} is not supported: {policy.problem}; "
                f"{_coverage(policy.operations)} {NOT_SUPPORTED}"
            )
        warnings.extend(_unknown_operation_warnings(label, policy.operations, operations))
    return warnings


def _unknown_operation_warnings(
    label: str, names: Iterable[str], operations: Mapping[str, Any]
) -> list[str]:
    unknown = [name for name in names if name not in operations]
    if not unknown:
        return []
    return [f"{label} names operations the definition does not have: {', '.join(unknown)}"]


def _coverage(operations: tuple[str, ...]) -> str:
    if not operations:
        return "calls to any operation"
    noun = "operation" if len(operations) == 1 else "operations"
    return f"calls to {noun} {', '.join(operations)}"
