"""Building the upstream request for one operation from a caller's parameters.

`build_operation_request(definition, operation_id, base_url, parameters, body)` returns
an `OutgoingRequest` (no policies, no credentials yet); `prepare_operation` returns the
same plus the raw path parameter values `routerequesttoendpoint` needs.

Contract:
- `parameters` maps parameter names to values, for path, query, header and formData
  parameters; the JSON `body` goes in `body` (or under the body parameter's name).
  Unknown names are refused.
- A missing parameter takes its `default` when it is required or `x-ms-visibility:
  internal` (what Power Platform sends); optional defaults are the server's business,
  as OpenAPI 2.0 defines them. The same holds for properties of JSON bodies.
- Values are checked against `type` (`integer` and `number` accept numeric strings,
  `boolean` accepts "true"/"false", `string` accepts numbers), `enum`, and `items`; JSON
  bodies against their schema (`$ref`s resolved): types, `required`, `enum`. JSON null
  is accepted anywhere: Power Automate sends it for empty optional fields.
- Path values are percent-encoded as encodeURIComponent does (`/` becomes %2F, `;`
  %3B, space %20), twice for `x-ms-url-encoding: double`; `.`/`..`/empty values are
  refused, as they would change the path. Literal path text keeps its %XX escapes.
  Query values are encoded the same way when the URL is built (upstream/urls.py).
- An enum that contradicts its type accepts what either reading allows (coerce.py).
- Header values must be ASCII without line breaks; header parameters whose names are
  not HTTP tokens are never sent (422 `invalid_header_name` when a call would).
- No body, no Content-Type.
- Query arrays follow `collectionFormat` (csv, ssv, tsv, pipes, multi).
- Bodies are JSON unless the operation consumes only non-JSON types and the value is a
  string. formData is multipart/form-data when a parameter is a `file` or the operation
  consumes multipart, else application/x-www-form-urlencoded. Binary content can be
  given as Power Automate does: `{"$content-type": "...", "$content": "<base64>"}`.
- Every problem is reported at once as ValidationFailedError naming
  `parameters.<name>`, `body` or `body.<path>`. An unknown operation is
  NotFoundError(code="operation_not_found").
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from functions.errors import ValidationFailedError
from functions.powerplatform.coerce import as_bool, as_int, as_number, enum_allows
from functions.powerplatform.expressions import to_text
from functions.powerplatform.model import (
    NO_DEFAULT,
    ConnectorDefinition,
    Operation,
    OperationParameter,
)
from functions.powerplatform.swagger import resolve_ref
from functions.upstream.request import OutgoingRequest
from functions.upstream.urls import encode_component, requote

# RFC 3986 pchar minus "/": kept literally inside one path segment.
SEGMENT_SAFE = "!$&'()*+,;=:@-._~"
_VARIABLE = re.compile(r"{([^{}]+)}")
_COLLECTION_SEPARATORS = {"csv": ",", "ssv": " ", "tsv": "\t", "pipes": "|"}
_MAX_ERRORS = 50
# A header value: visible ASCII, space and tab (RFC 9110 field-vchar, ASCII only).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_UNSENDABLE = (
    "is not a valid HTTP header name (the definition's fault); the gateway never sends it"
)
_MAX_SCHEMA_DEPTH = 64


@dataclass
class PreparedOperation:
    operation: Operation
    request: OutgoingRequest
    # Raw (unencoded) text of each path parameter, for route templates in policies.
    path_parameters: dict[str, str] = field(default_factory=dict)


class MissingPathVariable(Exception):
    """A `{name}` in a path template with no value."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def build_operation_request(
    definition: ConnectorDefinition,
    operation_id: str,
    base_url: str | None,
    parameters: Mapping[str, Any] | None,
    body: Any = None,
) -> OutgoingRequest:
    """The request for `operation_id` (see the module docstring for the rules)."""
    return prepare_operation(definition, operation_id, base_url, parameters, body).request


def prepare_operation(
    definition: ConnectorDefinition,
    operation_id: str,
    base_url: str | None,
    parameters: Mapping[str, Any] | None,
    body: Any = None,
) -> PreparedOperation:
    """Like build_operation_request, also returning the raw path parameter values.

    `base_url` None means the definition's own (or "" when it has none, for a
    `dynamichosturl` policy to fill in).
    """
    operation = definition.operation(operation_id)
    given = dict(parameters or {})
    errors: list[dict[str, str]] = []
    declared = {p.name for p in operation.parameters}
    body_parameter = next((p for p in operation.parameters if p.location == "body"), None)
    for name in given:
        if name not in declared:
            expected = ", ".join(p.name for p in operation.parameters if p.location != "body")
            errors.append(
                _error(name, f"not a parameter of {operation_id} (expected: {expected or 'none'})")
            )

    path_raw: dict[str, str] = {}
    path_encoded: dict[str, str] = {}
    query: list[tuple[str, str]] = []
    headers: list[tuple[str, str]] = []
    form: list[tuple[OperationParameter, Any]] = []
    unsendable: list[dict[str, str]] = []
    for parameter in operation.parameters:
        if parameter.location == "body":
            continue
        value = given.get(parameter.name)
        if value is None and parameter.sends_default:
            value = parameter.default
        if parameter.unsendable:
            if value is not None or parameter.required:
                unsendable.append(_error(parameter.name, _UNSENDABLE))
            continue
        if value is None:
            if parameter.required:
                errors.append(_error(parameter.name, "required"))
            continue
        checked, problem = _check_parameter(parameter, value)
        if problem is not None:
            errors.append(_error(parameter.name, problem))
            continue
        if parameter.location == "path":
            text = _joined(parameter, checked)
            if text in ("", ".", ".."):
                errors.append(_error(parameter.name, "must not be empty, '.' or '..'"))
                continue
            path_raw[parameter.name] = text
            path_encoded[parameter.name] = encode_path_value(text, parameter.url_encoding)
        elif parameter.location == "query":
            if isinstance(checked, list) and parameter.collection_format == "multi":
                query.extend((parameter.name, to_text(item)) for item in checked)
            else:
                query.append((parameter.name, _joined(parameter, checked)))
        elif parameter.location == "header":
            text = _joined(parameter, checked)
            if not _HEADER_VALUE.fullmatch(text):
                # Power Platform (.NET) refuses non-ASCII header values too; line breaks
                # would start another header.
                errors.append(
                    _error(parameter.name, "must be ASCII text without line breaks (a header)")
                )
                continue
            headers.append((parameter.name, text))
        else:
            form.append((parameter, checked))

    content: bytes | None = None
    content_type: str | None = None
    if body_parameter is not None:
        value = body if body is not None else given.get(body_parameter.name)
        if value is None:
            if body_parameter.required:
                errors.append({"field": "body", "message": "required"})
        else:
            try:
                content, content_type = _body(definition, operation, body_parameter, value, errors)
            except RecursionError:
                errors.append({"field": "body", "message": "is nested too deeply"})
    elif body is not None:
        errors.append({"field": "body", "message": f"{operation_id} takes no body"})
    if form and not errors:
        content, content_type = _serialize_form(operation, form)

    if unsendable:
        raise ValidationFailedError(
            f"{operation_id} cannot be called with "
            + ", ".join(e["field"] for e in unsendable)
            + ": the definition names headers that are not valid HTTP header names",
            errors=unsendable,
            code="invalid_header_name",
        )
    if errors:
        raise ValidationFailedError(
            f"invalid parameters for {operation_id}: "
            + "; ".join(f"{e['field']} {e['message']}" for e in errors[:_MAX_ERRORS]),
            errors=errors[:_MAX_ERRORS],
        )

    path, template_query = render_path(operation.path, path_encoded, strict=False)
    if content_type is not None and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", content_type))
    request = OutgoingRequest(
        method=operation.method,
        base_url=(definition.request_base_url or "" if base_url is None else base_url).rstrip("/"),
        path=path,
        query=template_query + query,
        headers=headers,
        body=content,
    )
    return PreparedOperation(operation=operation, request=request, path_parameters=path_raw)


# --- paths ----------------------------------------------------------------------------


def encode_path_value(value: str, encoding: str = "single") -> str:
    """Percent-encode one path segment value as encodeURIComponent does (twice for
    x-ms-url-encoding: double). Sub-delimiters are escaped too: a literal `;` starts
    path parameters (RFC 3986 3.3) and Tomcat/Spring would cut the value there."""
    once = encode_component(value)
    return encode_component(once) if encoding == "double" else once


def encode_literal_path(text: str) -> str:
    """Encode literal path text, keeping `/` and existing %XX escapes."""
    return requote(text, SEGMENT_SAFE + "/")


def render_path(
    template: str, encoded_values: Mapping[str, str], *, strict: bool
) -> tuple[str, list[tuple[str, str]]]:
    """Fill `{name}`s with already-encoded values; return (path, query from the template).

    A `?query` in the template becomes query parameters and a `#fragment` is dropped
    (definitions use both to make otherwise identical paths unique). An unknown
    `{name}` raises MissingPathVariable when `strict`, else stays as encoded text.
    """
    template = template.split("#", 1)[0]
    path_part, _, query_part = template.partition("?")
    out: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(path_part):
        out.append(encode_literal_path(path_part[position : match.start()]))
        name = match.group(1)
        if name in encoded_values:
            out.append(encoded_values[name])
        elif strict:
            raise MissingPathVariable(name)
        else:
            out.append(encode_literal_path(match.group()))
        position = match.end()
    out.append(encode_literal_path(path_part[position:]))
    path = "".join(out)
    if not path.startswith("/"):
        path = "/" + path
    return path, parse_qsl(query_part, keep_blank_values=True)


# --- values ---------------------------------------------------------------------------


def _check_parameter(parameter: OperationParameter, value: Any) -> tuple[Any, str | None]:
    if parameter.type == "array":
        if not isinstance(value, list):
            return None, "must be an array"
        item_schema = parameter.items or {}
        item_type = item_schema.get("type") if isinstance(item_schema.get("type"), str) else None
        item_enum = item_schema.get("enum") if isinstance(item_schema.get("enum"), list) else None
        items = []
        for item in value:
            checked, problem = _check_scalar(item_type, item_enum, item)
            if problem is not None:
                return None, f"items {problem}"
            items.append(checked)
        return items, None
    if parameter.type == "file":
        if isinstance(value, str) or (
            _is_content_object(value) and _decode_content(value) is not None
        ):
            return value, None
        return None, 'must be text or {"$content-type": ..., "$content": "<base64>"}'
    enum = list(parameter.enum) if parameter.enum else None
    return _check_scalar(parameter.type, enum, value)


def _check_scalar(kind: str | None, enum: list[Any] | None, value: Any) -> tuple[Any, str | None]:
    if isinstance(value, dict | list):
        return None, "must be a single value"
    checked, problem = _typed_scalar(kind, value)
    if enum is None:
        return checked, problem
    coerce: Any = (lambda option: _typed_scalar(kind, option)[0]) if kind else None
    if coerce is not None and enum_allows(coerce, value, checked, enum, to_text):
        # The enum's reading of a contradictory definition sends the member as written.
        return (checked if checked is not None else to_text(value)), None
    if coerce is None and _in_enum(value, enum):
        return value, None
    return None, problem or f"must be one of: {', '.join(to_text(e) for e in enum)}"


def _typed_scalar(kind: str | None, value: Any) -> tuple[Any, str | None]:
    """`value` as the declared scalar type (lenient in spelling), or a problem."""
    if kind == "integer":
        number = as_int(value)
        return (number, None) if number is not None else (None, "must be an integer")
    if kind == "number":
        real = as_number(value)
        return (real, None) if real is not None else (None, "must be a number")
    if kind == "boolean":
        flag = as_bool(value)
        return (flag, None) if flag is not None else (None, "must be true or false")
    if isinstance(value, dict | list):
        return None, "must be a single value"
    if kind == "string" and not isinstance(value, str):
        return to_text(value), None
    return value, None


def _in_enum(value: Any, enum: list[Any]) -> bool:
    if any(value == option and type(value) is type(option) for option in enum):
        return True
    text = to_text(value)
    return any(text == to_text(option) for option in enum)


def _joined(parameter: OperationParameter, value: Any) -> str:
    if isinstance(value, list):
        separator = _COLLECTION_SEPARATORS.get(parameter.collection_format, ",")
        return separator.join(to_text(item) for item in value)
    return to_text(value)


def _check_schema(
    document: Mapping[str, Any],
    value: Any,
    schema: Mapping[str, Any],
    where: str,
    errors: list[dict[str, str]],
    depth: int,
) -> Any:
    """Check `value` against `schema`, fill sent defaults; return the (updated) value."""
    schema = _resolved(document, schema)
    if value is None or depth > _MAX_SCHEMA_DEPTH or len(errors) >= _MAX_ERRORS:
        return value
    kind = schema.get("type") if isinstance(schema.get("type"), str) else None
    if kind == "object" or (kind is None and isinstance(value, dict) and "properties" in schema):
        if not isinstance(value, dict):
            errors.append({"field": where, "message": "must be an object"})
            return value
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        for name, raw_property in properties.items():
            if name in value or not isinstance(raw_property, dict):
                continue
            property_schema = _resolved(document, raw_property)
            default = property_schema.get("default", NO_DEFAULT)
            internal = str(property_schema.get("x-ms-visibility", "")).lower() == "internal"
            if default is not NO_DEFAULT and (name in required or internal):
                value[name] = copy.deepcopy(default)
        for name in required:
            if name not in value:
                errors.append({"field": f"{where}.{name}", "message": "required"})
        for name, item in list(value.items()):
            child_schema = properties.get(name)
            if isinstance(child_schema, dict):
                value[name] = _check_schema(
                    document, item, child_schema, f"{where}.{name}", errors, depth + 1
                )
        return value
    if kind == "array":
        if not isinstance(value, list):
            errors.append({"field": where, "message": "must be an array"})
            return value
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                value[index] = _check_schema(
                    document, item, items, f"{where}[{index}]", errors, depth + 1
                )
        return value
    problem = _json_type_problem(kind, value)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and not isinstance(value, dict | list):
        # JSON values are strict in type, but a definition whose enum contradicts its
        # type (boolean with ["false", "true"]) allows what either reading allows.
        def fits(option: Any) -> Any:
            return option if _json_type_problem(kind, option) is None else None

        checked = value if problem is None else None
        if not enum_allows(fits, value, checked, enum, to_text):
            message = problem or f"must be one of: {', '.join(to_text(e) for e in enum)}"
            errors.append({"field": where, "message": message})
        return value
    if problem is not None:
        errors.append({"field": where, "message": problem})
    return value


def _json_type_problem(kind: str | None, value: Any) -> str | None:
    if kind == "string" and not isinstance(value, str):
        return "must be a string"
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        if not (isinstance(value, float) and value.is_integer()):
            return "must be an integer"
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "must be a number"
    if kind == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    return None


def _resolved(document: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    seen: set[str] = set()
    while isinstance(schema.get("$ref"), str) and schema["$ref"] not in seen:
        seen.add(schema["$ref"])
        target = resolve_ref(document, schema["$ref"])
        if not isinstance(target, dict):
            return {}
        schema = target
    return schema


def _body(
    definition: ConnectorDefinition,
    operation: Operation,
    parameter: OperationParameter,
    value: Any,
    errors: list[dict[str, str]],
) -> tuple[bytes | None, str | None]:
    """Check and serialize a body value (a copy: defaults are filled in)."""
    value = copy.deepcopy(value)
    if _is_content_object(value):
        if _decode_content(value) is None:
            errors.append({"field": "body.$content", "message": "must be base64"})
    else:
        schema = parameter.schema or {}
        value = _check_schema(definition.api_definition, value, schema, "body", errors, 0)
    if errors:
        return None, None
    return _serialize_body(operation, value)


def _serialize_body(operation: Operation, value: Any) -> tuple[bytes, str]:
    if _is_content_object(value):
        data = _decode_content(value) or b""
        return data, str(value.get("$content-type") or "application/octet-stream")
    json_type = next((c for c in operation.consumes if "json" in c.lower()), None)
    if json_type is None and operation.consumes and isinstance(value, str):
        return value.encode("utf-8"), operation.consumes[0]
    return json.dumps(value, ensure_ascii=False).encode("utf-8"), json_type or "application/json"


def _serialize_form(
    operation: Operation, fields: list[tuple[OperationParameter, Any]]
) -> tuple[bytes, str]:
    multipart = any(p.type == "file" for p, _ in fields) or any(
        "multipart/form-data" in c.lower() for c in operation.consumes
    )
    if not multipart:
        pairs: list[tuple[str, str]] = []
        for parameter, value in fields:
            if isinstance(value, list) and parameter.collection_format == "multi":
                pairs.extend((parameter.name, to_text(item)) for item in value)
            else:
                pairs.append((parameter.name, _joined(parameter, value)))
        return urlencode(pairs).encode("ascii"), "application/x-www-form-urlencoded"
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for parameter, value in fields:
        name = _quoted(parameter.name)
        if parameter.type == "file":
            if _is_content_object(value):
                data = _decode_content(value) or b""
                part_type = str(value.get("$content-type") or "application/octet-stream")
                filename = str(value.get("filename") or parameter.name)
            else:
                data = str(value).encode("utf-8")
                part_type = "application/octet-stream"
                filename = parameter.name
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{_quoted(filename)}"\r\n'
                f"Content-Type: {part_type}\r\n\r\n"
            )
        else:
            data = _joined(parameter, value).encode("utf-8")
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
        chunks.append(f"--{boundary}\r\n".encode() + head.encode("utf-8") + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _is_content_object(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("$content"), str)


def _decode_content(value: Mapping[str, Any]) -> bytes | None:
    """The bytes of a Power Automate content object, or None when not base64."""
    try:
        return base64.b64decode(value["$content"], validate=True)
    except (binascii.Error, ValueError):
        return None


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def _error(name: str, message: str) -> dict[str, str]:
    return {"field": f"parameters.{name}", "message": message}
