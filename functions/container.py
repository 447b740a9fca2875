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
from functions.oauth import TableStateStore, TokenRefresher, default_catalog
from functions.onprem.registry import GatewayRegistry
from functions.onprem.relay import GatewayRelay
from functions.onprem.storage import services_from_settings
from functions.onprem.storage import table_service as onprem_table_service
from functions.services.connect_sessions import ConnectSessionService
from functions.services.connections import ConnectionService
from functions.services.connectors import ConnectorService
from functions.services.invocation import InvocationService
from functions.services.oauth import OAuthService
from functions.settings import Settings
from functions.stores.audit import AuditLog
from functions.stores.connect_sessions import ConnectSessionStore
from functions.stores.definitions import DefinitionStore
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.secrets.factory import build_secret_store
from functions.stores.shares import ShareStore
from functions.stores.tables import MetadataStore, build_table_service
from functions.telemetry.oauth import TracedTokenEndpointClient
from functions.upstream.client import control_plane_client, data_plane_client
from functions.upstream.egress import EgressPolicy
from functions.upstream.egress_clients import egress_requests_adapter
from functions.upstream.hops import hop_marker
from functions.upstream.limits import ConnectionLimiter
from functions.webhooks.events import EventEmitter
from functions.webhooks.options import WorkerOptions
from functions.webhooks.service import WebhookService
from functions.webhooks.store import WebhookStore
from functions.webhooks.worker import DeliveryWorker


def _upstream_tls(settings: Settings) -> ssl.SSLContext:
    """System trust store, plus the extra CA file if configured."""
    context = ssl.create_default_context()
    if settings.upstream_ca_file:
        context.load_verify_locations(cafile=settings.upstream_ca_file)
    return context


def _msal_session_factory(settings: Settings, egress: EgressPolicy) -> Callable[[], Any]:
    """msal uses `requests`: give it a session whose connections pass the outbound
    address policy, with no proxy variables, trusting the system bundle plus the extra
    upstream CA when there is one (and ignoring REQUESTS_CA_BUNDLE)."""
    bundle: Path | None = None
    if settings.upstream_ca_file:
        import certifi

        bundle = Path(tempfile.gettempdir()) / f"connector-gateway-ca-{os.getpid()}.pem"
        bundle.write_text(
            Path(certifi.where()).read_text() + "\n" + Path(settings.upstream_ca_file).read_text()
        )

    def make() -> Any:
        import requests

        session = requests.Session()
        session.trust_env = False
        if bundle is not None:
            session.verify = str(bundle)
        adapter = egress_requests_adapter(egress)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    return make


@dataclass
class Gateway:
    settings: Settings
    http: httpx.AsyncClient  # calls to connectors' APIs (functions/upstream/client.py)
    control_http: httpx.AsyncClient  # calls to identity providers
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
    egress: EgressPolicy
    connect_sessions: ConnectSessionService  # issue 16
    # Connection-health webhooks (issue 19).
    events: EventEmitter
    webhook_store: WebhookStore
    webhooks: WebhookService
    _queues: Any = None

    @classmethod
    async def start(cls, settings: Settings) -> Gateway:
        timeout = httpx.Timeout(
            settings.upstream_timeout_seconds, connect=min(10.0, settings.upstream_timeout_seconds)
        )
        tls = _upstream_tls(settings)
        egress = EgressPolicy.from_settings(
            settings.egress_allow,
            allow_loopback=settings.egress_allow_loopback,
            development=settings.is_development,
            public_base_url=settings.public_base_url,
        )
        marker = hop_marker(settings.public_base_url)
        http = data_plane_client(
            tls,
            timeout,
            settings.dev_upstream_resolve,
            egress=egress,
            per_host=settings.upstream_connections_per_host,
            deadline=settings.upstream_deadline_seconds,
            hop_marker=marker,
        )
        control = control_plane_client(
            tls, timeout, settings.dev_upstream_resolve, egress=egress
        )
        tables = build_table_service(settings)
        bound = settings.storage_timeout_seconds
        metadata = MetadataStore(tables, settings.table_prefix, call_timeout=bound)
        await metadata.ensure_tables()
        definitions = DefinitionStore(tables, settings.table_prefix, call_timeout=bound)
        await definitions.ensure_table()
        states = TableStateStore(tables, settings.table_prefix)
        await states.ensure_table()
        shares = ShareStore(tables, settings.table_prefix, call_timeout=bound)
        await shares.ensure_table()
        audit = AuditLog(tables, settings.table_prefix, call_timeout=bound)
        await audit.ensure_table()
        audit.start()
        # The on-premises relay keeps its own storage clients: short retries keep
        # `gateway_offline` and `relay_unavailable` answers fast.
        onprem_registry = GatewayRegistry(
            onprem_table_service(settings.storage_connection_string, settings.table_endpoint),
            settings.table_prefix,
            online_window=settings.onprem_heartbeat_seconds,
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
            egress=egress,
            max_operations=settings.max_definition_operations,
        )
        # One token client and one refresher per process: the refresher's single flight
        # and cooldowns are per process by design (the lease handles other instances).
        token_client = TracedTokenEndpointClient(
            control, msal_http_client=_msal_session_factory(settings, egress)
        )
        oauth = OAuthService(
            metadata,
            secrets,
            connectors,
            states,
            token_client,
            TokenRefresher(token_client),
            catalog,
            control,
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
        connect_store = ConnectSessionStore(tables, settings.table_prefix)
        await connect_store.ensure_table()
        events, webhook_store, webhooks = await _webhooks(
            settings, queues, tables, secrets, metadata, connectors, connections, egress
        )
        connections.events = oauth.events = events
        return cls(
            settings=settings,
            http=http,
            control_http=control,
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
                limiter=ConnectionLimiter(
                    settings.connection_calls_per_minute, settings.connection_max_concurrent
                ),
                max_response_bytes=settings.max_response_bytes,
                hop_marker=marker,
            ),
            egress=egress,
            onprem_registry=onprem_registry,
            onprem_relay=onprem_relay,
            shares=shares,
            audit=audit,
            connect_sessions=ConnectSessionService(
                connect_store,
                connectors,
                connections,
                return_origins=settings.connect_return_origins,
                public_base_url=settings.public_base_url,
                admin_role=settings.admin_role,
                admin_groups=settings.admin_group_ids,
            ),
            events=events,
            webhook_store=webhook_store,
            webhooks=webhooks,
            _queues=queues,
        )

    def webhook_worker(self, options: WorkerOptions | None = None) -> DeliveryWorker:
        """The delivery worker over this container's stores and upstream client."""
        return DeliveryWorker(
            self._queues, self.webhook_store, self.secrets, self.http,
            self.settings.table_prefix, options,
        )

    async def close(self) -> None:
        await self.audit.close()
        await self.events.close()
        self.webhook_store.close()
        await self.onprem_relay.close()
        self.onprem_registry.close()
        await self.http.aclose()
        await self.control_http.aclose()
        self.metadata.close()
        self.secrets.close()


async def _webhooks(
    settings: Settings,
    queues: Any,
    tables: Any,
    secrets: CachedSecretStore,
    metadata: MetadataStore,
    connectors: ConnectorService,
    connections: ConnectionService,
    egress: EgressPolicy,
) -> tuple[EventEmitter, WebhookStore, WebhookService]:
    events = EventEmitter(queues, settings.table_prefix)
    await events.ensure_queue()
    events.start()
    store = WebhookStore(tables, settings.table_prefix)
    await store.ensure_tables()
    service = WebhookService(
        store,
        secrets,
        metadata,
        connectors,
        is_admin=connections.is_admin,
        allow_http=settings.is_development,
        egress=egress,
    )
    return events, store, service
