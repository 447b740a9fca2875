"""A parsed Power Platform connector definition, as plain records.

`parse_definition` (definition.py) builds a `ConnectorDefinition` from the two files;
everything else (connection validation, request building, policies, `inspect`) reads
these records and never the raw documents, except for `$ref` lookups in body schemas,
which go through `api_definition`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from functions.errors import NotFoundError

AuthType = Literal["none", "basic", "apiKey", "oauth2", "windows"]
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


# A parameter without a `default` (distinct from a default of null).
NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True)
class ConnectionParameter:
    """One entry of `connectionParameters` (or of a parameter set's `parameters`).

    `type` is canonical: string, securestring, int, bool, oauthSetting, gatewaySetting,
    clientCertificate, or the declared spelling of a type we do not know.
    `secret` values go to the secret store (securestring, clientCertificate, and the
    tokens an oauthSetting yields); the rest are metadata.
    """

    name: str
    type: str
    required: bool = False
    secret: bool = False
    default: str | None = None
    allowed_values: tuple[str, ...] = ()
    hidden: bool = False
    display_name: str | None = None
    description: str | None = None
    oauth_settings: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ParameterSet:
    """One value of `connectionParameterSets.values`: an alternative way to connect."""

    name: str
    display_name: str | None
    description: str | None
    parameters: Mapping[str, ConnectionParameter]


@dataclass(frozen=True)
class ApiKeySettings:
    location: Literal["header", "query"]
    name: str
    parameter: str = "api_key"


@dataclass(frozen=True)
class OAuth2Settings:
    """OAuth 2.0 as the definition declares it.

    URLs may be Power Platform templates (`oauth2generic`: `{BigEvalUrl}/connect/token`);
    `custom_parameters` holds every `customParameters` value (e.g. the generic
    `tokenBodyTemplate`, Entra's `resourceUri`). The client secret is never in a
    definition worth trusting; it is configured on import.
    """

    identity_provider: str
    parameter: str
    authorization_url: str | None
    token_url: str | None
    refresh_url: str | None
    scopes: tuple[str, ...]
    client_id: str | None = None
    redirect_mode: str | None = None
    redirect_url: str | None = None
    flow: str | None = None
    custom_parameters: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthOption:
    """One way to create a connection: a parameter set, or the whole connector."""

    name: str | None
    type: AuthType
    parameters: tuple[ConnectionParameter, ...]
    gateway: bool = False
    api_key: ApiKeySettings | None = None
    oauth2: OAuth2Settings | None = None
    security_definition: str | None = None
    display_name: str | None = None

    def parameter(self, name: str) -> ConnectionParameter | None:
        return next((p for p in self.parameters if p.name == name), None)


@dataclass(frozen=True)
class OperationParameter:
    """One resolved operation parameter (path-level and `$ref` parameters merged in).

    `location` is the swagger `in`: path, query, header, body or formData.
    """

    name: str
    location: str
    required: bool = False
    type: str | None = None
    format: str | None = None
    enum: tuple[Any, ...] | None = None
    default: Any = NO_DEFAULT
    collection_format: str = "csv"
    items: Mapping[str, Any] | None = None
    schema: Mapping[str, Any] | None = None
    url_encoding: str = "single"
    visibility: str | None = None
    # A header parameter whose name is not an HTTP token (`Account Id`, `content-type:`):
    # never sent, since it would corrupt the request's header section.
    unsendable: bool = False

    @property
    def sends_default(self) -> bool:
        """Power Platform fills in defaults of required and internal parameters only."""
        return self.default is not NO_DEFAULT and (self.required or self.visibility == "internal")


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str  # upper case
    path: str  # as written in `paths`
    parameters: tuple[OperationParameter, ...] = ()
    consumes: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    summary: str | None = None
    deprecated: bool = False

    def parameter(self, name: str, location: str | None = None) -> OperationParameter | None:
        return next(
            (
                p
                for p in self.parameters
                if p.name == name and (location is None or p.location == location)
            ),
            None,
        )


@dataclass(frozen=True)
class PolicyTemplateInstance:
    """One entry of `policyTemplateInstances`, checked and with its expressions parsed.

    `template_id` is lower case (Power Platform accepts `SetHeader`, `setHeader`, ...).
    `operations` empty means every operation. `supported` is False for templates the
    gateway cannot run and for supported ones whose parameters are unusable; `problem`
    says why. `compiled` holds the parsed templates the runtime needs.
    """

    index: int
    template_id: str
    title: str | None
    operations: tuple[str, ...]
    section: str  # "request", "response" or "failure"
    parameters: Mapping[str, Any]
    supported: bool
    problem: str | None = None
    compiled: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def template_functions(self) -> frozenset[str]:
        """Functions called by its string templates (`body()`, `item()`, ...): computed
        once, since the runtime asks on every call."""
        from functions.powerplatform.expressions import Template

        found: frozenset[str] = frozenset()
        for value in self.compiled.values():
            if isinstance(value, Template):
                found |= value.functions()
        return found

    def applies_to(self, operation_id: str | None) -> bool:
        """Whether the policy runs for this operation (None: a call with no operation)."""
        if not self.operations:
            return True
        return operation_id is not None and operation_id in self.operations


@dataclass
class ConnectorDefinition:
    """Everything the gateway needs from a connector folder."""

    title: str | None
    description: str | None
    base_url: str | None  # "<scheme>://<host><basePath>", as the definition spells it
    auth_options: list[AuthOption]
    operations: dict[str, Operation]
    policies: list[PolicyTemplateInstance]
    warnings: list[str]
    connection_parameters: dict[str, ConnectionParameter]
    parameter_sets: dict[str, ParameterSet]
    has_script: bool = False
    # Operations the custom code handles; None means all of them.
    script_operations: tuple[str, ...] | None = None
    api_definition: dict[str, Any] = field(default_factory=dict, repr=False)
    api_properties: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def request_base_url(self) -> str | None:
        """`base_url` without a trailing slash, as `OutgoingRequest.base_url` wants it."""
        return self.base_url.rstrip("/") if self.base_url else None

    def operation(self, operation_id: str) -> Operation:
        """The operation, or NotFoundError(code="operation_not_found")."""
        found = self.operations.get(operation_id)
        if found is None:
            raise NotFoundError(
                f"operation {operation_id!r} is not defined by this connector",
                code="operation_not_found",
            )
        return found

    def auth_option(self, parameter_set: str | None) -> AuthOption | None:
        """The option for a parameter set name (None: the connector without sets)."""
        return next((o for o in self.auth_options if o.name == parameter_set), None)

    def script_covers(self, operation_id: str | None) -> bool:
        """Whether custom code (script.csx) runs for this operation."""
        if not self.has_script:
            return False
        if self.script_operations is None:
            return True
        return operation_id is not None and operation_id in self.script_operations
