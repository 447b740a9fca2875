"""Connectors: create, import, read, update, delete. Only the owner sees or changes one
for now (sharing arrives with the access-policy work); anything else answers 404 so ids
cannot be probed."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from functions.domain.models import (
    AuthScheme,
    Connector,
    CredentialBinding,
    OAuthClientConfig,
    PrincipalType,
    Share,
    ShareRole,
)
from functions.errors import ConflictError, ForbiddenError, NotFoundError, ValidationFailedError
from functions.identity.principal import Principal
from functions.oauth import ProviderCatalog
from functions.oauth.certificates import (
    CertificateError,
    is_certificate_bundle,
    load_certificate_bundle,
)
from functions.oauth.errors import CatalogError
from functions.powerplatform import ConnectorDefinition, parse_definition
from functions.powerplatform.auth import is_placeholder_client_id
from functions.powerplatform.export import export_definition
from functions.powerplatform.routing import Router, build_router
from functions.services.access import ConnectorRole, connector_role
from functions.services.ids import is_valid_id, new_id
from functions.services.ttl_cache import TtlCache
from functions.stores.definitions import DefinitionStore
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.shares import ShareStore
from functions.stores.tables import MetadataStore
from functions.upstream.egress import EgressPolicy
from functions.upstream.urls import validate_base_url


@dataclass(frozen=True)
class ImportedDefinition:
    """The Power Platform file pair as uploaded (parsed JSON), plus custom code if any."""

    api_definition: dict[str, Any]
    api_properties: dict[str, Any]
    script: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "apiDefinition": self.api_definition,
            "apiProperties": self.api_properties,
            "script": self.script,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ImportedDefinition:
        return cls(document["apiDefinition"], document["apiProperties"], document.get("script"))

    def parse(self) -> ConnectorDefinition:
        return parse_definition(
            self.api_definition, self.api_properties, has_script=self.script is not None
        )


@dataclass(frozen=True)
class ConnectorInput:
    name: str
    base_url: str
    auth: AuthScheme
    description: str | None = None
    # OAuth 2.0 connectors: the client (its secret goes to the secret store).
    oauth_client: OAuthClientInput | None = None
    allow_connection_sharing: bool = True
    calls_per_minute: int | None = None
    propagate_trace_context: bool = True


def connector_secret_name(connector_id: str) -> str:
    """The secret holding a connector's OAuth client secret."""
    return f"connector-{connector_id}"


@dataclass(frozen=True)
class OAuthClientInput:
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})


def count_operations(api_definition: dict[str, Any]) -> int:
    """Operations in a Swagger document (path x method), counted before any parsing."""
    paths = api_definition.get("paths")
    if not isinstance(paths, dict):
        return 0
    return sum(
        1
        for item in paths.values()
        if isinstance(item, dict)
        for method in item
        if isinstance(method, str) and method.lower() in _HTTP_METHODS
    )


def _load(imported: ImportedDefinition) -> LoadedDefinition:
    parsed = imported.parse()
    return LoadedDefinition(imported, parsed, build_router(parsed))


def connector_not_found(connector_id: str) -> NotFoundError:
    return NotFoundError(f"connector {connector_id} not found", code="connector_not_found")


class BindingGuard(Protocol):
    """Keeps connections' credentials bound to the origin they were entered for when
    a connector changes (implemented by the connection service)."""

    async def pin_bindings(self, connector: Connector) -> None:
        """Before the change: store the current binding on connections that have none."""

    async def connector_rebound(self, caller: Principal, connector: Connector) -> None:
        """After the change: the caller's own connections follow; others wait for
        their owner's confirmation."""


@dataclass(frozen=True)
class LoadedDefinition:
    """A stored definition: as uploaded, parsed, and its operation router."""

    imported: ImportedDefinition
    parsed: ConnectorDefinition
    router: Router


class ConnectorService:
    def __init__(
        self,
        store: MetadataStore,
        definitions: DefinitionStore,
        secrets: CachedSecretStore,
        catalog: ProviderCatalog,
        shares: ShareStore,
        *,
        cache_seconds: float,
        public_base_url: str | None = None,
        audience: str = "",
        egress: EgressPolicy | None = None,
        max_operations: int = 1000,
    ) -> None:
        self._egress = egress or EgressPolicy()
        self._store = store
        self._definitions = definitions
        self._secrets = secrets
        self._catalog = catalog
        self._shares = shares
        # For exports: where makers' connectors will call, and the audience of the
        # gateway's app registration they must request tokens for.
        self._public_base_url = public_base_url
        self._audience = audience
        self._max_operations = max_operations
        # Parsed definitions, keyed by the connector row's update time: a re-import
        # changes the row, so a stale parse is never used after this instance sees it,
        # and an entry never needs to expire (only to make room: least recently used).
        # Parsing costs milliseconds on the event loop; redoing it every
        # cache_seconds stalled every call in flight.
        self._parsed: TtlCache[LoadedDefinition] = TtlCache(math.inf, max_entries=256, name="definition")
        # Connector rows for the invoke path, shared by all connections of a connector:
        # a connection seen for the first time costs one Table read, not two. Evicted
        # here on every change; other instances see a change within cache_seconds.
        self._for_invoke: TtlCache[Connector] = TtlCache(cache_seconds, name="connector")
        self._guard: BindingGuard | None = None

    def set_binding_guard(self, guard: BindingGuard) -> None:
        self._guard = guard

    async def get_for_invoke(self, tenant_id: str, connector_id: str) -> Connector | None:
        """The connector row, cached. No access check: on the invoke path the caller's
        right comes from the connection, which the caller has already passed."""
        key = (tenant_id, connector_id)
        connector = self._for_invoke.get(key)
        if connector is None:
            connector = await self._store.get_connector(tenant_id, connector_id)
            if connector is not None:
                self._for_invoke.put(key, connector)
        return connector

    async def _replace_connector(self, connector: Connector) -> Connector:
        saved = await self._store.replace_connector(connector)
        self._for_invoke.evict((connector.tenant_id, connector.id))
        return saved

    def _upstream_url(self, value: str) -> str:
        """A base URL checked for form, then by the outbound address policy (issue 12):
        canonical host, no denied literal address or name (422)."""
        return self._egress.validate_url(validate_base_url(value))

    async def import_definition(
        self,
        caller: Principal,
        imported: ImportedDefinition,
        *,
        base_url: str | None = None,
        name: str | None = None,
        client_secret: str | None = None,
    ) -> tuple[Connector, ConnectorDefinition]:
        """Store an imported Power Platform connector. Nothing is stored on any error.

        `client_secret` (as `paconn create --secret`) is the secret of the definition's
        own OAuth client id; it goes to the secret store only."""
        operations = count_operations(imported.api_definition)
        if operations > self._max_operations:
            message = (
                f"the definition has {operations} operations; at most "
                f"{self._max_operations} are accepted (GATEWAY_MAX_DEFINITION_OPERATIONS)"
            )
            raise ValidationFailedError(
                message,
                code="too_many_operations",
                errors=[{"field": "apiDefinition.paths", "message": message}],
                extra={"operations": operations, "limit": self._max_operations},
            )
        # Parsing a large definition takes seconds of CPU: never on the event loop.
        definition = await asyncio.to_thread(imported.parse)
        chosen = base_url or definition.base_url
        if not chosen:
            message = "the definition has no host; pass baseUrl"
            raise ValidationFailedError(message, errors=[{"field": "baseUrl", "message": message}])
        client_id = _definition_client_id(definition) if client_secret else None
        connector = Connector(
            id=new_id(),
            tenant_id=caller.tenant_id,
            owner_id=caller.object_id,
            name=name or definition.title or "Imported connector",
            base_url=self._upstream_url(chosen),
            auth=AuthScheme("none"),
            description=definition.description,
            source="powerplatform",
        )
        # Definition first: a connector row never points at a missing definition.
        await self._definitions.put(connector.tenant_id, connector.id, imported.to_document())
        try:
            connector = await self._store.insert_connector(connector)
        except BaseException:
            await self._definitions.delete(connector.tenant_id, connector.id)
            raise
        if client_id is not None:
            try:
                connector = await self._save_oauth_client(
                    connector, OAuthClientInput(client_id, client_secret)
                )
            except BaseException:
                await self._store.delete_connector(connector.tenant_id, connector.id)
                await self._definitions.delete(connector.tenant_id, connector.id)
                raise
        return connector, definition

    async def definition(self, connector: Connector) -> LoadedDefinition:
        """The stored definition of an imported connector, parsed (cached)."""
        key = (connector.tenant_id, connector.id, connector.updated_at)
        cached = self._parsed.get(key)
        if cached is None:
            document = await self._definitions.get(connector.tenant_id, connector.id)
            if document is None:
                raise connector_not_found(connector.id)
            imported = ImportedDefinition.from_document(document)
            cached = await asyncio.to_thread(_load, imported)
            self._parsed.put(key, cached)
        return cached

    def _check_oauth(self, auth: AuthScheme) -> None:
        """A native OAuth scheme must name a catalog provider with valid settings."""
        if auth.oauth is None:
            return
        try:
            spec = self._catalog.get(auth.oauth.provider)
            self._catalog.check_settings(auth.oauth.provider, dict(auth.oauth.settings))
        except CatalogError as exc:
            raise ValidationFailedError(
                str(exc), errors=[{"field": "auth", "message": str(exc)}]
            ) from None
        if auth.oauth.grant == "client_credentials" and not spec.client_credentials:
            message = f"{spec.display_name} does not offer the client-credentials grant"
            raise ValidationFailedError(
                message, errors=[{"field": "auth.grant", "message": message}]
            )

    async def set_oauth_client(
        self, caller: Principal, connector_id: str, data: OAuthClientInput
    ) -> Connector:
        """Set or rotate the connector's OAuth client; the secret becomes a new version."""
        connector = await self.get_owned(caller, connector_id)
        return await self._save_oauth_client(connector, data)

    async def _save_oauth_client(self, connector: Connector, data: OAuthClientInput) -> Connector:
        if data.redirect_uri is not None:
            validate_base_url(data.redirect_uri, field="redirectUri")
        if is_certificate_bundle(data.client_secret):
            _check_certificate_bundle(data.client_secret or "")
        version = connector.oauth_client.secret_version if connector.oauth_client else None
        if data.client_secret:
            version = await self._secrets.set_secret(
                connector_secret_name(connector.id),
                data.client_secret,
                tags={"connector": connector.id},
            )
        connector.oauth_client = OAuthClientConfig(data.client_id, version, data.redirect_uri)
        return await self._replace_connector(connector)

    async def create(self, caller: Principal, data: ConnectorInput) -> Connector:
        self._check_oauth(data.auth)
        connector = Connector(
            id=new_id(),
            tenant_id=caller.tenant_id,
            owner_id=caller.object_id,
            name=data.name,
            base_url=self._upstream_url(data.base_url),
            auth=data.auth,
            description=data.description,
            allow_connection_sharing=data.allow_connection_sharing,
            calls_per_minute=data.calls_per_minute,
            propagate_trace_context=data.propagate_trace_context,
        )
        connector = await self._store.insert_connector(connector)
        if data.oauth_client is not None:
            # Second step: the secret's name needs the connector id. If this fails the
            # connector exists without a client secret; PUT .../oauth-client completes it.
            connector = await self._save_oauth_client(connector, data.oauth_client)
        return connector

    async def list_visible(self, caller: Principal) -> list[Connector]:
        """Connectors the caller owns or that are shared with them (or their groups)."""
        owned = await self._store.list_connectors(caller.tenant_id, caller.object_id)
        shared = await self._shares.for_subjects(caller.tenant_id, "connector", caller.share_keys)
        seen = {c.id for c in owned}
        result = list(owned)
        for share in shared:
            if share.resource_id in seen:
                continue
            connector = await self._store.get_connector(caller.tenant_id, share.resource_id)
            if connector is not None:
                seen.add(connector.id)
                result.append(connector)
        return result

    async def get_with_role(
        self, caller: Principal, connector_id: str
    ) -> tuple[Connector, ConnectorRole]:
        """The connector and the caller's role on it; 404 when they have none."""
        connector = None
        if is_valid_id(connector_id):
            connector = await self._store.get_connector(caller.tenant_id, connector_id)
        if connector is None:
            raise connector_not_found(connector_id)
        role: ConnectorRole | None = None
        if connector.owner_id == caller.object_id:
            role = "owner"
        else:
            shares = await self._shares.for_resource(caller.tenant_id, "connector", connector.id)
            role = connector_role(caller, connector, shares)
        if role is None:
            raise connector_not_found(connector_id)
        return connector, role

    async def get_visible(self, caller: Principal, connector_id: str) -> Connector:
        return (await self.get_with_role(caller, connector_id))[0]

    async def get_owned(self, caller: Principal, connector_id: str) -> Connector:
        """For changes: owners and co-owners only (others who can see it get 403)."""
        connector, role = await self.get_with_role(caller, connector_id)
        if role != "owner":
            raise ForbiddenError(
                f"only the owners of connector {connector_id} may change, share or delete it",
                code="not_connector_owner",
            )
        return connector

    async def share(
        self,
        caller: Principal,
        connector_id: str,
        principal_type: PrincipalType,
        principal_id: str,
        role: ShareRole,
    ) -> Share:
        connector = await self.get_owned(caller, connector_id)
        share = Share(
            caller.tenant_id,
            "connector",
            connector.id,
            principal_type,
            principal_id,
            role,
            caller.object_id,
        )
        return await self._shares.put(share)

    async def unshare(
        self, caller: Principal, connector_id: str, principal_type: PrincipalType, principal_id: str
    ) -> bool:
        connector = await self.get_owned(caller, connector_id)
        return await self._shares.delete(
            caller.tenant_id, "connector", connector.id, principal_type, principal_id
        )

    async def connection_sharing_allowed(
        self, connector: Connector, parameter_set: str | None
    ) -> bool:
        """The connector's own switch, and for imported connectors Power Platform's
        `metadata.allowSharing` on the connection's parameter set (false forbids)."""
        if not connector.allow_connection_sharing:
            return False
        if connector.source != "powerplatform" or parameter_set is None:
            return True
        properties = (await self.definition(connector)).imported.api_properties.get(
            "properties", {}
        )
        sets = (properties.get("connectionParameterSets") or {}).get("values") or []
        for entry in sets if isinstance(sets, list) else []:
            if isinstance(entry, dict) and entry.get("name") == parameter_set:
                metadata = entry.get("metadata") or {}
                return not (isinstance(metadata, dict) and metadata.get("allowSharing") is False)
        return True

    async def transfer_all(self, tenant_id: str, old_owner: str, new_owner: str) -> int:
        """Give every connector of `old_owner` to `new_owner` (an admin's offboarding)."""
        moved = 0
        for connector in await self._store.list_connectors(tenant_id, old_owner):
            connector.owner_id = new_owner
            await self._replace_connector(connector)
            moved += 1
        return moved

    async def list_shares(self, caller: Principal, connector_id: str) -> list[Share]:
        connector = await self.get_owned(caller, connector_id)
        return await self._shares.for_resource(caller.tenant_id, "connector", connector.id)

    async def export(
        self,
        caller: Principal,
        connector_id: str,
        *,
        connection_id: str | None = None,
        client_id: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        connector = await self.get_visible(caller, connector_id)
        if connector.source != "powerplatform":
            raise ConflictError(
                f"connector {connector.id} is a native connector: it has no operations to export; "
                "call connections/{id}/invoke/{path} directly",
                code="export_not_available",
            )
        if connection_id is not None:
            connection = (
                await self._store.get_connection(caller.tenant_id, connection_id)
                if is_valid_id(connection_id)
                else None
            )
            if (
                connection is None
                or connection.owner_id != caller.object_id
                or connection.connector_id != connector.id
            ):
                message = "not a connection of yours to this connector"
                raise ValidationFailedError(
                    message, errors=[{"field": "connectionId", "message": message}]
                )
        if not self._public_base_url:
            raise ConflictError(
                "GATEWAY_PUBLIC_BASE_URL is not set: the export needs the gateway's external URL",
                code="export_not_available",
            )
        loaded = await self.definition(connector)
        return export_definition(
            loaded.imported.api_definition,
            loaded.imported.api_properties,
            gateway_base_url=self._public_base_url,
            audience=self._audience,
            client_id=client_id,
            connection_id=connection_id,
            title=connector.name,
            include_base_path=False,
        )

    async def replace(
        self, caller: Principal, connector_id: str, data: ConnectorInput
    ) -> Connector:
        connector = await self.get_owned(caller, connector_id)
        base_url = self._upstream_url(data.base_url)
        self._check_oauth(data.auth)
        if connector.source != "native":
            raise ConflictError(
                f"connector {connector.id} was imported from a Power Platform definition; "
                "import the changed definition as a new connector instead",
                code="connector_is_imported",
            )
        if data.auth.type != connector.auth.type or (
            data.auth.type == "oauth2" and data.auth != connector.auth
        ):
            # Existing connections hold credentials for the old scheme (OAuth: tokens
            # of the old provider settings); changing it under them would send the
            # wrong credential or none. Same-type changes (an API key's header name or
            # location, the Windows protocol) keep the credential valid: they rebind.
            in_use = await self._store.list_connections(caller.tenant_id, connector_id=connector.id)
            if in_use:
                raise ConflictError(
                    f"connector {connector.id} has {len(in_use)} connection(s); delete them "
                    "before changing its authentication scheme",
                    code="connector_in_use",
                )
        before = CredentialBinding.of(connector)
        changed = replace(
            connector,
            name=data.name,
            base_url=base_url,
            auth=data.auth,
            description=data.description,
            allow_connection_sharing=data.allow_connection_sharing,
            calls_per_minute=data.calls_per_minute,
            propagate_trace_context=data.propagate_trace_context,
        )
        rebinding = CredentialBinding.of(changed) != before and self._guard is not None
        if rebinding:
            assert self._guard is not None
            # Before the change is visible: every connection gets the binding its
            # credentials were entered for (old rows have none stored yet).
            await self._guard.pin_bindings(connector)
        connector = await self._replace_connector(changed)
        if rebinding:
            assert self._guard is not None
            await self._guard.connector_rebound(caller, connector)
        if data.oauth_client is not None:
            connector = await self._save_oauth_client(connector, data.oauth_client)
        return connector

    async def delete(self, caller: Principal, connector_id: str) -> None:
        connector = await self.get_owned(caller, connector_id)
        in_use = await self._store.list_connections(caller.tenant_id, connector_id=connector.id)
        if in_use:
            raise ConflictError(
                f"connector {connector.id} has {len(in_use)} connection(s); delete them first",
                code="connector_in_use",
            )
        await self._store.delete_connector(caller.tenant_id, connector.id)
        self._for_invoke.evict((caller.tenant_id, connector.id))
        if connector.oauth_client is not None:
            await self._secrets.delete_secret(connector_secret_name(connector.id))
        if connector.source == "powerplatform":
            await self._definitions.delete(caller.tenant_id, connector.id)
        await self._shares.delete_for_resource(caller.tenant_id, "connector", connector.id)


def _definition_client_id(definition: ConnectorDefinition) -> str:
    """The real OAuth client id a definition names, for a client secret given at import
    (issue 18); 422 when it has none (only placeholders: set the client instead)."""
    ids = {
        option.oauth2.client_id
        for option in definition.auth_options
        if option.oauth2 is not None
        and option.oauth2.client_id
        and not is_placeholder_client_id(option.oauth2.client_id)
    }
    if len(ids) != 1:
        message = (
            "clientSecret needs the definition's own OAuth client id, but it "
            + ("names several" if ids else "has none (only a placeholder, or no OAuth)")
            + "; set the client with PUT /api/connectors/{id}/oauth-client instead"
        )
        raise ValidationFailedError(message, errors=[{"field": "clientSecret", "message": message}])
    return ids.pop()


def _check_certificate_bundle(bundle: str) -> None:
    """A client certificate (issue 18, aadcertificate) must parse and match its key;
    422 naming the field, never the content."""
    try:
        load_certificate_bundle(bundle)
    except CertificateError as exc:
        raise ValidationFailedError(
            exc.detail, errors=[{"field": "clientCertificate", "message": exc.detail}]
        ) from None
