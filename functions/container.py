"""The composition root: builds stores, clients and services from Settings.

Created once per process on ASGI startup (under Azure Functions, on the first
invocation) and closed on shutdown. Tests build one with their own Settings.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import httpx

from functions.identity.tokens import TokenValidator
from functions.services.connections import ConnectionService
from functions.services.connectors import ConnectorService
from functions.services.invocation import InvocationService
from functions.settings import Settings
from functions.stores.definitions import DefinitionStore
from functions.upstream.resolve import ResolvingTransport, parse_overrides
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.secrets.factory import build_secret_store
from functions.stores.tables import MetadataStore, build_table_service


def _upstream_tls(settings: Settings) -> ssl.SSLContext:
    """System trust store, plus the extra CA file if configured."""
    context = ssl.create_default_context()
    if settings.upstream_ca_file:
        context.load_verify_locations(cafile=settings.upstream_ca_file)
    return context


@dataclass
class Gateway:
    settings: Settings
    http: httpx.AsyncClient
    metadata: MetadataStore
    secrets: CachedSecretStore
    tokens: TokenValidator
    connectors: ConnectorService
    connections: ConnectionService
    invocations: InvocationService

    @classmethod
    async def start(cls, settings: Settings) -> Gateway:
        timeout = httpx.Timeout(settings.upstream_timeout_seconds, connect=min(10.0, settings.upstream_timeout_seconds))
        # One pooled client for all upstream calls. trust_env=False: upstream calls
        # must not be diverted by ambient proxy variables.
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
            verify=_upstream_tls(settings), limits=limits, trust_env=False
        )
        if settings.dev_upstream_resolve:
            transport = ResolvingTransport(transport, parse_overrides(settings.dev_upstream_resolve))
        http = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
        )
        tables = build_table_service(settings)
        metadata = MetadataStore(tables, settings.table_prefix)
        await metadata.ensure_tables()
        definitions = DefinitionStore(tables, settings.table_prefix)
        await definitions.ensure_table()
        secrets = build_secret_store(settings)
        tokens = TokenValidator.from_settings(settings)
        connectors = ConnectorService(
            metadata,
            definitions,
            cache_seconds=settings.metadata_cache_seconds,
            public_base_url=settings.public_base_url,
            audience=settings.audiences[0],
        )
        connections = ConnectionService(
            metadata, secrets, connectors, cache_seconds=settings.metadata_cache_seconds
        )
        return cls(
            settings=settings,
            http=http,
            metadata=metadata,
            secrets=secrets,
            tokens=tokens,
            connectors=connectors,
            connections=connections,
            invocations=InvocationService(connections, http),
        )

    async def close(self) -> None:
        await self.http.aclose()
        self.metadata.close()
        self.secrets.close()
