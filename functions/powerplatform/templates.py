"""Policy template instances: which ones the gateway runs, checked once at import.

Each entry of `policyTemplateInstances` has a `templateId`, a `title` and `parameters`:
`x-ms-apimTemplate-operationName` (operation ids it applies to; none or empty = all),
`x-ms-apimTemplate-policySection` (Request, Response or Failure; default Request) and
template parameters named `x-ms-apimTemplateParameter.<name>`.

Supported templates and the parameters they read:

    setheader               name, value, existsAction (override|skip|append|delete)
                            sections Request, Response, Failure
    setqueryparameter       name, value, existsAction              section Request
    dynamichosturl          urlTemplate                            section Request
    routerequesttoendpoint  newPath, httpMethod (optional)         section Request
    setproperty             newPropertyParentPathTemplate, newPropertySubPathTemplate,
                            propertyValuePathTemplate              Request, Response
    stringreplace           propertyParentPath, propertySubPath, sourceString,
                            replacementString, newPropertyPath (optional; default: in
                            place)                                 Request, Response

Any other template id is unsupported. A supported one is unsupported too when a required
parameter is missing, an expression does not parse (unknown function, bad syntax) or
a value is not one the template accepts; `problem` says which. Unsupported instances are
listed in the definition's warnings, and operations they cover answer 501.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from functions.powerplatform.expressions import (
    ExpressionError,
    parse_expression,
    parse_property_path,
    parse_template,
    parse_value_template,
)
from functions.powerplatform.model import PolicyTemplateInstance
from functions.upstream.headers import is_framing_header

PARAMETER_PREFIX = "x-ms-apimTemplateParameter."
OPERATIONS_KEY = "x-ms-apimTemplate-operationName"
SECTION_KEY = "x-ms-apimTemplate-policySection"
ORIGINAL_METHOD = "@request.originalhttpmethod"
EXISTS_ACTIONS = ("override", "skip", "append", "delete")
ROUTE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")


class _Unusable(Exception):
    """A supported template whose parameters cannot be used; the message says why."""


def _optional_text(parameters: Mapping[str, Any], name: str) -> str | None:
    value = parameters.get(PARAMETER_PREFIX + name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Unusable(f"parameter {PARAMETER_PREFIX}{name} must be a string")
    return str(value)


def _required_text(parameters: Mapping[str, Any], name: str) -> str:
    value = _optional_text(parameters, name)
    if value is None:
        raise _Unusable(f"parameter {PARAMETER_PREFIX}{name} is missing")
    return value


def _compile_name_value(parameters: Mapping[str, Any]) -> dict[str, Any]:
    name = _required_text(parameters, "name")
    value = _required_text(parameters, "value")
    action = (_optional_text(parameters, "existsAction") or "override").strip().lower()
    if action not in EXISTS_ACTIONS:
        raise _Unusable(f"existsAction {action!r} is not one of {', '.join(EXISTS_ACTIONS)}")
    if not name.strip():
        raise _Unusable("the name is empty")
    return {
        "name": parse_template(name.strip()),
        "value": parse_template(value),
        "existsAction": action,
    }


def _compile_setheader(parameters: Mapping[str, Any]) -> dict[str, Any]:
    compiled = _compile_name_value(parameters)
    name = _required_text(parameters, "name").strip()
    # A literal framing or hop-by-hop name (Content-Length, Transfer-Encoding, Host,
    # Connection, ...): only the HTTP client may set those, or a body could smuggle a
    # second request onto a pooled connection other users share. Names computed at
    # run time are stripped and counted at send (functions/upstream/headers.py).
    if "@" not in name and is_framing_header(name):
        raise _Unusable(
            f"{name} is a framing or hop-by-hop header, which only the gateway's HTTP "
            "client sets (request smuggling)"
        )
    return compiled


def _compile_host(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {"urlTemplate": parse_template(_required_text(parameters, "urlTemplate").strip())}


def _compile_route(parameters: Mapping[str, Any]) -> dict[str, Any]:
    path = _required_text(parameters, "newPath").strip()
    method = _optional_text(parameters, "httpMethod")
    chosen: str | None = None
    if method and method.strip() and method.strip().lower() != ORIGINAL_METHOD:
        chosen = method.strip().upper()
        if chosen not in ROUTE_METHODS:
            raise _Unusable(f"httpMethod {method!r} is not an HTTP method")
    return {"newPath": parse_template(path), "httpMethod": chosen}


def _compile_set_property(parameters: Mapping[str, Any]) -> dict[str, Any]:
    parent = _required_text(parameters, "newPropertyParentPathTemplate")
    sub_path = _required_text(parameters, "newPropertySubPathTemplate")
    value = _required_text(parameters, "propertyValuePathTemplate")
    return {
        "parent": parse_expression(parent.strip()),
        "subPath": parse_property_path(sub_path),
        "value": parse_value_template(value),
    }


def _item_relative_path(text: str) -> tuple[str | int, ...]:
    """`@item().id`, `item().a.b` or `a.b`: a path below the current item."""
    cleaned = text.strip()
    for prefix in ("@item()", "item()"):
        if cleaned.startswith(prefix):
            cleaned = cleaned[len(prefix) :].lstrip(".")
            break
    if not cleaned:
        raise _Unusable("newPropertyPath must name a property of the item")
    return parse_property_path(cleaned)


def _compile_string_replace(parameters: Mapping[str, Any]) -> dict[str, Any]:
    parent = _required_text(parameters, "propertyParentPath")
    sub_path = _required_text(parameters, "propertySubPath")
    source = _required_text(parameters, "sourceString")
    if source == "":
        raise _Unusable("sourceString must not be empty")
    target = _optional_text(parameters, "newPropertyPath")
    return {
        "parent": parse_expression(parent.strip()),
        "subPath": parse_property_path(sub_path),
        "source": source,
        "replacement": _optional_text(parameters, "replacementString") or "",
        "target": _item_relative_path(target) if target else parse_property_path(sub_path),
    }


Compiler = Callable[[Mapping[str, Any]], dict[str, Any]]

# template id -> (sections it may run in, compiler of its parameters)
SUPPORTED_TEMPLATES: Mapping[str, tuple[frozenset[str], Compiler]] = {
    "setheader": (frozenset({"request", "response", "failure"}), _compile_setheader),
    "setqueryparameter": (frozenset({"request"}), _compile_name_value),
    "dynamichosturl": (frozenset({"request"}), _compile_host),
    "routerequesttoendpoint": (frozenset({"request"}), _compile_route),
    "setproperty": (frozenset({"request", "response"}), _compile_set_property),
    "stringreplace": (frozenset({"request", "response"}), _compile_string_replace),
}


def parse_policy_instances(raw: Any, warnings: list[str]) -> list[PolicyTemplateInstance]:
    """Parse `policyTemplateInstances`; malformed entries become unsupported instances."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        warnings.append("policyTemplateInstances is not an array; ignored")
        return []
    return [parse_policy_instance(entry, index) for index, entry in enumerate(raw)]


def parse_policy_instance(raw: Any, index: int) -> PolicyTemplateInstance:
    """Check one instance and compile its expressions (never raises)."""
    entry = raw if isinstance(raw, dict) else {}
    template = entry.get("templateId")
    template_id = template.strip().lower() if isinstance(template, str) else ""
    title = entry.get("title") if isinstance(entry.get("title"), str) else None
    parameters = entry.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    operations = _operations(parameters.get(OPERATIONS_KEY))
    section_raw = parameters.get(SECTION_KEY)
    section = "request"
    if isinstance(section_raw, str) and section_raw.strip():
        section = section_raw.strip().lower()

    def instance(
        problem: str | None, compiled: dict[str, Any] | None = None
    ) -> PolicyTemplateInstance:
        return PolicyTemplateInstance(
            index=index,
            template_id=template_id,
            title=title,
            operations=operations or (),
            section=section,
            parameters=parameters,
            supported=problem is None,
            problem=problem,
            compiled=compiled or {},
        )

    if not isinstance(raw, dict):
        return instance("the entry is not an object")
    if not template_id:
        return instance("templateId is missing")
    if operations is None:
        # Unreadable scoping: count it as covering every operation, the safe reading.
        return instance(f"{OPERATIONS_KEY} must be an array of operation ids")
    known = SUPPORTED_TEMPLATES.get(template_id)
    if known is None:
        return instance("the gateway does not implement this template")
    sections, compile_parameters = known
    if section not in sections:
        return instance(f"policy section {section_raw!r} is not available for this template")
    try:
        return instance(None, compile_parameters(parameters))
    except (_Unusable, ExpressionError) as exc:
        return instance(str(exc))


def _operations(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,) if raw.strip() else ()
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return tuple(item for item in raw if item.strip())
    return None
