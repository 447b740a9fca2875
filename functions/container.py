"""The composition root: builds stores, clients and services from Settings.

Created once per process on ASGI startup (under Azure Functions, on the first
invocation) and closed on shutdown. Tests build one with their own Settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from functions.identity.tokens import TokenValidator
from functions.services.connections import ConnectionService
from functions.services.connectors import ConnectorService
from functions.services.invocation import InvocationService
from functions.settings import Settings
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.secrets.factory import build_secret_store
from functions.stores.tables import MetadataStore, build_table_service


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
        http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        metadata = MetadataStore(build_table_service(settings), settings.table_prefix)
        await metadata.ensure_tables()
        secrets = build_secret_store(settings)
        tokens = TokenValidator.from_settings(settings)
        connectors = ConnectorService(metadata)
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
