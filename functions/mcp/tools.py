"""MCP tools from connector definitions: pure data, no HTTP and no MCP SDK types.

Imported connectors give one tool per operation an agent may call: not
`x-ms-visibility: internal`, not `deprecated`, and not covered by a policy or custom
code the gateway cannot run (such a call always fails with 501). Native connectors give
one `http_request` tool. `ToolSpec.split` turns a tool call's arguments back into what
the invoke service takes, so a tool call and an API call are the same call.

Input schema of an operation tool (an object; names made valid by `names.py`):
- one property per path, query, header and formData parameter: its type (arrays with
  their items), `enum`, `default`, `format`; `x-ms-summary` as `title`, `description`;
  `required` when the definition requires it and gives no default. Parameters that are
  `x-ms-visibility: internal` with a default are hidden: the gateway sends the default.
- `body`: the body parameter's schema, `$ref`s resolved (schemas.py), required when the
  body is. (A parameter already named `body` keeps that name; the body is then
  `body_2`.)
Output schema: the first 2xx response's schema, when it describes an object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.errors import ValidationFailedError
from functions.mcp.names import argument_names, unique_names
from functions.mcp.schemas import SchemaConverter, single_type, text
from functions.powerplatform import ConnectorDefinition, Operation, OperationParameter
from functions.powerplatform.errors import PolicyNotSupportedError
from functions.powerplatform.model import NO_DEFAULT
from functions.powerplatform.policies import ensure_operation_supported
from functions.powerplatform.swagger import resolve_ref

HTTP_REQUEST = "http_request"
BODY = "body"
HTTP_REQUEST_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the gateway serves it, before any connection prefix.

    `operation_id` None is the native `http_request` tool. `arguments` maps each
    argument name to the operation parameter it fills; `body_argument` names the
    argument carrying the body, if the operation takes one.
    """

    name: str
    title: str | None
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    operation_id: str | None = None
    method: str | None = None
    arguments: Mapping[str, str] = field(default_factory=dict)
    body_argument: str | None = None

    @property
    def read_only(self) -> bool:
        return self.method in _READ_ONLY_METHODS

    def split(self, given: Mapping[str, Any] | None) -> tuple[dict[str, Any], Any]:
        """(operation parameters, body) from a call's arguments; unknown names refused."""
        parameters: dict[str, Any] = {}
        body: Any = None
        unknown: list[str] = []
        for name, value in (given or {}).items():
            if name == self.body_argument:
                body = value
            elif name in self.arguments:
                parameters[self.arguments[name]] = value
            else:
                unknown.append(name)
        if unknown:
            expected = ", ".join(
                [*self.arguments, *([self.body_argument] if self.body_argument else [])]
            )
            errors = [
                {
                    "field": f"arguments.{n}",
                    "message": f"not an argument of {self.name} (expected: {expected or 'none'})",
                }
                for n in unknown
            ]
            raise ValidationFailedError(
                "; ".join(f"{e['field']} {e['message']}" for e in errors), errors=errors
            )
        return parameters, body


def tools_for_definition(definition: ConnectorDefinition) -> list[ToolSpec]:
    """The tools of an imported connector, in the definition's order."""
    operations = [op for op in definition.operations.values() if _callable(definition, op)]
    names = unique_names(op.operation_id for op in operations)
    inputs = SchemaConverter(definition.api_definition)
    outputs = SchemaConverter(definition.api_definition, output=True)
    return [
        _operation_tool(definition, op, name, inputs, outputs)
        for op, name in zip(operations, names, strict=True)
    ]


def http_request_tool(connector_name: str, base_url: str) -> ToolSpec:
    """The one tool of a native connector: any request below its base URL."""
    return ToolSpec(
        name=HTTP_REQUEST,
        title=f"HTTP request to {connector_name}",
        description=(
            f"Send an HTTP request to {connector_name} ({base_url}) with the connection's "
            "credentials. `path` is below the base URL and starts with '/'; '.' and '..' "
            "segments and encoded slashes are refused. The answer's status and body are "
            "returned."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": list(HTTP_REQUEST_METHODS), "default": "GET"},
                "path": {
                    "type": "string",
                    "description": "Path below the connector's base URL, starting with '/'",
                    "pattern": "^/",
                },
                "query": {
                    "type": "object",
                    "description": "Query parameters (name: value)",
                    "additionalProperties": {"type": "string"},
                },
                "body": {"type": "object", "description": "JSON body (sent as application/json)"},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
    )


def _callable(definition: ConnectorDefinition, operation: Operation) -> bool:
    if operation.deprecated:
        return False
    visibility = raw_operation(definition, operation).get("x-ms-visibility")
    if isinstance(visibility, str) and visibility.lower() == "internal":
        return False
    try:
        ensure_operation_supported(definition, operation.operation_id)
    except PolicyNotSupportedError:
        return False
    return True


def raw_operation(definition: ConnectorDefinition, operation: Operation) -> Mapping[str, Any]:
    """The operation object as written (for descriptions, summaries and responses)."""
    paths = definition.api_definition.get("paths")
    item = paths.get(operation.path) if isinstance(paths, Mapping) else None
    raw = item.get(operation.method.lower()) if isinstance(item, Mapping) else None
    return raw if isinstance(raw, Mapping) else {}


def _raw_parameter(
    definition: ConnectorDefinition, operation: Operation, parameter: OperationParameter
) -> Mapping[str, Any]:
    paths = definition.api_definition.get("paths")
    item = paths.get(operation.path) if isinstance(paths, Mapping) else None
    sources = [raw_operation(definition, operation).get("parameters")]
    if isinstance(item, Mapping):
        sources.append(item.get("parameters"))
    for source in sources:
        for entry in source if isinstance(source, list) else []:
            resolved = entry
            if isinstance(entry, Mapping) and isinstance(entry.get("$ref"), str):
                resolved = resolve_ref(definition.api_definition, entry["$ref"])
            if (
                isinstance(resolved, Mapping)
                and resolved.get("name") == parameter.name
                and resolved.get("in") == parameter.location
            ):
                return resolved
    return {}


def _operation_tool(
    definition: ConnectorDefinition,
    operation: Operation,
    name: str,
    inputs: SchemaConverter,
    outputs: SchemaConverter,
) -> ToolSpec:
    raw = raw_operation(definition, operation)
    shown = [
        p for p in operation.parameters if not (p.visibility == "internal" and _has_default(p))
    ]
    plain = [p for p in shown if p.location != "body"]
    body = next((p for p in shown if p.location == "body"), None)
    keys = argument_names([p.name for p in plain])
    properties: dict[str, Any] = {}
    required: list[str] = []
    arguments: dict[str, str] = {}
    for key, parameter in zip(keys, plain, strict=True):
        properties[key] = _parameter_schema(
            parameter, _raw_parameter(definition, operation, parameter), inputs
        )
        arguments[key] = parameter.name
        if parameter.required and not _has_default(parameter):
            required.append(key)
    body_argument: str | None = None
    if body is not None:
        body_argument = argument_names([BODY], reserved=keys)[0]
        schema = inputs.convert(body.schema or {})
        raw_body = _raw_parameter(definition, operation, body)
        title = text(raw_body.get("x-ms-summary"), 200)
        description = text(raw_body.get("description"))
        if title and "title" not in schema:
            schema["title"] = title
        if description and "description" not in schema:
            schema["description"] = description
        properties[body_argument] = schema
        if body.required:
            required.append(body_argument)
    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = required
    input_schema["additionalProperties"] = False
    summary = text(raw.get("summary"), 200)
    description = text(raw.get("description"), 2000) or summary
    return ToolSpec(
        name=name,
        title=summary,
        description=description,
        input_schema=input_schema,
        output_schema=_output_schema(raw, outputs, definition),
        operation_id=operation.operation_id,
        method=operation.method,
        arguments=arguments,
        body_argument=body_argument,
    )


def _has_default(parameter: OperationParameter) -> bool:
    """A default the gateway can send: an empty path segment is refused, so a path
    parameter defaulting to "" (FreeAgent does that) still needs a value."""
    if parameter.default is NO_DEFAULT or parameter.default is None:
        return False
    return not (parameter.location == "path" and parameter.default == "")


def _parameter_schema(
    parameter: OperationParameter, raw: Mapping[str, Any], inputs: SchemaConverter
) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    kind = single_type(parameter.type)
    if kind is not None and kind != "null":
        schema["type"] = kind
    title = text(raw.get("x-ms-summary"), 200)
    if title:
        schema["title"] = title
    description = text(raw.get("description"))
    if parameter.type == "file":
        # The operations API also takes a Power Automate content object here; a tool's
        # single `string` type (strict clients) allows text only.
        description = (description + " " if description else "") + "(file content, as text)"
    if description:
        schema["description"] = description
    if kind == "array":
        schema["items"] = inputs.convert(parameter.items or {})
    if parameter.enum:
        schema["enum"] = [v for i, v in enumerate(parameter.enum) if v not in parameter.enum[:i]]
    if _has_default(parameter) and not isinstance(parameter.default, dict | list):
        schema["default"] = parameter.default
    if parameter.format:
        schema["format"] = parameter.format
    if parameter.location == "path" and kind in (None, "string"):
        schema["minLength"] = 1
    return schema


def _output_schema(
    raw: Mapping[str, Any], outputs: SchemaConverter, definition: ConnectorDefinition
) -> dict[str, Any] | None:
    responses = raw.get("responses")
    if not isinstance(responses, Mapping):
        return None
    for status in sorted(str(code) for code in responses):
        if not (len(status) == 3 and status.startswith("2")):
            continue
        response = responses.get(status) if status in responses else responses.get(int(status))
        if isinstance(response, Mapping) and isinstance(response.get("$ref"), str):
            response = resolve_ref(definition.api_definition, response["$ref"])
        schema = response.get("schema") if isinstance(response, Mapping) else None
        if not isinstance(schema, Mapping):
            continue
        resolved = SchemaConverter(definition.api_definition).convert(schema)
        if resolved.get("type") != "object":
            return None
        described = outputs.convert(schema)
        return {"type": "object", **described}
    return None
