"""Connectors and connections as plain records.

A connector describes an API (base URL, authentication scheme). A connection is one
user's credentials for one connector; the credentials live in the secret store under
`secret_name`, and the record only says which parameters are set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

AuthType = Literal["none", "basic", "apiKey", "oauth2", "windows"]
# "anonymous": relayed by an on-premises agent without Windows authentication.
WindowsProtocol = Literal["negotiate", "ntlm", "anonymous"]
OAuthGrant = Literal["authorization_code", "client_credentials"]
ConnectorSource = Literal["native", "powerplatform"]
ApiKeyLocation = Literal["header", "query"]


class ConnectionStatus(StrEnum):
    # Metadata written, secret not yet confirmed: never usable. Cleanup removes
    # pending rows older than a few minutes (a crash mid-create).
    PENDING = "pending"
    CONNECTED = "connected"
    # Delete started: never usable again; a repeated delete or cleanup finishes it.
    DELETING = "deleting"
    # OAuth: created, waiting for the user's consent (callback).
    CONSENT_REQUIRED = "consent_required"
    # OAuth: the grant is dead (revoked, invalid_grant); only a new consent fixes it.
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    # Switched off by an admin (e.g. its owner left): visible, never usable.
    DISABLED = "disabled"
    # The connector's origin or credential injection changed after the owner entered
    # the credentials: nothing is sent until the owner confirms (confirm-origin).
    ORIGIN_CHANGED = "origin_changed"


ShareRole = Literal["user", "owner", "invoke"]
PrincipalType = Literal["user", "group", "app"]


@dataclass(frozen=True)
class Share:
    """A grant on a connector (role `user` or `owner`) or a connection (role `invoke`)."""

    tenant_id: str
    resource_type: Literal["connector", "connection"]
    resource_id: str
    principal_type: PrincipalType
    principal_id: str
    role: ShareRole
    granted_by: str
    granted_at: datetime | None = None

    @property
    def subject(self) -> str:
        return f"{self.principal_type}:{self.principal_id}"


@dataclass(frozen=True)
class OAuthScheme:
    """OAuth 2.0 for a native connector: a catalog provider and its settings."""

    provider: str
    scopes: tuple[str, ...] = ()
    # Provider settings from the catalog (e.g. tenant, issuer, token_url), as pairs so
    # the scheme stays hashable and comparable.
    settings: tuple[tuple[str, str], ...] = ()
    grant: OAuthGrant = "authorization_code"

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "scopes": list(self.scopes),
            "settings": dict(self.settings),
            "grant": self.grant,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OAuthScheme:
        return cls(
            provider=data["provider"],
            scopes=tuple(data.get("scopes") or ()),
            settings=tuple(sorted((data.get("settings") or {}).items())),
            grant=data.get("grant") or "authorization_code",
        )


@dataclass(frozen=True)
class OAuthClientConfig:
    """The connector's OAuth client. The secret lives in the secret store under
    `connector-{connector id}`; only its version is recorded here."""

    client_id: str
    secret_version: str | None = None
    # Per-connector redirect URI; None: the gateway's fixed one.
    redirect_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "secretVersion": self.secret_version,
            "redirectUri": self.redirect_uri,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OAuthClientConfig:
        return cls(data["clientId"], data.get("secretVersion"), data.get("redirectUri"))


@dataclass(frozen=True)
class AuthScheme:
    """How the gateway authenticates to the upstream API."""

    type: AuthType = "none"
    api_key_in: ApiKeyLocation | None = None
    api_key_name: str | None = None
    oauth: OAuthScheme | None = None
    # Windows authentication through an on-premises gateway agent.
    windows_protocol: WindowsProtocol | None = None

    def secret_parameters(self) -> tuple[str, ...]:
        """Connection parameters that are credentials (stored only in the secret store)."""
        if self.type in ("basic", "windows"):
            return ("username", "password")
        if self.type == "apiKey":
            return ("api_key",)
        return ()

    def required_parameters(self) -> tuple[str, ...]:
        if self.type == "basic":
            return ("username", "password")
        if self.type == "windows":
            return ("gatewayId", "username", "password")
        if self.type == "apiKey":
            return ("api_key",)
        return ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.type == "apiKey":
            data["in"] = self.api_key_in
            data["name"] = self.api_key_name
        if self.type == "oauth2" and self.oauth is not None:
            data.update(self.oauth.to_dict())
        if self.type == "windows":
            data["protocol"] = self.windows_protocol or "negotiate"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthScheme:
        oauth = OAuthScheme.from_dict(data) if data["type"] == "oauth2" else None
        return cls(
            type=data["type"],
            api_key_in=data.get("in"),
            api_key_name=data.get("name"),
            oauth=oauth,
            windows_protocol=data.get("protocol") if data["type"] == "windows" else None,
        )


@dataclass
class Connector:
    id: str
    tenant_id: str
    owner_id: str
    name: str
    base_url: str
    # Native connectors: the scheme. Imported ones: "none" here; each connection's
    # parameter set (in the stored definition) says how it authenticates.
    auth: AuthScheme
    description: str | None = None
    # "powerplatform": an imported definition pair is stored (stores/definitions.py).
    source: ConnectorSource = "native"
    oauth_client: OAuthClientConfig | None = None
    # Whether connections to this connector may be shared (native connectors; imported
    # ones follow their parameter sets' `allowSharing`).
    allow_connection_sharing: bool = True
    # Calls a minute per connection of this connector (per gateway instance); None is
    # the gateway's GATEWAY_CONNECTION_CALLS_PER_MINUTE (issue 12).
    calls_per_minute: int | None = None
    # Send W3C `traceparent` upstream when tracing is on (issue 19); off for APIs that
    # reject unknown headers or must not learn the gateway's trace ids.
    propagate_trace_context: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)


@dataclass
class Connection:
    id: str
    tenant_id: str
    connector_id: str
    owner_id: str
    display_name: str
    status: ConnectionStatus
    secret_name: str
    # Version of the secret holding this connection's credentials; None until written.
    secret_version: str | None = None
    # Names of the parameters that are set (secret values live in the secret store).
    parameters_set: tuple[str, ...] = ()
    # Imported connectors: the chosen parameter set, and the non-secret parameter
    # values (hosts, regions, tenant ids), which are metadata by the definition's word.
    parameter_set: str | None = None
    plain_parameters: dict[str, Any] = field(default_factory=dict)
    # OAuth: when the current access token expires (written by the token store).
    token_expires_at: datetime | None = None
    # Where the credentials may go: the connector's binding when its owner entered or
    # confirmed them (see CredentialBinding). None: a row written before bindings were
    # stored; the connector's binding at first read becomes its binding.
    binding: CredentialBinding | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)

    @property
    def usable(self) -> bool:
        return self.status == ConnectionStatus.CONNECTED and self.secret_version is not None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """`scheme://host:port` of an absolute URL, lower-cased, with the port explicit:
    `https://API.example.com/v1` and `https://api.example.com:443/v2` are one origin."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class CredentialBinding:
    """What a connection's credentials were entered for: the connector's origin and how
    the credential is injected. A connector change that alters either must not carry
    other users' credentials along without their consent (issue 12)."""

    origin: str
    # A stable text of the injection: the native scheme (type, API key location and
    # name, Windows protocol, OAuth provider); imported connectors inject per their
    # stored definition, which cannot change after import.
    injection: str

    @classmethod
    def of(cls, connector: Connector) -> CredentialBinding:
        if connector.source == "native":
            injection = json.dumps(connector.auth.to_dict(), sort_keys=True)
        else:
            injection = f"definition:{connector.source}"
        return cls(origin_of(connector.base_url), injection)
