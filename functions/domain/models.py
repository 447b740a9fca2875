"""Connectors and connections as plain records.

A connector describes an API (base URL, authentication scheme). A connection is one
user's credentials for one connector; the credentials live in the secret store under
`secret_name`, and the record only says which parameters are set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

AuthType = Literal["none", "basic", "apiKey"]
ConnectorSource = Literal["native", "powerplatform"]
ApiKeyLocation = Literal["header", "query"]


class ConnectionStatus(StrEnum):
    # Metadata written, secret not yet confirmed: never usable. Cleanup removes
    # pending rows older than a few minutes (a crash mid-create).
    PENDING = "pending"
    CONNECTED = "connected"
    # Delete started: never usable again; a repeated delete or cleanup finishes it.
    DELETING = "deleting"


@dataclass(frozen=True)
class AuthScheme:
    """How the gateway authenticates to the upstream API."""

    type: AuthType = "none"
    api_key_in: ApiKeyLocation | None = None
    api_key_name: str | None = None

    def secret_parameters(self) -> tuple[str, ...]:
        """Connection parameters that are credentials (stored only in the secret store)."""
        if self.type == "basic":
            return ("password",)
        if self.type == "apiKey":
            return ("api_key",)
        return ()

    def required_parameters(self) -> tuple[str, ...]:
        if self.type == "basic":
            return ("username", "password")
        if self.type == "apiKey":
            return ("api_key",)
        return ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.type == "apiKey":
            data["in"] = self.api_key_in
            data["name"] = self.api_key_name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthScheme:
        return cls(type=data["type"], api_key_in=data.get("in"), api_key_name=data.get("name"))


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
    created_at: datetime | None = None
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)

    @property
    def usable(self) -> bool:
        return self.status == ConnectionStatus.CONNECTED and self.secret_version is not None
