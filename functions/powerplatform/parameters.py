"""Validating the parameters a user gives when creating a connection.

`validate_connection_parameters(definition, parameter_set, values)` checks `values`
against the chosen parameter set (or the connector's `connectionParameters` when it has
no sets) and returns `(secret, plain)`:

- secret: securestring and clientCertificate values, as strings, for the secret store;
- plain: everything else (hosts, tenant ids, regions: metadata), typed: `int`
  parameters as int, `bool` as bool, string and gatewaySetting values as str.

Rules: unknown names are refused; `defaultValue` fills a missing or empty value;
required parameters (`uiDefinition.constraints.required`) must then be non-empty;
values must match the type (`int` accepts integers and integer strings, `bool` accepts
booleans and "true"/"false") and, when the definition lists allowed values
(`allowedValues` or `uiDefinition.constraints.allowedValues`), be one of them.
`oauthSetting` parameters are never given here: the OAuth consent flow produces them.
Every problem is reported at once as ValidationFailedError, each naming its field
(`parameters.<name>`, or `parameterSet`); messages never include the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from functions.errors import ValidationFailedError
from functions.powerplatform.coerce import as_bool, as_int, enum_allows
from functions.powerplatform.model import ConnectionParameter, ConnectorDefinition

SECRET_VALUE_TYPES = frozenset({"securestring", "clientCertificate"})


def validate_connection_parameters(
    definition: ConnectorDefinition,
    parameter_set: str | None,
    values: Mapping[str, Any],
) -> tuple[dict[str, str], dict[str, Any]]:
    """Check `values`; return (secret, plain) or raise ValidationFailedError."""
    errors: list[dict[str, str]] = []
    declared = _declared_parameters(definition, parameter_set, errors)
    if declared is None:
        _raise(errors)
    secret: dict[str, str] = {}
    plain: dict[str, Any] = {}
    for name in values:
        if name not in declared:
            expected = ", ".join(n for n, p in declared.items() if p.type != "oauthSetting")
            errors.append(_error(name, f"unknown parameter (expected: {expected or 'none'})"))
    for name, parameter in declared.items():
        value = values.get(name)
        if parameter.type == "oauthSetting":
            if value is not None:
                errors.append(_error(name, "is set by signing in (OAuth), not given directly"))
            continue
        if (value is None or value == "") and parameter.default is not None:
            value = parameter.default
        if value is None or value == "":
            if parameter.required:
                errors.append(_error(name, "required"))
            continue
        checked, problem = _check_value(parameter, value)
        if problem is not None:
            errors.append(_error(name, problem))
            continue
        if parameter.type in SECRET_VALUE_TYPES:
            secret[name] = str(checked)
        else:
            plain[name] = checked
    if errors:
        _raise(errors)
    return secret, plain


def _declared_parameters(
    definition: ConnectorDefinition,
    parameter_set: str | None,
    errors: list[dict[str, str]],
) -> dict[str, ConnectionParameter] | None:
    sets = definition.parameter_sets
    if sets:
        names = ", ".join(sets)
        if parameter_set is None:
            errors.append({"field": "parameterSet", "message": f"required (one of: {names})"})
            return None
        chosen = sets.get(parameter_set)
        if chosen is None:
            errors.append(
                {"field": "parameterSet", "message": f"unknown (expected one of: {names})"}
            )
            return None
    elif parameter_set is not None:
        errors.append({"field": "parameterSet", "message": "this connector has no parameter sets"})
        return None
    option = definition.auth_option(parameter_set)
    # The auth option holds the declared parameters plus any the security definition
    # implies (e.g. `api_key` when apiProperties.json forgot it).
    if option is not None:
        return {p.name: p for p in option.parameters}
    return dict(definition.connection_parameters)


def _check_value(parameter: ConnectionParameter, value: Any) -> tuple[Any, str | None]:
    kind = parameter.type
    coerce = _COERCE.get(kind, _as_string)
    checked = coerce(value)
    problem = None if checked is not None else _PROBLEM.get(kind, "must be a string")
    if parameter.allowed_values:
        # Lenient where the definition contradicts itself (a bool whose allowed
        # values are "yes"/"no"): either reading's values are accepted.
        if not enum_allows(coerce, value, checked, parameter.allowed_values, _text):
            return None, problem or f"must be one of: {', '.join(parameter.allowed_values)}"
        if checked is None:
            return str(value), None
    return checked, problem


def _as_string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


_COERCE: dict[str, Any] = {"int": as_int, "bool": as_bool}
_PROBLEM = {"int": "must be an integer", "bool": "must be true or false"}


def _error(name: str, message: str) -> dict[str, str]:
    return {"field": f"parameters.{name}", "message": message}


def _raise(errors: list[dict[str, str]]) -> NoReturn:
    raise ValidationFailedError(
        "invalid connection parameters: "
        + "; ".join(f"{e['field']} {e['message']}" for e in errors),
        errors=errors,
    )
