"""Connection parameters and the authentication options they imply.

Power Platform keeps authentication in two places: `securityDefinitions` in the swagger
(how a credential is sent) and `connectionParameters` / `connectionParameterSets` in
apiProperties.json (what a user supplies). The rules, applied to each parameter set (or
to the connector's own parameters when it has no sets):

1. A parameter of type `oauthSetting` makes the option `oauth2`. URLs and scopes come
   from its `oAuthSettings` (`customParameters.authorizationUrl/tokenUrl/refreshUrl`, the
   `*UrlTemplate`s of `oauth2generic`, or Entra ID endpoints built from `loginUri` and
   `tenantId` for `aad` / `aadcertificate`); what is missing comes from the swagger's
   oauth2 security definition, then from a table of well-known providers.
2. A `gatewaySetting` parameter means an on-premises data gateway (`gateway: true`); with
   an `authType` parameter whose allowed values include `windows`, the option is
   `windows`.
3. Otherwise a security definition decides: the one named like the parameter set, else
   the first (those listed in `security` first) whose credential parameters exist:
   `basic` needs `username` and `password`, `apiKey` needs `api_key`.
4. A connector without sets whose only security definition has no matching parameters
   still gets that scheme, with the conventional parameters added (and a warning):
   Power Platform's own wizard derives them from the security definition.
5. Anything else is `none`; its securestring parameters (used by policies such as
   `setheader` with `@connectionParameters('key')`) are still secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from functions.powerplatform.model import (
    ApiKeySettings,
    AuthOption,
    AuthType,
    ConnectionParameter,
    OAuth2Settings,
    ParameterSet,
)
from functions.upstream.headers import is_framing_header

_CANONICAL_TYPES = {
    name.lower(): name
    for name in (
        "string",
        "securestring",
        "int",
        "bool",
        "oauthSetting",
        "gatewaySetting",
        "clientCertificate",
    )
}
SECRET_TYPES = frozenset({"securestring", "clientCertificate", "oauthSetting"})

# Providers whose endpoints are fixed, so definitions often omit them. Data, not code.
WELL_KNOWN_PROVIDERS: Mapping[str, Mapping[str, str]] = {
    "github": {
        "authorizationUrl": "https://github.com/login/oauth/authorize",
        "tokenUrl": "https://github.com/login/oauth/access_token",
    },
}
_ENTRA_PROVIDERS = frozenset({"aad", "aadcertificate"})
# Client ids certified connectors ship instead of a real one (the publisher's client is
# configured by Microsoft): bracketed hints ("[[CLIENT ID]]", "[YOUR_CLIENT_ID]",
# "{{CLIENT_ID}}", "<<Please add your clientID here>>"), filler words ("dummy",
# "PLACEHOLDER_CLIENTID", "XXXXX") and the all-zero GUID. Real client ids (GUIDs,
# provider-issued tokens such as "Iv1.8a61f9b3a7aba766") have no spaces or brackets.
_PLACEHOLDER_WORDS = (
    "dummy",
    "placeholder",
    "client_id",
    "clientid",
    "client-id",
    "your",
    "changeme",
    "replace",
    "todo",
)
_PLACEHOLDER_EXACT = frozenset({"none", "null", "undefined", "n/a", "na", "tbd", "test", "x"})
# The identity providers the OAuth service can run (services/oauth.py
# POWER_PLATFORM_PROVIDERS; tests/powerplatform/test_corpus_requests.py checks they agree).
SUPPORTED_IDENTITY_PROVIDERS = frozenset(
    {"aad", "aadcertificate", "github", "oauth2", "oauth2generic"}
)
_DEFAULT_LOGIN_URI = "https://login.microsoftonline.com"


def is_placeholder_client_id(value: str | None) -> bool:
    """True when a definition's `oAuthSettings.clientId` is not a real client id: empty,
    bracketed, with spaces, a filler word, or a run of zeros or x's (GUID dashes
    ignored). Such connectors need their client configured on the gateway."""
    text = (value or "").strip()
    if not text:
        return True
    lowered = text.lower()
    if text[0] in "[{<(" or text[-1] in "]}>)" or "${" in text or "%" in text:
        return True
    if any(c.isspace() for c in text):
        return True
    if lowered in _PLACEHOLDER_EXACT or any(word in lowered for word in _PLACEHOLDER_WORDS):
        return True
    bare = lowered.replace("-", "")
    return bare == "" or set(bare) <= {"0"} or set(bare) <= {"x"}


def parse_connection_parameters(
    raw: Any, where: str, warnings: list[str]
) -> dict[str, ConnectionParameter]:
    """Parse a `connectionParameters` object (top level or of a parameter set)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        warnings.append(f"{where}: connectionParameters is not an object; ignored")
        return {}
    parameters: dict[str, ConnectionParameter] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            warnings.append(f"{where}: connection parameter {name!r} is not an object; ignored")
            continue
        parameters[name] = _connection_parameter(name, spec, where, warnings)
    return parameters


def parse_parameter_sets(raw: Any, warnings: list[str]) -> dict[str, ParameterSet]:
    """Parse `connectionParameterSets` (`{uiDefinition, values: [{name, parameters}]}`)."""
    if raw is None:
        return {}
    values = raw.get("values") if isinstance(raw, dict) else None
    if not isinstance(values, list):
        warnings.append("connectionParameterSets has no 'values' array; ignored")
        return {}
    sets: dict[str, ParameterSet] = {}
    for index, entry in enumerate(values):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            warnings.append(f"connectionParameterSets value {index} has no name; ignored")
            continue
        if name in sets:
            warnings.append(f"connection parameter set {name!r} is defined twice; the first counts")
            continue
        ui = _ui(entry)
        sets[name] = ParameterSet(
            name=name,
            display_name=_text(ui, "displayName", "displayname"),
            description=_text(ui, "description"),
            parameters=parse_connection_parameters(
                entry.get("parameters"), f"parameter set {name!r}", warnings
            ),
        )
    return sets


def infer_auth_options(
    api_definition: Mapping[str, Any],
    connection_parameters: Mapping[str, ConnectionParameter],
    parameter_sets: Mapping[str, ParameterSet],
    warnings: list[str],
) -> list[AuthOption]:
    """One AuthOption per parameter set, or exactly one when there are none."""
    definitions = _security_definitions(api_definition, warnings)
    if parameter_sets:
        return [
            _option(
                parameter_set.name,
                parameter_set.display_name,
                dict(parameter_set.parameters),
                definitions,
                synthesize=False,
                warnings=warnings,
            )
            for parameter_set in parameter_sets.values()
        ]
    return [
        _option(
            None, None, dict(connection_parameters), definitions, synthesize=True, warnings=warnings
        )
    ]


def _option(
    name: str | None,
    display_name: str | None,
    parameters: dict[str, ConnectionParameter],
    definitions: list[tuple[str, dict[str, Any]]],
    *,
    synthesize: bool,
    warnings: list[str],
) -> AuthOption:
    where = f"parameter set {name!r}" if name else "the connector"
    gateway = any(p.type == "gatewaySetting" for p in parameters.values())
    oauth_parameter = next((p for p in parameters.values() if p.type == "oauthSetting"), None)

    def make(auth_type: AuthType, **extra: Any) -> AuthOption:
        return AuthOption(
            name=name,
            type=auth_type,
            parameters=tuple(parameters.values()),
            gateway=gateway,
            display_name=display_name,
            **extra,
        )

    if oauth_parameter is not None:
        definition_name, definition = _pick_oauth_definition(name, definitions)
        oauth2 = _oauth2_settings(oauth_parameter, definition)
        if oauth2.identity_provider.lower() not in SUPPORTED_IDENTITY_PROVIDERS:
            warnings.append(
                f"{where}: the OAuth identity provider {oauth2.identity_provider!r} is not "
                "supported; connections using it cannot be created, so its operations "
                "cannot be called"
            )
        return make("oauth2", oauth2=oauth2, security_definition=definition_name)
    if gateway and _allows_windows(parameters):
        return make("windows")

    chosen = _match_definition(name, parameters, definitions)
    if chosen is None and synthesize and not gateway and definitions:
        chosen = definitions[0]
        added = _add_conventional_parameters(chosen[1], parameters)
        if added:
            warnings.append(
                f"{where}: security definition {chosen[0]!r} ({chosen[1].get('type')}) "
                f"has no matching connection parameters; assumed {', '.join(added)}"
            )
    if chosen is None:
        return make("none")
    definition_name, definition = chosen
    kind = definition.get("type")
    if kind == "basic":
        return make("basic", security_definition=definition_name)
    if kind == "apiKey":
        location = definition.get("in")
        key_name = definition.get("name")
        if location not in ("header", "query") or not isinstance(key_name, str) or not key_name:
            warnings.append(
                f"{where}: apiKey security definition {definition_name!r} needs 'in' "
                "(header or query) and 'name'; treated as no authentication"
            )
            return make("none")
        if location == "header" and is_framing_header(key_name):
            # Issue 12: never a credential in a framing header (request smuggling).
            warnings.append(
                f"{where}: apiKey security definition {definition_name!r} names {key_name}, "
                "a framing or hop-by-hop header the gateway never sets; treated as no "
                "authentication"
            )
            return make("none")
        return make(
            "apiKey",
            api_key=ApiKeySettings(location=location, name=key_name),
            security_definition=definition_name,
        )
    # oauth2 without an oauthSetting parameter (only reachable by synthesis)
    token = parameters["token"]
    return make(
        "oauth2", oauth2=_oauth2_settings(token, definition), security_definition=definition_name
    )


def _match_definition(
    name: str | None,
    parameters: Mapping[str, ConnectionParameter],
    definitions: list[tuple[str, dict[str, Any]]],
) -> tuple[str, dict[str, Any]] | None:
    if name is not None:
        for definition_name, definition in definitions:
            if definition_name == name and definition.get("type") in ("basic", "apiKey"):
                return definition_name, definition
    for definition_name, definition in definitions:
        kind = definition.get("type")
        if kind == "basic" and "username" in parameters and "password" in parameters:
            return definition_name, definition
        if kind == "apiKey" and "api_key" in parameters:
            return definition_name, definition
    return None


def _add_conventional_parameters(
    definition: Mapping[str, Any], parameters: dict[str, ConnectionParameter]
) -> list[str]:
    """Add the parameters Power Platform's wizard would have generated; return their names."""
    kind = definition.get("type")
    wanted: list[tuple[str, str]] = []
    if kind == "basic":
        wanted = [("username", "string"), ("password", "securestring")]
    elif kind == "apiKey":
        wanted = [("api_key", "securestring")]
    elif kind == "oauth2":
        wanted = [("token", "oauthSetting")]
    added = []
    for parameter_name, parameter_type in wanted:
        if parameter_name not in parameters:
            parameters[parameter_name] = ConnectionParameter(
                name=parameter_name,
                type=parameter_type,
                required=True,
                secret=parameter_type in SECRET_TYPES,
            )
            added.append(parameter_name)
    return added


def _pick_oauth_definition(
    name: str | None, definitions: list[tuple[str, dict[str, Any]]]
) -> tuple[str | None, dict[str, Any]]:
    oauth = [(n, d) for n, d in definitions if d.get("type") == "oauth2"]
    for definition_name, definition in oauth:
        if definition_name == name:
            return definition_name, definition
    return oauth[0] if oauth else (None, {})


def _oauth2_settings(
    parameter: ConnectionParameter, definition: Mapping[str, Any]
) -> OAuth2Settings:
    settings = dict(parameter.oauth_settings or {})
    provider = settings.get("identityProvider")
    provider = provider if isinstance(provider, str) and provider else "oauth2"
    custom_raw = settings.get("customParameters")
    custom: dict[str, Any] = {}
    if isinstance(custom_raw, dict):
        for key, value in custom_raw.items():
            custom[key] = value.get("value") if isinstance(value, dict) else value
    lowered = provider.lower()
    known = WELL_KNOWN_PROVIDERS.get(lowered, {})

    def first(*candidates: Any) -> str | None:
        return next((c for c in candidates if isinstance(c, str) and c), None)

    if lowered == "oauth2generic":
        authorization = first(
            custom.get("authorizationUrlTemplate"), definition.get("authorizationUrl")
        )
        token = first(custom.get("tokenUrlTemplate"), definition.get("tokenUrl"))
        refresh = first(custom.get("refreshUrlTemplate"), token)
    elif lowered in _ENTRA_PROVIDERS:
        # Entra ID ignores the swagger URLs (often the authorize URL twice); build the
        # v2.0 endpoints of the declared login host and tenant, as MSAL uses them.
        login = (first(custom.get("loginUri")) or _DEFAULT_LOGIN_URI).rstrip("/")
        tenant = first(custom.get("tenantId")) or "common"
        authorization = f"{login}/{tenant}/oauth2/v2.0/authorize"
        token = f"{login}/{tenant}/oauth2/v2.0/token"
        refresh = token
    else:
        authorization = first(
            custom.get("authorizationUrl"),
            definition.get("authorizationUrl"),
            known.get("authorizationUrl"),
        )
        token = first(custom.get("tokenUrl"), definition.get("tokenUrl"), known.get("tokenUrl"))
        refresh = first(custom.get("refreshUrl"), token)
    declared_scopes = settings.get("scopes")
    if isinstance(declared_scopes, list):
        scopes = tuple(s for s in declared_scopes if isinstance(s, str))
    else:
        definition_scopes = definition.get("scopes")
        scopes = tuple(definition_scopes) if isinstance(definition_scopes, dict) else ()
    client_id = next(
        (v for k, v in settings.items() if k.lower() == "clientid" and isinstance(v, str)), None
    )
    properties = settings.get("properties")
    flow = definition.get("flow")
    return OAuth2Settings(
        identity_provider=provider,
        parameter=parameter.name,
        authorization_url=authorization,
        token_url=token,
        refresh_url=refresh,
        scopes=scopes,
        client_id=client_id,
        redirect_mode=first(settings.get("redirectMode")),
        redirect_url=first(settings.get("redirectUrl")),
        flow=flow if isinstance(flow, str) else None,
        custom_parameters=custom,
        properties=properties if isinstance(properties, dict) else {},
    )


def _allows_windows(parameters: Mapping[str, ConnectionParameter]) -> bool:
    for parameter in parameters.values():
        if parameter.name.lower() == "authtype":
            if any(value.lower() == "windows" for value in parameter.allowed_values):
                return True
    return False


def _security_definitions(
    api_definition: Mapping[str, Any], warnings: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Security definitions, those named in `security` first, then in file order."""
    raw = api_definition.get("securityDefinitions")
    raw = raw if isinstance(raw, dict) else {}
    definitions = {
        name: value
        for name, value in raw.items()
        if isinstance(value, dict) and value.get("type") in ("basic", "apiKey", "oauth2")
    }
    required: list[str] = []
    security = api_definition.get("security")
    if isinstance(security, list):
        for requirement in security:
            if isinstance(requirement, dict):
                for name in requirement:
                    if name not in definitions:
                        warnings.append(
                            f"security requirement {name!r} names no security definition; ignored"
                        )
                    elif name not in required:
                        required.append(name)
    ordered = required + [name for name in definitions if name not in required]
    return [(name, definitions[name]) for name in ordered]


def _connection_parameter(
    name: str, spec: Mapping[str, Any], where: str, warnings: list[str]
) -> ConnectionParameter:
    declared = spec.get("type")
    if not isinstance(declared, str) or not declared:
        warnings.append(f"{where}: connection parameter {name!r} has no type; assumed string")
        declared = "string"
    canonical = _CANONICAL_TYPES.get(declared.lower())
    if canonical is None:
        warnings.append(f"{where}: connection parameter {name!r} has unknown type {declared!r}")
        canonical = declared
    ui = _ui(spec)
    constraints = ui.get("constraints")
    constraints = constraints if isinstance(constraints, dict) else {}
    allowed: list[str] = []
    for source in (spec.get("allowedValues"), constraints.get("allowedValues")):
        if isinstance(source, list):
            for entry in source:
                value = entry.get("value") if isinstance(entry, dict) else entry
                if isinstance(value, str | int | float) and str(value) not in allowed:
                    allowed.append(str(value))
    default = spec.get("defaultValue")
    settings = spec.get("oAuthSettings")
    return ConnectionParameter(
        name=name,
        type=canonical,
        required=_truthy(constraints.get("required")),
        secret=canonical in SECRET_TYPES,
        default=None if default is None else str(default),
        allowed_values=tuple(allowed),
        hidden=_truthy(constraints.get("hidden")),
        display_name=_text(ui, "displayName", "displayname"),
        description=_text(ui, "description"),
        oauth_settings=settings if isinstance(settings, dict) else None,
        raw=spec,
    )


def _ui(spec: Mapping[str, Any]) -> dict[str, Any]:
    ui = spec.get("uiDefinition")
    return ui if isinstance(ui, dict) else {}


def _text(mapping: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str):
            return value
    return None


def _truthy(value: Any) -> bool:
    """uiDefinition constraints spell booleans as "true"/"false" strings (or booleans)."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
