"""Request and response shapes, named by purpose. Unknown fields are refused."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.domain.models import AuthScheme, Connection, Connector, OAuthScheme, Share
from functions.powerplatform import inspect_dict
from functions.powerplatform.errors import PolicyNotSupportedError
from functions.powerplatform.model import ConnectorDefinition
from functions.powerplatform.policies import ensure_operation_supported
from functions.services.connectors import OAuthClientInput
from functions.upstream.headers import is_framing_header

# RFC 9110 token: what a header name may contain.
HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"


class Strict(BaseModel):
    # Subclasses add `json_schema_extra` examples (the OpenAPI request bodies show them);
    # pydantic merges their config with this one.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AuthNone(Strict):
    type: Literal["none"]


class AuthBasic(Strict):
    type: Literal["basic"]


class AuthApiKey(Strict):
    type: Literal["apiKey"]
    in_: Literal["header", "query"] = Field(alias="in")
    name: str = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _header_name(self) -> AuthApiKey:
        if self.in_ == "header" and not re.match(HEADER_NAME, self.name):
            raise ValueError("name is not a valid HTTP header name")
        if self.in_ == "header" and is_framing_header(self.name):
            # Issue 12: a credential in Content-Length, Host, Connection... would frame
            # or retarget the request (request smuggling); only the client sets those.
            raise ValueError(f"{self.name} is a framing or hop-by-hop header; choose another")
        return self


class AuthOAuth2(Strict):
    """OAuth 2.0 with a provider from the catalog (functions/oauth/providers.json)."""

    type: Literal["oauth2"]
    provider: str = Field(min_length=1, max_length=100)
    clientId: str = Field(min_length=1, max_length=500)
    # Write-only: stored in the secret store, never returned.
    clientSecret: str | None = Field(default=None, min_length=1, max_length=4000)
    scopes: list[str] = Field(default_factory=list, max_length=100)
    settings: dict[str, str] = Field(default_factory=dict)
    redirectUri: str | None = Field(default=None, max_length=2048)
    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"


class AuthWindows(Strict):
    """NTLM/Negotiate through an on-premises gateway agent (the connection names it)."""

    type: Literal["windows"]
    protocol: Literal["negotiate", "ntlm"] = "negotiate"


AuthInput = Annotated[
    AuthNone | AuthBasic | AuthApiKey | AuthOAuth2 | AuthWindows, Field(discriminator="type")
]


def auth_scheme(auth: AuthNone | AuthBasic | AuthApiKey | AuthOAuth2 | AuthWindows) -> AuthScheme:
    if isinstance(auth, AuthWindows):
        return AuthScheme(type="windows", windows_protocol=auth.protocol)
    if isinstance(auth, AuthApiKey):
        return AuthScheme(type="apiKey", api_key_in=auth.in_, api_key_name=auth.name)
    if isinstance(auth, AuthOAuth2):
        oauth = OAuthScheme(
            provider=auth.provider,
            scopes=tuple(auth.scopes),
            settings=tuple(sorted(auth.settings.items())),
            grant=auth.grant,
        )
        return AuthScheme(type="oauth2", oauth=oauth)
    return AuthScheme(type=auth.type)


def oauth_client_input(
    auth: AuthNone | AuthBasic | AuthApiKey | AuthOAuth2 | AuthWindows,
) -> OAuthClientInput | None:
    if not isinstance(auth, AuthOAuth2):
        return None
    return OAuthClientInput(auth.clientId, auth.clientSecret, auth.redirectUri)


class OAuthClientUpdate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"clientId": "my-client-id", "clientSecret": "my-client-secret"}]
        },
    )

    clientId: str = Field(min_length=1, max_length=500)
    clientSecret: str | None = Field(default=None, min_length=1, max_length=4000)
    redirectUri: str | None = Field(default=None, max_length=2048)
    # Issue 18 (aadcertificate, private_key_jwt): PEM private key + certificate, instead
    # of clientSecret; write-only, kept in the secret store like a secret.
    clientCertificate: str | None = Field(default=None, min_length=1, max_length=40000, repr=False)


class ConnectorCreate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Echo",
                    "baseUrl": "https://api.example.com/v1",
                    "auth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    "description": "An API that needs an API key",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    baseUrl: str = Field(min_length=1, max_length=2048)
    auth: AuthInput = Field(default_factory=lambda: AuthNone(type="none"))
    description: str | None = Field(default=None, max_length=4000)
    # May connections to this connector be shared (callers acting with the owner's
    # credentials)? Power Platform definitions can also forbid it per parameter set.
    allowConnectionSharing: bool = True
    # Calls a minute per connection (per gateway instance); unset: the gateway's
    # default (500, as Power Platform).
    callsPerMinute: int | None = Field(default=None, ge=1, le=1_000_000)
    # Send W3C `traceparent` to the upstream when tracing is on (issue 19).
    traceContextPropagation: bool = True


class PrincipalRef(Strict):
    type: Literal["user", "group", "app"]
    # Object id (users, groups, apps) or client id (apps).
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")


class ConnectorShareCreate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "principal": {"type": "user", "id": "00000000-0000-0000-0000-00000000b0b0"},
                    "role": "user",
                }
            ]
        },
    )

    principal: PrincipalRef
    role: Literal["user", "owner"] = "user"


class ConnectionShareCreate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"principal": {"type": "group", "id": "00000000-0000-0000-0000-0000000000aa"}}
            ]
        },
    )

    principal: PrincipalRef


class ShareDelete(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"principal": {"type": "user", "id": "00000000-0000-0000-0000-00000000b0b0"}}
            ]
        },
    )

    principal: PrincipalRef


class SharePublic(BaseModel):
    principal: dict[str, str]
    role: str
    grantedBy: str
    grantedAt: datetime | None
    statement: str | None = None

    @classmethod
    def of(cls, share: Share, statement: str | None = None) -> SharePublic:
        return cls(
            principal={"type": share.principal_type, "id": share.principal_id},
            role=share.role,
            grantedBy=share.granted_by,
            grantedAt=share.granted_at,
            statement=statement,
        )


class ConnectionUpdate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"displayName": "my echo (renamed)", "parameters": {"api_key": "new-key"}}]
        },
    )

    displayName: str | None = Field(default=None, min_length=1, max_length=200)
    parameters: dict[str, Any] | None = None


class ConfirmOrigin(Strict):
    """Optional: the origin the owner saw and agrees to (refused if it moved again)."""

    origin: str | None = Field(default=None, min_length=1, max_length=2048)


class Offboard(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"action": "transfer", "newOwner": "00000000-0000-0000-0000-00000000c0c0"}]
        },
    )

    action: Literal["transfer", "disable"]
    newOwner: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$"
    )

    @model_validator(mode="after")
    def _new_owner(self) -> Offboard:
        if (self.action == "transfer") != (self.newOwner is not None):
            raise ValueError("newOwner is required with action transfer, and only then")
        return self


class ConnectorPublic(BaseModel):
    id: str
    name: str
    baseUrl: str
    # Native connectors: the scheme. Imported ones: see definition.authOptions.
    auth: dict[str, Any] | None
    description: str | None
    allowConnectionSharing: bool = True
    callsPerMinute: int | None = None
    traceContextPropagation: bool = True
    source: str
    owner: str
    createdAt: datetime | None
    updatedAt: datetime | None
    # Imported connectors (single-item reads): the `connectors inspect` summary.
    definition: dict[str, Any] | None = None

    # The OAuth client: id and redirect URI; the secret only as "is it set".
    oauthClient: dict[str, Any] | None = None

    @classmethod
    def of(cls, c: Connector, definition: dict[str, Any] | None = None) -> ConnectorPublic:
        client = None
        if c.oauth_client is not None:
            client = {
                "clientId": c.oauth_client.client_id,
                "clientSecretSet": c.oauth_client.secret_version is not None,
                "redirectUri": c.oauth_client.redirect_uri,
            }
        return cls(
            id=c.id,
            name=c.name,
            baseUrl=c.base_url,
            auth=c.auth.to_dict() if c.source == "native" else _imported_auth(definition),
            oauthClient=client,
            description=c.description,
            allowConnectionSharing=c.allow_connection_sharing,
            callsPerMinute=c.calls_per_minute,
            traceContextPropagation=c.propagate_trace_context,
            source=c.source,
            owner=c.owner_id,
            createdAt=c.created_at,
            updatedAt=c.updated_at,
            definition=definition,
        )


def _imported_auth(definition: dict[str, Any] | None) -> dict[str, Any]:
    """An imported connector's authentication: its definition's options (how a
    connection is made: parameter sets, OAuth, API key...). Listed where the definition
    summary is at hand (import and single reads); `null` options in lists."""
    options = definition.get("authOptions") if definition is not None else None
    return {"type": "powerplatform", "options": options}


def describe_definition(definition: ConnectorDefinition) -> dict[str, Any]:
    """The `connectors inspect` summary plus which operations can run at the gateway:
    `blockedOperations` names those an unsupported policy or custom code covers (they
    answer 501 policy_not_supported), `runnableOperations` counts the others."""
    summary = inspect_dict(definition)
    blocked: list[dict[str, str]] = []
    for operation_id in definition.operations:
        try:
            ensure_operation_supported(definition, operation_id)
        except PolicyNotSupportedError as exc:
            blocked.append({"operationId": operation_id, "reason": exc.detail})
    summary["runnableOperations"] = len(definition.operations) - len(blocked)
    summary["blockedOperations"] = blocked
    return summary


class ConnectorImport(Strict):
    """JSON form of an import: the two files' contents, parsed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "apiDefinition": {
                        "swagger": "2.0",
                        "info": {"title": "Items", "version": "1.0"},
                        "host": "api.example.com",
                        "basePath": "/",
                        "schemes": ["https"],
                        "paths": {
                            "/items": {
                                "get": {
                                    "operationId": "ListItems",
                                    "responses": {"200": {"description": "the items"}},
                                }
                            }
                        },
                    },
                    "apiProperties": {"properties": {"connectionParameters": {}}},
                    "baseUrl": "https://api.example.com",
                }
            ]
        }
    )

    apiDefinition: dict[str, Any]
    apiProperties: dict[str, Any] = Field(default_factory=dict)
    script: str | None = None
    baseUrl: str | None = Field(default=None, max_length=2048)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    # Write-only (issue 18): the secret of the definition's own OAuth client id, as
    # `paconn create --secret`; kept in the secret store, never returned.
    clientSecret: str | None = Field(default=None, min_length=1, max_length=4000, repr=False)


class OperationCall(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"parameters": {"id": "42"}, "body": {"title": "hello"}}]},
    )

    parameters: dict[str, Any] = Field(default_factory=dict)
    body: Any = None


class ConnectionCreate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"displayName": "my echo", "parameters": {"api_key": "s3cr3t-key"}}]
        },
    )

    displayName: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameterSet: str | None = Field(default=None, min_length=1, max_length=200)


class ConnectionPublic(BaseModel):
    id: str
    connectorId: str
    displayName: str
    status: str
    # Which parameters hold a value; the values themselves are never returned.
    parametersSet: list[str]
    parameterSet: str | None
    owner: str
    createdAt: datetime | None
    updatedAt: datetime | None
    # OAuth: when the current access token expires; where to consent (on create).
    tokenExpiresAt: datetime | None = None
    consentUrl: str | None = None
    # Where the credentials may be sent (scheme://host:port); status origin_changed
    # when the connector now points elsewhere (POST .../confirm-origin).
    boundOrigin: str | None = None

    @classmethod
    def of(cls, c: Connection, consent_url: str | None = None) -> ConnectionPublic:
        return cls(
            id=c.id,
            connectorId=c.connector_id,
            displayName=c.display_name,
            status=c.status.value,
            parametersSet=list(c.parameters_set),
            parameterSet=c.parameter_set,
            tokenExpiresAt=c.token_expires_at,
            consentUrl=consent_url,
            boundOrigin=c.binding.origin if c.binding else None,
            owner=c.owner_id,
            createdAt=c.created_at,
            updatedAt=c.updated_at,
        )


class ItemList(BaseModel):
    value: list[Any]
