"""Gateway settings, read from environment variables.

The names are the same in `local.settings.sample.json` (loaded into the environment by
the local runner, as the Functions tooling does) and in the Bicep app settings. A test
in `tests/` cross-checks the three. Development-only settings are refused outside
development, so a misconfigured production app fails at startup instead of running
with a local key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from functions.errors import ConfigurationError

Environment = Literal["development", "production"]
SecretBackend = Literal["keyvault", "local"]

# Every environment variable the gateway reads. Keep in step with
# local.settings.sample.json and infra/ (a test checks both).
SETTING_NAMES: tuple[str, ...] = (
    "GATEWAY_ENVIRONMENT",
    "GATEWAY_STORAGE_CONNECTION_STRING",
    "GATEWAY_TABLE_ENDPOINT",
    "GATEWAY_QUEUE_ENDPOINT",
    "GATEWAY_BLOB_ENDPOINT",
    "GATEWAY_TABLE_PREFIX",
    "GATEWAY_SECRET_STORE",
    "GATEWAY_KEY_VAULT_URL",
    "GATEWAY_KEY_VAULT_CA_FILE",
    "GATEWAY_LOCAL_SECRET_KEY",
    "GATEWAY_LOCAL_SECRETS_DIR",
    "GATEWAY_AUTH_TENANT_IDS",
    "GATEWAY_AUTH_AUDIENCES",
    "GATEWAY_AUTH_JWKS_URL",
    "GATEWAY_DEV_ISSUER_PRIVATE_KEY",
    "GATEWAY_METADATA_CACHE_SECONDS",
    "GATEWAY_UPSTREAM_TIMEOUT_SECONDS",
    "GATEWAY_UPSTREAM_CA_FILE",
    "GATEWAY_DEV_UPSTREAM_RESOLVE",
    "GATEWAY_MAX_REQUEST_BYTES",
    "GATEWAY_PUBLIC_BASE_URL",
    "GATEWAY_ADMIN_ROLE",
    "GATEWAY_ADMIN_GROUP_IDS",
    "GATEWAY_EGRESS_ALLOW",
    "GATEWAY_EGRESS_ALLOW_LOOPBACK",
    "GATEWAY_UPSTREAM_DEADLINE_SECONDS",
    "GATEWAY_UPSTREAM_CONNECTIONS_PER_HOST",
    "GATEWAY_CONNECTION_CALLS_PER_MINUTE",
    "GATEWAY_CONNECTION_MAX_CONCURRENT",
    "GATEWAY_MAX_RESPONSE_BYTES",
    # issue 20: read by function_app.py's wrapper only (functions/api/buffered_host.py)
    "GATEWAY_BUFFERED_RESPONSE_LIMIT_BYTES",
    # issue 16: the portal and connect links
    "GATEWAY_CONNECT_RETURN_ORIGINS",
    "GATEWAY_CONNECT_FRAME_ANCESTORS",
    "GATEWAY_PORTAL_CLIENT_ID",
    "GATEWAY_PORTAL_API_SCOPE",
    "GATEWAY_STORAGE_TIMEOUT_SECONDS",
    "GATEWAY_MAX_DEFINITION_BYTES",
    "GATEWAY_MAX_DEFINITION_OPERATIONS",
    "GATEWAY_ONPREM_HEARTBEAT_SECONDS",
)

# Read by the command-line clients (`python -m functions connectors import`), not by the
# gateway: where the gateway is and which token to call it with.
CLIENT_ENVIRONMENT_NAMES: tuple[str, ...] = (
    "GATEWAY_URL",
    "GATEWAY_TOKEN",
    # The on-premises agent's own settings (it runs inside the private network).
    "GATEWAY_AGENT_HOME",
    "GATEWAY_AGENT_STORAGE_CONNECTION_STRING",
)

DEFAULT_JWKS_URL = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
# Issuer of tokens minted by `python -m functions token`. The `.invalid` top-level
# domain (RFC 2606) guarantees it can never be a real issuer.
DEV_ISSUER_TEMPLATE = "https://dev-issuer.connector-gateway.invalid/{tenant}/v2.0"
DEV_TENANT_ID = "00000000-0000-4000-8000-00000000d0e0"
DEV_AUDIENCE = "api://connector-gateway-dev"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _flag(name: str, get: Callable[[str], str | None]) -> bool:
    raw = (get(name) or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ConfigurationError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1")


@dataclass(frozen=True)
class Settings:
    """Validated gateway configuration. Build with `Settings.from_env()`."""

    environment: Environment = "development"
    storage_connection_string: str | None = None
    table_endpoint: str | None = None
    # On-premises relay (Windows authentication): queues and a blob container.
    queue_endpoint: str | None = None
    blob_endpoint: str | None = None
    table_prefix: str = ""
    secret_backend: SecretBackend = "local"
    key_vault_url: str | None = None
    key_vault_ca_file: str | None = None
    local_secret_key: str | None = field(default=None, repr=False)
    local_secrets_dir: str = ".localdata/secrets"
    tenant_ids: tuple[str, ...] = (DEV_TENANT_ID,)
    audiences: tuple[str, ...] = (DEV_AUDIENCE,)
    jwks_url: str = DEFAULT_JWKS_URL
    dev_issuer_private_key: str | None = field(default=None, repr=False)
    metadata_cache_seconds: float = 15.0
    upstream_timeout_seconds: float = 30.0
    # Extra CA certificates (PEM) trusted for upstream TLS, besides the system's:
    # in-house APIs often use a private CA.
    upstream_ca_file: str | None = None
    # Development only: host:port=address:port overrides for upstream calls.
    dev_upstream_resolve: str | None = None
    max_request_bytes: int = 16 * 1024 * 1024
    public_base_url: str | None = None
    # Gateway administrators: callers with this app role, or in one of these groups.
    admin_role: str = "Gateway.Admin"
    admin_group_ids: tuple[str, ...] = ()
    # Issue 12, outbound address policy (functions/upstream/egress.py): extra allowed
    # destinations (CIDRs, host:port), and loopback for development only.
    egress_allow: tuple[str, ...] = ()
    egress_allow_loopback: bool = False
    # Total time for one upstream call, response headers and body together.
    upstream_deadline_seconds: float = 120.0
    # Sockets one upstream host may hold from the shared pool (of 200).
    upstream_connections_per_host: int = 50
    # Per connection and per instance: calls a minute (Power Platform's limit is 500)
    # and calls in flight at once.
    connection_calls_per_minute: int = 500
    connection_max_concurrent: int = 50
    # Largest decoded upstream body the gateway reads whole (response policies).
    max_response_bytes: int = 10 * 1024 * 1024
    # issue 16. Connect links may send people back only to these origins.
    connect_return_origins: tuple[str, ...] = ()
    # Origins that may embed the connect page in a frame (none: no embedding).
    connect_frame_ancestors: tuple[str, ...] = ()
    # The portal's Entra ID sign-in: its SPA app registration and the API scope it asks for.
    portal_client_id: str | None = None
    portal_api_scope: str | None = None
    # Issue 12 (control plane). Bound on every Table Storage call (connect and read
    # timeouts of the SDK client, and the whole call): a frozen backend answers 503
    # `storage_timeout` after this long instead of hanging management calls.
    storage_timeout_seconds: float = 10.0
    # Imported Power Platform definitions: the request's size and the operation count.
    max_definition_bytes: int = 2 * 1024 * 1024
    max_definition_operations: int = 1000
    # On-premises agents: an agent that has not sent a heartbeat for this long is offline.
    onprem_heartbeat_seconds: float = 10.0

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
            if value <= 0:
                raise ConfigurationError(f"{name} must be positive, got {raw!r}")
            return value

        environment = get("GATEWAY_ENVIRONMENT") or "production"
        if environment not in ("development", "production"):
            raise ConfigurationError(
                f"GATEWAY_ENVIRONMENT must be 'development' or 'production', got {environment!r}"
            )
        secret_backend = get("GATEWAY_SECRET_STORE") or (
            "local" if environment == "development" else "keyvault"
        )
        if secret_backend not in ("keyvault", "local"):
            raise ConfigurationError(
                f"GATEWAY_SECRET_STORE must be 'keyvault' or 'local', got {secret_backend!r}"
            )
        tenants = _split(get("GATEWAY_AUTH_TENANT_IDS") or "")
        audiences = _split(get("GATEWAY_AUTH_AUDIENCES") or "")
        settings = cls(
            environment=environment,  # type: ignore[arg-type]
            storage_connection_string=get("GATEWAY_STORAGE_CONNECTION_STRING"),
            table_endpoint=get("GATEWAY_TABLE_ENDPOINT"),
            queue_endpoint=get("GATEWAY_QUEUE_ENDPOINT"),
            blob_endpoint=get("GATEWAY_BLOB_ENDPOINT"),
            table_prefix=get("GATEWAY_TABLE_PREFIX") or "",
            secret_backend=secret_backend,  # type: ignore[arg-type]
            key_vault_url=get("GATEWAY_KEY_VAULT_URL"),
            key_vault_ca_file=get("GATEWAY_KEY_VAULT_CA_FILE"),
            local_secret_key=get("GATEWAY_LOCAL_SECRET_KEY"),
            local_secrets_dir=get("GATEWAY_LOCAL_SECRETS_DIR") or ".localdata/secrets",
            tenant_ids=tenants or ((DEV_TENANT_ID,) if environment == "development" else ()),
            audiences=audiences or ((DEV_AUDIENCE,) if environment == "development" else ()),
            jwks_url=get("GATEWAY_AUTH_JWKS_URL") or DEFAULT_JWKS_URL,
            dev_issuer_private_key=get("GATEWAY_DEV_ISSUER_PRIVATE_KEY"),
            metadata_cache_seconds=number("GATEWAY_METADATA_CACHE_SECONDS", 15.0),
            upstream_timeout_seconds=number("GATEWAY_UPSTREAM_TIMEOUT_SECONDS", 30.0),
            upstream_ca_file=get("GATEWAY_UPSTREAM_CA_FILE"),
            dev_upstream_resolve=get("GATEWAY_DEV_UPSTREAM_RESOLVE"),
            max_request_bytes=int(number("GATEWAY_MAX_REQUEST_BYTES", 16 * 1024 * 1024)),
            public_base_url=get("GATEWAY_PUBLIC_BASE_URL"),
            admin_role=get("GATEWAY_ADMIN_ROLE") or "Gateway.Admin",
            admin_group_ids=_split(get("GATEWAY_ADMIN_GROUP_IDS") or ""),
            egress_allow=_split(get("GATEWAY_EGRESS_ALLOW") or ""),
            egress_allow_loopback=_flag("GATEWAY_EGRESS_ALLOW_LOOPBACK", get),
            upstream_deadline_seconds=number("GATEWAY_UPSTREAM_DEADLINE_SECONDS", 120.0),
            upstream_connections_per_host=int(number("GATEWAY_UPSTREAM_CONNECTIONS_PER_HOST", 50)),
            connection_calls_per_minute=int(number("GATEWAY_CONNECTION_CALLS_PER_MINUTE", 500)),
            connection_max_concurrent=int(number("GATEWAY_CONNECTION_MAX_CONCURRENT", 50)),
            max_response_bytes=int(number("GATEWAY_MAX_RESPONSE_BYTES", 10 * 1024 * 1024)),
            connect_return_origins=_split(get("GATEWAY_CONNECT_RETURN_ORIGINS") or ""),
            connect_frame_ancestors=_split(get("GATEWAY_CONNECT_FRAME_ANCESTORS") or ""),
            portal_client_id=get("GATEWAY_PORTAL_CLIENT_ID"),
            portal_api_scope=get("GATEWAY_PORTAL_API_SCOPE"),
            storage_timeout_seconds=number("GATEWAY_STORAGE_TIMEOUT_SECONDS", 10.0),
            max_definition_bytes=int(number("GATEWAY_MAX_DEFINITION_BYTES", 2 * 1024 * 1024)),
            max_definition_operations=int(number("GATEWAY_MAX_DEFINITION_OPERATIONS", 1000)),
            onprem_heartbeat_seconds=number("GATEWAY_ONPREM_HEARTBEAT_SECONDS", 10.0),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse combinations that would be insecure or cannot work."""
        if not self.is_development:
            if self.secret_backend == "local":
                raise ConfigurationError(
                    "the local secret store is for development only; "
                    "set GATEWAY_SECRET_STORE=keyvault and GATEWAY_KEY_VAULT_URL"
                )
            if self.dev_issuer_private_key:
                raise ConfigurationError(
                    "GATEWAY_DEV_ISSUER_PRIVATE_KEY is for development only; remove it"
                )
            if self.egress_allow_loopback:
                raise ConfigurationError(
                    "GATEWAY_EGRESS_ALLOW_LOOPBACK is for development only; remove it (an admin "
                    "who must reach a loopback address lists it in GATEWAY_EGRESS_ALLOW)"
                )
            if self.dev_upstream_resolve:
                raise ConfigurationError(
                    "GATEWAY_DEV_UPSTREAM_RESOLVE is for development only; remove it"
                )
            if self.storage_connection_string and "AccountKey=" in self.storage_connection_string:
                raise ConfigurationError(
                    "account keys are not accepted outside development; "
                    "set GATEWAY_TABLE_ENDPOINT and use a managed identity"
                )
        from functions.upstream.egress import parse_allow_entry  # raises ConfigurationError

        for entry in self.egress_allow:
            parse_allow_entry(entry)
        if not (self.storage_connection_string or self.table_endpoint):
            raise ConfigurationError(
                "set GATEWAY_TABLE_ENDPOINT (Azure) or GATEWAY_STORAGE_CONNECTION_STRING (Azurite)"
            )
        if not self.storage_connection_string and not (self.queue_endpoint and self.blob_endpoint):
            raise ConfigurationError(
                "set GATEWAY_QUEUE_ENDPOINT and GATEWAY_BLOB_ENDPOINT (the on-premises relay's "
                "queues and blobs) or GATEWAY_STORAGE_CONNECTION_STRING (Azurite)"
            )
        if self.secret_backend == "keyvault" and not self.key_vault_url:
            raise ConfigurationError("GATEWAY_SECRET_STORE=keyvault needs GATEWAY_KEY_VAULT_URL")
        if self.secret_backend == "local" and not self.local_secret_key:
            raise ConfigurationError("GATEWAY_SECRET_STORE=local needs GATEWAY_LOCAL_SECRET_KEY")
        if not self.tenant_ids:
            raise ConfigurationError("GATEWAY_AUTH_TENANT_IDS must name at least one tenant")
        if not self.audiences:
            raise ConfigurationError("GATEWAY_AUTH_AUDIENCES must name at least one audience")
        for name, origins in (
            ("GATEWAY_CONNECT_RETURN_ORIGINS", self.connect_return_origins),
            ("GATEWAY_CONNECT_FRAME_ANCESTORS", self.connect_frame_ancestors),
        ):
            for origin in origins:
                if not _is_origin(origin):
                    raise ConfigurationError(
                        f"{name}: {origin!r} is not an origin (scheme://host[:port], no path)"
                    )


def _is_origin(value: str) -> bool:
    """`scheme://host[:port]` with http(s), nothing after: what a browser calls an origin."""
    parts = urlsplit(value)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path == ""
        and not parts.query
        and not parts.fragment
        and parts.username is None
        and value == f"{parts.scheme}://{parts.netloc}"
    )
