"""The OpenAPI 2.0 side of a definition: base URL, operations and their parameters.

Rules (Power Platform's, where the format leaves room):
- `swagger` must be "2.0" and `paths` an object; anything else is a DefinitionError.
  Everything else degrades to a warning, because real definitions are often sloppy
  and a connector that can run most operations is more useful than none.
- Every HTTP method of every path is an operation. One without an `operationId` gets
  `<method>_<path words>` (e.g. `get_items_id`), a duplicate gets `_2`, `_3`...;
  each case is a warning, since policies scope by operation id.
- Path-level `parameters` apply to every operation of the path unless the operation
  redefines the same (name, in). `$ref`s to `#/parameters/...` are resolved here;
  body schemas keep their `$ref`s and are resolved when validated (`resolve_ref`).
- Path parameters are always required, as OpenAPI says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from functions.powerplatform.errors import DefinitionError
from functions.powerplatform.loading import API_DEFINITION_FILE
from functions.powerplatform.model import HTTP_METHODS, NO_DEFAULT, Operation, OperationParameter

_LOCATIONS = ("path", "query", "header", "body", "formData")
_TEMPLATE_VARIABLE = re.compile(r"{([^{}]+)}")
# An HTTP header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_structure(api_definition: Mapping[str, Any]) -> None:
    """Raise DefinitionError unless this is an OpenAPI 2.0 document with `paths`."""
    version = api_definition.get("swagger")
    if version is None and "openapi" in api_definition:
        raise DefinitionError(
            API_DEFINITION_FILE,
            f"OpenAPI {api_definition['openapi']} is not supported; "
            'Power Platform connectors use OpenAPI 2.0 ("swagger": "2.0")',
            pointer="/openapi",
        )
    if version != "2.0":
        found = "missing" if version is None else f"found {version!r}"
        raise DefinitionError(API_DEFINITION_FILE, f'must be "2.0" ({found})', pointer="/swagger")
    if not isinstance(api_definition.get("paths"), dict):
        found = "missing" if "paths" not in api_definition else "not an object"
        raise DefinitionError(API_DEFINITION_FILE, f"must be an object ({found})", pointer="/paths")


def base_url(api_definition: Mapping[str, Any], warnings: list[str]) -> str | None:
    """`<scheme>://<host><basePath>`, or None without a usable `host`.

    The scheme is https when listed (or when `schemes` is absent), else the first one.
    """
    host = api_definition.get("host")
    if host is None:
        return None
    if not isinstance(host, str) or not host.strip():
        warnings.append("apiDefinition.swagger.json: 'host' is not a host name; no base URL")
        return None
    schemes = api_definition.get("schemes")
    listed = [s.lower() for s in schemes if isinstance(s, str)] if isinstance(schemes, list) else []
    scheme = "https" if not listed or "https" in listed else listed[0]
    base_path = api_definition.get("basePath") or ""
    if not isinstance(base_path, str):
        warnings.append("apiDefinition.swagger.json: 'basePath' is not a string; ignored")
        base_path = ""
    if base_path and not base_path.startswith("/"):
        warnings.append(f"apiDefinition.swagger.json: basePath {base_path!r} lacks a leading '/'")
        base_path = "/" + base_path
    return f"{scheme}://{host.strip()}{base_path}"


def resolve_ref(document: Mapping[str, Any], ref: str) -> Any:
    """The value a local JSON reference (`#/definitions/Item`) points at, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = document
    for raw_token in ref[1:].split("/")[1:]:
        token = raw_token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def parse_operations(
    api_definition: Mapping[str, Any], warnings: list[str]
) -> dict[str, Operation]:
    """Every operation in `paths`, in file order, keyed by (unique) operation id."""
    operations: dict[str, Operation] = {}
    global_consumes = _strings(api_definition.get("consumes"))
    global_produces = _strings(api_definition.get("produces"))
    for path, item in api_definition["paths"].items():
        if not isinstance(path, str) or path.startswith("x-"):
            continue  # vendor extensions may sit beside the paths
        if not isinstance(item, dict):
            warnings.append(f"path {path!r} is not an object; skipped")
            continue
        shared = _parameter_list(api_definition, item.get("parameters"), f"path {path!r}", warnings)
        for method in HTTP_METHODS:
            if method not in item:
                continue
            raw = item[method]
            if not isinstance(raw, dict):
                warnings.append(f"{method.upper()} {path} is not an object; skipped")
                continue
            operation_id = _operation_id(raw, method, path, operations, warnings)
            where = f"operation {operation_id}"
            own = _parameter_list(api_definition, raw.get("parameters"), where, warnings)
            overridden = {(p.name, p.location) for p in own}
            parameters = [p for p in shared if (p.name, p.location) not in overridden] + own
            _check_path_variables(path, parameters, where, warnings)
            summary = raw.get("summary")
            operations[operation_id] = Operation(
                operation_id=operation_id,
                method=method.upper(),
                path=path,
                parameters=tuple(parameters),
                consumes=_strings(raw["consumes"]) if "consumes" in raw else global_consumes,
                produces=_strings(raw["produces"]) if "produces" in raw else global_produces,
                summary=summary if isinstance(summary, str) else None,
                deprecated=raw.get("deprecated") is True,
            )
    return operations


def _operation_id(
    raw: Mapping[str, Any],
    method: str,
    path: str,
    existing: Mapping[str, Operation],
    warnings: list[str],
) -> str:
    declared = raw.get("operationId")
    if isinstance(declared, str) and declared.strip():
        wanted = declared.strip()
    else:
        words = re.findall(r"[A-Za-z0-9]+", path)
        wanted = "_".join([method, *words])
        warnings.append(f"{method.upper()} {path} has no operationId; using {wanted!r}")
    operation_id = wanted
    counter = 2
    while operation_id in existing:
        operation_id = f"{wanted}_{counter}"
        counter += 1
    if operation_id != wanted:
        warnings.append(
            f"operationId {wanted!r} is used more than once; {method.upper()} {path} "
            f"is {operation_id!r}"
        )
    return operation_id


def _parameter_list(
    document: Mapping[str, Any], raw: Any, where: str, warnings: list[str]
) -> list[OperationParameter]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        warnings.append(f"{where}: 'parameters' is not an array; ignored")
        return []
    parameters: list[OperationParameter] = []
    seen: set[tuple[str, str]] = set()
    for entry in raw:
        resolved = entry
        if isinstance(entry, dict) and isinstance(entry.get("$ref"), str):
            resolved = resolve_ref(document, entry["$ref"])
            if not isinstance(resolved, dict):
                warnings.append(
                    f"{where}: parameter $ref {entry['$ref']!r} does not resolve; ignored"
                )
                continue
        parameter = _parameter(resolved, where, warnings)
        if parameter is None:
            continue
        key = (parameter.name, parameter.location)
        if key in seen:
            warnings.append(f"{where}: parameter {parameter.name!r} ({parameter.location}) repeats")
            continue
        seen.add(key)
        parameters.append(parameter)
    names = [p.name for p in parameters]
    for name in sorted({n for n in names if names.count(n) > 1}):
        warnings.append(
            f"{where}: several parameters are named {name!r}; a call can set only the first"
        )
    return parameters


def _parameter(raw: Any, where: str, warnings: list[str]) -> OperationParameter | None:
    if not isinstance(raw, dict):
        warnings.append(f"{where}: a parameter is not an object; ignored")
        return None
    name = raw.get("name")
    location = raw.get("in")
    if not isinstance(name, str) or location not in _LOCATIONS:
        warnings.append(f"{where}: parameter {name!r} has no valid 'name' and 'in'; ignored")
        return None
    enum = raw.get("enum")
    items = raw.get("items")
    schema = raw.get("schema")
    encoding = raw.get("x-ms-url-encoding")
    collection_format = raw.get("collectionFormat")
    visibility = raw.get("x-ms-visibility")
    param_type = raw.get("type")
    param_format = raw.get("format")
    unsendable = location == "header" and not _TOKEN.fullmatch(name)
    if unsendable:
        warnings.append(
            f"{where}: header parameter {name!r} is not a valid HTTP header name; it is "
            "never sent, and calls that would send it are refused"
        )
    return OperationParameter(
        name=name,
        location=location,
        required=location == "path" or raw.get("required") is True,
        type=param_type if isinstance(param_type, str) else None,
        format=param_format if isinstance(param_format, str) and param_format else None,
        enum=tuple(enum) if isinstance(enum, list) and enum else None,
        default=raw.get("default", NO_DEFAULT),
        collection_format=collection_format if isinstance(collection_format, str) else "csv",
        items=items if isinstance(items, dict) else None,
        schema=schema if isinstance(schema, dict) else None,
        url_encoding="double" if encoding == "double" else "single",
        visibility=visibility.lower() if isinstance(visibility, str) else None,
        unsendable=unsendable,
    )


def _check_path_variables(
    path: str, parameters: list[OperationParameter], where: str, warnings: list[str]
) -> None:
    declared = {p.name for p in parameters if p.location == "path"}
    for variable in _TEMPLATE_VARIABLE.findall(path.split("?", 1)[0]):
        if variable not in declared:
            warnings.append(f"{where}: path variable {{{variable}}} has no path parameter")


def _strings(raw: Any) -> tuple[str, ...]:
    return tuple(v for v in raw if isinstance(v, str)) if isinstance(raw, list) else ()
