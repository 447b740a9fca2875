"""The composition root: builds stores, clients and services from Settings.

Created once per process on ASGI startup (under Azure Functions, on the first
invocation) and closed on shutdown. Tests build one with their own Settings.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from functions.identity.tokens import TokenValidator
from functions.oauth import TableStateStore, TokenEndpointClient, TokenRefresher, default_catalog
from functions.onprem.registry import GatewayRegistry
from functions.onprem.relay import GatewayRelay
from functions.onprem.storage import services_from_settings
from functions.onprem.storage import table_service as onprem_table_service
from functions.services.connections import ConnectionService
from functions.services.connectors import ConnectorService
from functions.services.invocation import InvocationService
from functions.services.oauth import OAuthService
from functions.settings import Settings
from functions.stores.audit import AuditLog
from functions.stores.definitions import DefinitionStore
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.secrets.factory import build_secret_store
from functions.stores.shares import ShareStore
from functions.stores.tables import MetadataStore, build_table_service
from functions.upstream.resolve import ResolvingTransport, parse_overrides


def _upstream_tls(settings: Settings) -> ssl.SSLContext:
    """System trust store, plus the extra CA file if configured."""
    context = ssl.create_default_context()
    if settings.upstream_ca_file:
        context.load_verify_locations(cafile=settings.upstream_ca_file)
    return context


def _msal_session_factory(settings: Settings) -> Callable[[], Any] | None:
    """msal uses `requests`; with an extra upstream CA, give it a session that trusts
    the system bundle plus that CA (and ignores REQUESTS_CA_BUNDLE)."""
    if not settings.upstream_ca_file:
        return None
    import certifi

    bundle = Path(tempfile.gettempdir()) / f"connector-gateway-ca-{os.getpid()}.pem"
    bundle.write_text(
        Path(certifi.where()).read_text() + "\n" + Path(settings.upstream_ca_file).read_text()
    )

    def make() -> Any:
        import requests

        session = requests.Session()
        session.trust_env = False
        session.verify = str(bundle)
        return session

    return make


@dataclass
class Gateway:
    settings: Settings
    http: httpx.AsyncClient
    metadata: MetadataStore
    secrets: CachedSecretStore
    tokens: TokenValidator
    connectors: ConnectorService
    connections: ConnectionService
    oauth: OAuthService
    invocations: InvocationService
    shares: ShareStore
    audit: AuditLog
    onprem_registry: GatewayRegistry
    onprem_relay: GatewayRelay

    @classmethod
    async def start(cls, settings: Settings) -> Gateway:
        timeout = httpx.Timeout(
            settings.upstream_timeout_seconds, connect=min(10.0, settings.upstream_timeout_seconds)
        )
        # One pooled client for all upstream calls. trust_env=False: upstream calls
        # must not be diverted by ambient proxy variables.
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
            verify=_upstream_tls(settings), limits=limits, trust_env=False
        )
        if settings.dev_upstream_resolve:
            transport = ResolvingTransport(
                transport, parse_overrides(settings.dev_upstream_resolve)
            )
        http = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
        )
        tables = build_table_service(settings)
        metadata = MetadataStore(tables, settings.table_prefix)
        await metadata.ensure_tables()
        definitions = DefinitionStore(tables, settings.table_prefix)
        await definitions.ensure_table()
        states = TableStateStore(tables, settings.table_prefix)
        await states.ensure_table()
        shares = ShareStore(tables, settings.table_prefix)
        await shares.ensure_table()
        audit = AuditLog(tables, settings.table_prefix)
        await audit.ensure_table()
        audit.start()
        # The on-premises relay keeps its own storage clients: short retries keep
        # `gateway_offline` and `relay_unavailable` answers fast.
        onprem_registry = GatewayRegistry(
            onprem_table_service(settings.storage_connection_string, settings.table_endpoint),
            settings.table_prefix,
        )
        await onprem_registry.ensure_tables()
        queues, blobs = services_from_settings(settings)
        onprem_relay = GatewayRelay(
            queues,
            blobs,
            onprem_registry,
            settings.table_prefix,
            max_body_bytes=settings.max_request_bytes,
        )
        secrets = build_secret_store(settings)
        tokens = TokenValidator.from_settings(settings)
        catalog = default_catalog()
        connectors = ConnectorService(
            metadata,
            definitions,
            secrets,
            catalog,
            shares,
            cache_seconds=settings.metadata_cache_seconds,
            public_base_url=settings.public_base_url,
            audience=settings.audiences[0],
        )
        # One token client and one refresher per process: the refresher's single flight
        # and cooldowns are per process by design (the lease handles other instances).
        token_client = TokenEndpointClient(http, msal_http_client=_msal_session_factory(settings))
        oauth = OAuthService(
            metadata,
            secrets,
            connectors,
            states,
            token_client,
            TokenRefresher(token_client),
            catalog,
            http,
            audit,
            public_base_url=settings.public_base_url,
        )
        connections = ConnectionService(
            metadata,
            secrets,
            connectors,
            oauth,
            shares,
            audit,
            onprem_registry,
            cache_seconds=settings.metadata_cache_seconds,
            admin_role=settings.admin_role,
            admin_groups=settings.admin_group_ids,
        )
        return cls(
            settings=settings,
            http=http,
            metadata=metadata,
            secrets=secrets,
            tokens=tokens,
            connectors=connectors,
            connections=connections,
            oauth=oauth,
            invocations=InvocationService(
                connections,
                oauth,
                http,
                audit,
                onprem_relay,
                relay_timeout=settings.upstream_timeout_seconds,
            ),
            onprem_registry=onprem_registry,
            onprem_relay=onprem_relay,
            shares=shares,
            audit=audit,
        )

    async def close(self) -> None:
        await self.audit.close()
        await self.onprem_relay.close()
        self.onprem_registry.close()
        await self.http.aclose()
        self.metadata.close()
        self.secrets.close()
