"""Shared helpers for the OAuth tests (importable by spawned worker processes)."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from azure.data.tables import TableClient, TableServiceClient

from functions.oauth import (
    OAuthClient,
    ResolvedProvider,
    TableStateStore,
    TokenEndpointClient,
    TokenRefresher,
    TokenSet,
    default_catalog,
    finish_consent,
    start_consent,
)
from functions.oauth.table_store import TableConnectionTokenStore
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.secrets.local import LocalSecretStore

TENANT = "tenant-1"
USER = "user-alice"


@dataclass
class Env:
    """What a test (or worker process) needs to talk to storage and the provider."""

    connection_string: str
    prefix: str
    secrets_dir: str
    secrets_key: str
    ca_file: str
    issuer: str

    def table_service(self) -> TableServiceClient:
        return TableServiceClient.from_connection_string(self.connection_string)

    def connections(self) -> TableClient:
        return self.table_service().get_table_client(f"{self.prefix}connections")

    def secret_store(self) -> CachedSecretStore:
        return CachedSecretStore(LocalSecretStore(self.secrets_dir, self.secrets_key))

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=self.ca_file), trust_env=False, timeout=10.0
        )

    def token_store(
        self,
        connection_id: str,
        table: TableClient | None = None,
        secrets_: CachedSecretStore | None = None,
    ) -> TableConnectionTokenStore:
        return TableConnectionTokenStore(
            table or self.connections(), secrets_ or self.secret_store(), TENANT, connection_id
        )


def new_connection(env: Env) -> str:
    """A connection row with no tokens yet (what connection creation writes)."""
    connection_id = secrets.token_hex(8)
    env.connections().create_entity(
        {
            "PartitionKey": TENANT,
            "RowKey": connection_id,
            "SecretName": f"conn-{connection_id}",
            "Status": "consent_required",
        }
    )
    return connection_id


async def oidc_provider(env: Env, http: httpx.AsyncClient) -> ResolvedProvider:
    return await default_catalog().resolve("generic-oidc", {"issuer": env.issuer}, http=http)


async def connect(
    env: Env, oidc: Any, http: httpx.AsyncClient, client: OAuthClient, redirect_uri: str
) -> tuple[str, TableConnectionTokenStore, TokenSet]:
    """Create a connection and run consent + callback end to end; return its store."""
    provider = await oidc_provider(env, http)
    states = TableStateStore(env.table_service(), env.prefix)
    await states.ensure_table()
    connection_id = new_connection(env)
    consent = await start_consent(
        provider,
        client,
        states,
        tenant_id=TENANT,
        connection_id=connection_id,
        user_id=USER,
        redirect_uri=redirect_uri,
    )
    result = await asyncio.to_thread(oidc.authorize, consent.url)
    assert result.code and result.state
    record = await states.consume(result.state)
    tokens = await finish_consent(
        record, provider, client, TokenEndpointClient(http), code=result.code
    )
    store = env.token_store(connection_id)
    await store.store_consent(tokens, f"conn-{connection_id}")
    return connection_id, store, tokens


async def expire_now(store: TableConnectionTokenStore) -> TokenSet:
    """Rewrite the stored access token as already expired (as if time had passed)."""
    current = await store.read_current()
    assert current.tokens is not None
    expired = replace(current.tokens, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await store.store_consent(expired, f"conn-{store.row_key}")
    return expired


def refresh_worker(
    env: Env, client: OAuthClient, connection_id: str, calls: int, barrier: Any, results: Any
) -> None:
    """One worker process: its own event loop, clients and caches; `calls` concurrent
    ensure_fresh calls released together with the other workers."""

    async def main() -> list[str]:
        async with env.http() as http:
            provider = await oidc_provider(env, http)
            refresher = TokenRefresher(TokenEndpointClient(http), poll_interval=0.05)
            store = env.token_store(connection_id)
            await asyncio.to_thread(barrier.wait)

            async def one() -> str:
                try:
                    tokens = await refresher.ensure_fresh(store, provider, client)
                    return "ok:" + tokens.access_token
                except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on any
                    return f"error:{type(exc).__name__}:{exc}"

            return list(await asyncio.gather(*(one() for _ in range(calls))))

    results.put(asyncio.run(main()))


def wave_worker(
    env: Env,
    client: OAuthClient,
    connection_id: str,
    calls: int,
    waves: int,
    barrier: Any,
    results: Any,
) -> None:
    """A long-lived worker process (one event loop, one `TokenRefresher`, as a gateway
    worker has): for each of `waves` waves, waits for the test to release the wave
    through `barrier`, makes `calls` concurrent `ensure_fresh` calls and reports them."""

    async def main() -> None:
        async with env.http() as http:
            provider = await oidc_provider(env, http)
            refresher = TokenRefresher(TokenEndpointClient(http), poll_interval=0.05)
            store = env.token_store(connection_id)

            async def one() -> str:
                try:
                    tokens = await refresher.ensure_fresh(store, provider, client)
                    return "ok:" + tokens.access_token
                except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on any
                    return f"error:{type(exc).__name__}:{exc}"

            for _ in range(waves):
                await asyncio.to_thread(barrier.wait)
                results.put(list(await asyncio.gather(*(one() for _ in range(calls)))))

    asyncio.run(main())
