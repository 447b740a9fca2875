"""Request and response shapes, named by purpose. Unknown fields are refused."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.domain.models import AuthScheme, Connection, Connector, OAuthScheme, Share
from functions.services.connectors import OAuthClientInput

# RFC 9110 token: what a header name may contain.
HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"


class Strict(BaseModel):
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
    clientId: str = Field(min_length=1, max_length=500)
    clientSecret: str | None = Field(default=None, min_length=1, max_length=4000)
    redirectUri: str | None = Field(default=None, max_length=2048)


class ConnectorCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    baseUrl: str = Field(min_length=1, max_length=2048)
    auth: AuthInput = Field(default_factory=lambda: AuthNone(type="none"))
    description: str | None = Field(default=None, max_length=4000)
    # May connections to this connector be shared (callers acting with the owner's
    # credentials)? Power Platform definitions can also forbid it per parameter set.
    allowConnectionSharing: bool = True
    # Send W3C `traceparent` to the upstream when tracing is on (issue 19).
    traceContextPropagation: bool = True


class PrincipalRef(Strict):
    type: Literal["user", "group", "app"]
    # Object id (users, groups, apps) or client id (apps).
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")


class ConnectorShareCreate(Strict):
    principal: PrincipalRef
    role: Literal["user", "owner"] = "user"


class ConnectionShareCreate(Strict):
    principal: PrincipalRef


class ShareDelete(Strict):
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
    displayName: str | None = Field(default=None, min_length=1, max_length=200)
    parameters: dict[str, Any] | None = None


class Offboard(Strict):
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
            auth=c.auth.to_dict() if c.source == "native" else None,
            oauthClient=client,
            description=c.description,
            allowConnectionSharing=c.allow_connection_sharing,
            traceContextPropagation=c.propagate_trace_context,
            source=c.source,
            owner=c.owner_id,
            createdAt=c.created_at,
            updatedAt=c.updated_at,
            definition=definition,
        )


class ConnectorImport(Strict):
    """JSON form of an import: the two files' contents, parsed."""

    apiDefinition: dict[str, Any]
    apiProperties: dict[str, Any] = Field(default_factory=dict)
    script: str | None = None
    baseUrl: str | None = Field(default=None, max_length=2048)
    name: str | None = Field(default=None, min_length=1, max_length=200)


class OperationCall(Strict):
    parameters: dict[str, Any] = Field(default_factory=dict)
    body: Any = None


class ConnectionCreate(Strict):
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
            owner=c.owner_id,
            createdAt=c.created_at,
            updatedAt=c.updated_at,
        )


class ItemList(BaseModel):
    value: list[Any]
