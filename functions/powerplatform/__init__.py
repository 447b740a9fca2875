"""Power Platform connector definitions: read, inspect and run them.

A connector folder holds `apiDefinition.swagger.json` (OpenAPI 2.0 with `x-ms-*`
extensions), `apiProperties.json` (connection parameters, parameter sets, OAuth settings,
policy templates) and sometimes `script.csx` (custom code, not run by the gateway).
This package is a pure library: no HTTP server, no storage.

    load_definition(folder) / parse_definition(api_definition, api_properties)
        -> ConnectorDefinition (raises DefinitionError)
    inspect_dict(definition, source=...)          the `connectors inspect` JSON object
    validate_connection_parameters(definition, parameter_set, values) -> (secret, plain)
    prepare_operation / build_operation_request   an operation call -> OutgoingRequest
    apply_request_policies / apply_response_policies   policy templates on a call

Decisions where the format is ambiguous are in README.md next to this file.
"""

from __future__ import annotations

from functions.powerplatform.definition import (
    definition_error_dict,
    inspect_dict,
    load_definition,
    parse_definition,
)
from functions.powerplatform.errors import (
    DefinitionError,
    PolicyEvaluationError,
    PolicyNotSupportedError,
)
from functions.powerplatform.expressions import (
    EvaluationContext,
    ExpressionError,
    Template,
    parse_expression,
    parse_template,
    parse_value_template,
)
from functions.powerplatform.loading import (
    API_DEFINITION_FILE,
    API_PROPERTIES_FILE,
    SCRIPT_FILE,
    load_folder,
    parse_json_document,
)
from functions.powerplatform.model import (
    ApiKeySettings,
    AuthOption,
    ConnectionParameter,
    ConnectorDefinition,
    OAuth2Settings,
    Operation,
    OperationParameter,
    ParameterSet,
    PolicyTemplateInstance,
)
from functions.powerplatform.operations import (
    PreparedOperation,
    build_operation_request,
    prepare_operation,
)
from functions.powerplatform.parameters import validate_connection_parameters
from functions.powerplatform.policies import (
    apply_request_policies,
    apply_response_policies,
    ensure_operation_supported,
)

__all__ = [
    "API_DEFINITION_FILE",
    "API_PROPERTIES_FILE",
    "SCRIPT_FILE",
    "ApiKeySettings",
    "AuthOption",
    "ConnectionParameter",
    "ConnectorDefinition",
    "DefinitionError",
    "EvaluationContext",
    "ExpressionError",
    "OAuth2Settings",
    "Operation",
    "OperationParameter",
    "ParameterSet",
    "PolicyEvaluationError",
    "PolicyNotSupportedError",
    "PolicyTemplateInstance",
    "PreparedOperation",
    "Template",
    "apply_request_policies",
    "apply_response_policies",
    "build_operation_request",
    "definition_error_dict",
    "ensure_operation_supported",
    "inspect_dict",
    "load_definition",
    "load_folder",
    "parse_definition",
    "parse_expression",
    "parse_json_document",
    "parse_template",
    "parse_value_template",
    "prepare_operation",
    "validate_connection_parameters",
]
