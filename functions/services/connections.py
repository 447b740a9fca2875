"""Connections: one user's credentials for one connector.

Credentials are written only to the secret store; the table row holds the secret's name
and version and the names of the parameters that are set.

Crash safety (no step leaves a usable half-state, and every leftover is found by
`cleanup`):
    create: insert row (pending) -> write secret -> mark row connected with the version
    delete: mark row deleting -> delete secret (soft delete + purge) -> delete row
A pending or deleting row is never usable. `cleanup` finishes deleting rows left in
`deleting` and rows left `pending` for longer than PENDING_GRACE.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from functions.domain.models import (
    AuthScheme,
    Connection,
    ConnectionStatus,
    Connector,
    CredentialBinding,
    PrincipalType,
    Share,
    origin_of,
)
from functions.errors import (
    ConflictError,
    ConnectionNotUsableError,
    ConnectionOriginChangedError,
    ForbiddenError,
    GatewayError,
    NotFoundError,
    ValidationFailedError,
)
from functions.identity.principal import Principal
from functions.logging_redaction import register_secret
from functions.oauth import ReauthorizationRequiredError, StoredTokens, TokenSet
from functions.observability import correlation_id
from functions.onprem.envelope import encrypt_for_gateway
from functions.onprem.registry import GatewayRegistry
from functions.powerplatform import ConnectorDefinition, validate_connection_parameters
from functions.services.access import connection_role, is_admin
from functions.services.connectors import ConnectorService, LoadedDefinition
from functions.services.ids import is_valid_id, new_id
from functions.services.oauth import OAuthBinding, OAuthService
from functions.services.ttl_cache import TtlCache
from functions.stores.audit import AuditEvent, AuditLog, connection_partition, principal_partition
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.shares import ShareStore
from functions.stores.tables import EntityChangedError, MetadataStore
from functions.upstream.urls import validate_base_url
from functions.webhooks import events
from functions.webhooks.events import NO_EVENTS, EventSink

log = logging.getLogger(__name__)

PENDING_GRACE = timedelta(minutes=10)
# A secret without a row is deleted by cleanup only when untouched for this long.
SECRET_GRACE = timedelta(minutes=30)
SECRET_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ConnectionInput:
    display_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    parameter_set: str | None = None


@dataclass(frozen=True)
class ResolvedConnection:
    """Everything an invocation needs, including the credential values (memory only).

    `scheme` and `credentials` are what to inject (for imported connectors, derived
    from the connection's parameter set); `parameters` are all the connection's values,
    secret and plain, for policy expressions such as `@connectionParameters('host')`.
    """

    connection: Connection
    connector: Connector
    scheme: AuthScheme
    credentials: dict[str, str] = field(repr=False)
    parameters: dict[str, Any] = field(repr=False)
    definition: LoadedDefinition | None = None
    oauth: OAuthCall | None = None


@dataclass(frozen=True)
class OAuthCall:
    """An OAuth connection's provider binding and the tokens as this instance has them."""

    binding: OAuthBinding
    stored: StoredTokens = field(repr=False)


@dataclass(frozen=True)
class CreatedConnection:
    connection: Connection
    # OAuth authorization-code connections: where to send the user.
    consent_url: str | None = None


@dataclass
class _InvokeEntry:
    connection: Connection
    connector: Connector
    binding: OAuthBinding | None
    # The connection's grants, read the first time someone other than the owner calls
    # (an owner's calls never need them); None until then.
    shares: tuple[Share, ...] | None = None


AccessRole = Literal["owner", "grantee", "admin"]


def _visible_status(connection: Connection) -> bool:
    return connection.status not in (ConnectionStatus.PENDING, ConnectionStatus.DELETING)


def principal_subject(caller: Principal) -> str:
    return f"{caller.kind}:{caller.object_id}"


class AuthTypeNotSupportedError(GatewayError):
    status = 501
    code = "auth_type_not_supported"
    title = "Authentication type not supported yet"


def connection_not_found(connection_id: str) -> NotFoundError:
    return NotFoundError(f"connection {connection_id} not found", code="connection_not_found")


def secret_name_for(connection_id: str) -> str:
    return f"conn-{connection_id}"


def validate_parameters(scheme: AuthScheme, parameters: dict[str, Any]) -> dict[str, str]:
    """Check connection parameters against the connector's scheme; name every bad field."""
    errors: list[dict[str, str]] = []
    allowed = set(scheme.required_parameters())
    for name, value in parameters.items():
        if name not in allowed:
            expected = ", ".join(sorted(allowed)) or "none"
            errors.append(
                {
                    "field": f"parameters.{name}",
                    "message": f"unknown parameter (expected: {expected})",
                }
            )
        elif not isinstance(value, str):
            errors.append({"field": f"parameters.{name}", "message": "must be a string"})
        elif value == "":
            errors.append({"field": f"parameters.{name}", "message": "must not be empty"})
    for name in scheme.required_parameters():
        if name not in parameters:
            errors.append({"field": f"parameters.{name}", "message": "required"})
    if errors:
        raise ValidationFailedError(
            "invalid connection parameters: "
            + "; ".join(e["field"] + " " + e["message"] for e in errors),
            errors=errors,
        )
    return {name: str(value) for name, value in parameters.items()}


class ConnectionService:
    events: EventSink = NO_EVENTS  # connection-health webhooks (issue 19)

    def __init__(
        self,
        store: MetadataStore,
        secrets: CachedSecretStore,
        connectors: ConnectorService,
        oauth: OAuthService,
        shares: ShareStore,
        audit: AuditLog,
        gateways: GatewayRegistry,
        *,
        cache_seconds: float,
        admin_role: str = "Gateway.Admin",
        admin_groups: tuple[str, ...] = (),
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._connectors = connectors
        self._oauth = oauth
        self._shares = shares
        self._audit = audit
        self._gateways = gateways
        self._admin_role = admin_role
        self._admin_groups = admin_groups
        # Connection, connector, binding and grants of usable connections: the bound
        # on how long a change made elsewhere (a revoked share, a delete) can go unseen
        # here is GATEWAY_METADATA_CACHE_SECONDS.
        self._resolved: TtlCache[_InvokeEntry] = TtlCache(cache_seconds, name="connection")
        self._loading: dict[tuple[str, str, str], asyncio.Task[_InvokeEntry]] = {}
        connectors.set_binding_guard(self)

    def is_admin(self, caller: Principal) -> bool:
        return is_admin(caller, self._admin_role, self._admin_groups)

    def _record(
        self,
        caller: Principal,
        action: str,
        status: int,
        connection: Connection | None = None,
        **extra: Any,
    ) -> None:
        self._audit.record(
            AuditEvent(
                tenant_id=caller.tenant_id,
                principal=principal_subject(caller),
                action=action,
                status=status,
                connection_id=connection.id if connection else None,
                connector_id=connection.connector_id if connection else None,
                correlation_id=correlation_id.get(),
                **extra,
            )
        )

    async def _auth_type(self, connector: Connector, parameter_set: str | None) -> str:
        if connector.source == "native":
            return connector.auth.type
        option = (await self._connectors.definition(connector)).parsed.auth_option(parameter_set)
        if option is not None and option.gateway and option.type == "none":
            # On-premises API without credentials: relayed by the gateway agent.
            return "windows"
        return option.type if option is not None else "none"

    async def _binding(
        self,
        connector: Connector,
        connection: Connection,
        secret_values: dict[str, Any] | None = None,
    ) -> OAuthBinding:
        definition = (
            await self._connectors.definition(connector)
            if connector.source == "powerplatform"
            else None
        )
        return await self._oauth.binding_for_connection(
            connector, definition, connection, secret_values
        )

    async def _validate(
        self, connector: Connector, data: ConnectionInput
    ) -> tuple[dict[str, str], dict[str, Any], str | None]:
        """(secret values, plain values, parameter set) for a new connection."""
        if connector.source == "native":
            if data.parameter_set is not None:
                message = "native connectors have no parameter sets"
                raise ValidationFailedError(
                    message, errors=[{"field": "parameterSet", "message": message}]
                )
            values = validate_parameters(connector.auth, data.parameters)
            plain: dict[str, Any] = {}
            if connector.auth.type == "windows":
                plain["gatewayId"] = values.pop("gatewayId")
            return values, plain, None
        definition = (await self._connectors.definition(connector)).parsed
        secret, plain = validate_connection_parameters(
            definition, data.parameter_set, data.parameters
        )
        option = definition.auth_option(data.parameter_set)
        if option is not None and (
            option.type == "windows" or (option.gateway and option.type == "none")
        ):
            # The gatewaySetting parameter names the on-premises gateway.
            gateway_parameter = next(
                (p.name for p in option.parameters if p.type == "gatewaySetting"), None
            )
            if gateway_parameter is None or not plain.get(gateway_parameter):
                name = f"parameters.{gateway_parameter or 'gateway'}"
                raise ValidationFailedError(
                    "windows authentication needs an on-premises gateway id",
                    errors=[{"field": name, "message": "required"}],
                )
            plain["gatewayId"] = str(plain.pop(gateway_parameter))
        if option is not None and option.type in ("basic", "windows"):
            # Both halves of a basic credential are secret, whatever the type says.
            for name in ("username", "password"):
                if name in plain:
                    secret[name] = str(plain.pop(name))
        return secret, plain, data.parameter_set

    async def create(
        self, caller: Principal, connector_id: str, data: ConnectionInput
    ) -> CreatedConnection:
        """Create a connection. OAuth ones come back `consent_required` with the URL to
        send the user to (or `connected` for the client-credentials grant)."""
        connector = await self._connectors.get_visible(caller, connector_id)
        values, plain, parameter_set = await self._validate(connector, data)
        auth_type = await self._auth_type(connector, parameter_set)
        connection_id = new_id()
        connection = Connection(
            id=connection_id,
            tenant_id=caller.tenant_id,
            connector_id=connector.id,
            owner_id=caller.object_id,
            display_name=data.display_name,
            status=ConnectionStatus.PENDING,
            secret_name=secret_name_for(connection_id),
            parameters_set=tuple(sorted([*values, *plain])),
            parameter_set=parameter_set,
            plain_parameters=plain,
            # The credentials are entered for where the connector points now; a
            # connector change racing this create is caught by the check at invoke.
            binding=CredentialBinding.of(connector),
        )
        binding = (
            await self._binding(connector, connection, values) if auth_type == "oauth2" else None
        )
        secret_document: dict[str, Any] = {"format": SECRET_FORMAT_VERSION, "parameters": values}
        if auth_type == "windows":
            # Sealed for the gateway agent before anything is stored: no cloud
            # component can read the Windows credentials afterwards.
            secret_document = {
                "format": SECRET_FORMAT_VERSION,
                "parameters": {},
                "envelope": await self._seal(caller, connection, values),
            }
            del values
        connection = await self._store.insert_connection(connection)
        try:
            payload = json.dumps(secret_document)
            version = await self._secrets.set_secret(
                connection.secret_name,
                payload,
                tags={"connection": connection.id, "connector": connector.id},
            )
            connection.secret_version = version
            consent_url = None
            if binding is None:
                connection.status = ConnectionStatus.CONNECTED
            elif binding.grant == "client_credentials":
                # The row must be current before the token store merges into it.
                connection.status = ConnectionStatus.CONSENT_REQUIRED
                connection = await self._store.replace_connection(connection)
                await self._oauth.connect_client_credentials(connection, binding)
                refreshed = await self._store.get_connection(connection.tenant_id, connection.id)
                assert refreshed is not None
                self._record(
                    caller, "connection.create", 201, refreshed, detail="client_credentials"
                )
                self.events.emit(events.CONNECTION_CREATED, refreshed)
                return CreatedConnection(refreshed, None)
            else:
                connection.status = ConnectionStatus.CONSENT_REQUIRED
                consent_url = await self._oauth.consent_url(caller, connection, binding)
            connection = await self._store.replace_connection(connection)
            self._record(
                caller, "connection.create", 201, connection, detail=connection.status.value
            )
            self.events.emit(events.CONNECTION_CREATED, connection)
            return CreatedConnection(connection, consent_url)
        except BaseException:
            # Undo what we can; whatever remains stays pending (never usable) and is
            # removed by cleanup.
            await self._discard(connection)
            raise

    async def _seal(self, caller: Principal, connection: Connection, values: dict[str, str]) -> str:
        gateway_id = str(connection.plain_parameters.get("gatewayId", ""))
        gateway = await self._gateways.get(caller.tenant_id, gateway_id) if gateway_id else None
        if gateway is None or gateway.owner_id != caller.object_id:
            message = f"on-premises gateway {gateway_id or '(none)'} not found among yours"
            raise ValidationFailedError(
                message, errors=[{"field": "parameters.gatewayId", "message": message}]
            )
        credentials = {
            "username": values.get("username", ""),
            "password": values.get("password", ""),
        }
        return encrypt_for_gateway(gateway.public_key_pem, gateway.id, connection.id, credentials)

    async def list_visible(self, caller: Principal) -> list[Connection]:
        """The caller's own connections and those shared with them (or their groups)."""
        owned = await self._store.list_connections(caller.tenant_id, owner_id=caller.object_id)
        result = [c for c in owned if _visible_status(c)]
        seen = {c.id for c in result}
        for share in await self._shares.for_subjects(
            caller.tenant_id, "connection", caller.share_keys
        ):
            if share.resource_id in seen:
                continue
            connection = await self._store.get_connection(caller.tenant_id, share.resource_id)
            if connection is not None and _visible_status(connection):
                seen.add(connection.id)
                result.append(connection)
        return result

    async def _load(self, caller: Principal, connection_id: str) -> tuple[Connection, AccessRole]:
        """The connection and the caller's role: owner, grantee, or admin. 404 otherwise
        ("exists but not yours" answers exactly like "does not exist")."""
        connection = None
        if is_valid_id(connection_id):
            connection = await self._store.get_connection(caller.tenant_id, connection_id)
        if connection is None or not _visible_status(connection):
            raise connection_not_found(connection_id)
        if connection.owner_id == caller.object_id:
            return connection, "owner"
        shares = await self._shares.for_resource(caller.tenant_id, "connection", connection.id)
        role: AccessRole | None = connection_role(caller, connection, shares)
        if role is None and self.is_admin(caller):
            role = "admin"
        if role is None:
            raise connection_not_found(connection_id)
        return connection, role

    async def get_visible(self, caller: Principal, connection_id: str) -> Connection:
        return (await self._load(caller, connection_id))[0]

    async def _owned(self, caller: Principal, connection_id: str) -> Connection:
        connection, role = await self._load(caller, connection_id)
        if role != "owner":
            raise ForbiddenError(
                f"only the owner of connection {connection_id} may do this",
                code="not_connection_owner",
            )
        return connection

    async def reauthorize(self, caller: Principal, connection_id: str) -> str:
        """A fresh consent URL for an existing OAuth connection (keeps its id)."""
        connection = await self._owned(caller, connection_id)
        connector = await self._store.get_connector(connection.tenant_id, connection.connector_id)
        if connector is None:
            raise connection_not_found(connection_id)
        if await self._auth_type(connector, connection.parameter_set) != "oauth2":
            raise ConflictError(
                f"connection {connection_id} does not use OAuth; nothing to reauthorize",
                code="not_an_oauth_connection",
            )
        binding = await self._binding(connector, connection)
        if binding.grant == "client_credentials":
            await self._oauth.connect_client_credentials(connection, binding)
            self._resolved.evict((caller.tenant_id, connection_id))
            return ""
        return await self._oauth.consent_url(caller, connection, binding)

    async def update(
        self,
        caller: Principal,
        connection_id: str,
        display_name: str | None,
        parameters: dict[str, Any] | None,
    ) -> Connection:
        """Rename, or replace the credentials (a new secret version). Owner only."""
        connection = await self._owned(caller, connection_id)
        if display_name is not None:
            connection.display_name = display_name
        if parameters is not None:
            connector = await self._store.get_connector(
                connection.tenant_id, connection.connector_id
            )
            if connector is None:
                raise connection_not_found(connection_id)
            if await self._auth_type(connector, connection.parameter_set) == "oauth2":
                raise ConflictError(
                    "OAuth credentials change through consent: POST .../reauthorize",
                    code="not_changeable",
                )
            values, plain, _ = await self._validate(
                connector,
                ConnectionInput(connection.display_name, parameters, connection.parameter_set),
            )
            payload = json.dumps({"format": SECRET_FORMAT_VERSION, "parameters": values})
            connection.secret_version = await self._secrets.set_secret(
                connection.secret_name,
                payload,
                tags={"connection": connection.id, "connector": connector.id},
            )
            connection.plain_parameters = plain
            connection.parameters_set = tuple(sorted([*values, *plain]))
            # Credentials entered now are entered for where the connector points now.
            connection.binding = CredentialBinding.of(connector)
            if connection.status == ConnectionStatus.ORIGIN_CHANGED:
                connection.status = ConnectionStatus.CONNECTED
        connection = await self._store.replace_connection(connection)
        self._resolved.evict((caller.tenant_id, connection_id))
        self._record(
            caller,
            "connection.update",
            200,
            connection,
            detail="credentials" if parameters is not None else "name",
        )
        return connection

    async def delete(self, caller: Principal, connection_id: str) -> None:
        """Delete a connection and its secret (owner only). Deleting a connection that
        does not exist, or that the caller cannot see, succeeds and does nothing."""
        if is_valid_id(connection_id):
            existing = await self._store.get_connection(caller.tenant_id, connection_id)
            if (
                existing is not None
                and existing.status == ConnectionStatus.DELETING
                and existing.owner_id == caller.object_id
            ):
                # An interrupted delete: finish it.
                await self._finish_delete(existing)
                return
        try:
            connection = await self._owned(caller, connection_id)
        except NotFoundError:
            return
        self._resolved.evict((caller.tenant_id, connection_id))
        await self._delete(connection)
        self._record(caller, "connection.delete", 204, connection)
        self.events.emit(events.DELETED, connection, status="deleted")

    async def _delete(self, connection: Connection) -> None:
        connector = await self._store.get_connector(connection.tenant_id, connection.connector_id)
        if (
            connector is not None
            and await self._auth_type(connector, connection.parameter_set) == "oauth2"
        ):
            await self._oauth.revoke(connector, connection)
        if connection.status != ConnectionStatus.DELETING:
            connection.status = ConnectionStatus.DELETING
            try:
                connection = await self._store.replace_connection(connection)
            except EntityChangedError:
                # Changed concurrently (e.g. another delete, a refresh): re-read and carry on.
                current = await self._store.get_connection(connection.tenant_id, connection.id)
                if current is None:
                    return
                connection = current
        await self._finish_delete(connection)

    # -- sharing -------------------------------------------------------------------

    async def share(
        self,
        caller: Principal,
        connection_id: str,
        principal_type: PrincipalType,
        principal_id: str,
    ) -> Share:
        """Let a user, group or app invoke the connection with the owner's credentials."""
        connection = await self._owned(caller, connection_id)
        connector = await self._store.get_connector(connection.tenant_id, connection.connector_id)
        if connector is None:
            raise connection_not_found(connection_id)
        if not await self._connectors.connection_sharing_allowed(
            connector, connection.parameter_set
        ):
            raise ForbiddenError(
                f"connector {connector.id} does not allow its connections to be shared",
                code="connection_sharing_not_allowed",
            )
        if f"{principal_type}:{principal_id}" in caller.share_keys and principal_type != "group":
            message = "a connection cannot be shared with its owner"
            raise ValidationFailedError(
                message, errors=[{"field": "principal.id", "message": message}]
            )
        share = await self._shares.put(
            Share(
                caller.tenant_id,
                "connection",
                connection.id,
                principal_type,
                principal_id,
                "invoke",
                caller.object_id,
            )
        )
        self._record(caller, "share", 201, connection, detail=share.subject)
        self.events.emit(events.SHARE_GRANTED, connection, principal=share.subject)
        return share

    async def unshare(
        self,
        caller: Principal,
        connection_id: str,
        principal_type: PrincipalType,
        principal_id: str,
    ) -> None:
        connection = await self._owned(caller, connection_id)
        removed = await self._shares.delete(
            caller.tenant_id, "connection", connection.id, principal_type, principal_id
        )
        self._resolved.evict((caller.tenant_id, connection_id))
        self._record(
            caller,
            "unshare",
            204 if removed else 404,
            connection,
            detail=f"{principal_type}:{principal_id}",
        )
        if removed:
            self.events.emit(events.SHARE_REVOKED, connection, principal=f"{principal_type}:{principal_id}")

    async def list_shares(self, caller: Principal, connection_id: str) -> list[Share]:
        connection = await self._owned(caller, connection_id)
        return await self._shares.for_resource(caller.tenant_id, "connection", connection.id)

    async def activity(
        self, caller: Principal, connection_id: str, since: timedelta
    ) -> list[dict[str, Any]]:
        """The connection's audit records, newest first (owner and admins)."""
        connection, role = await self._load(caller, connection_id)
        if role == "grantee":
            raise ForbiddenError(
                f"only the owner of connection {connection_id} and admins may read its activity",
                code="not_connection_owner",
            )
        return await self._audit.query(connection_partition(caller.tenant_id, connection.id), since)

    async def my_activity(self, caller: Principal, since: timedelta) -> list[dict[str, Any]]:
        """What the caller did through the gateway, newest first."""
        return await self._audit.query(
            principal_partition(caller.tenant_id, principal_subject(caller)), since
        )

    # -- administration ------------------------------------------------------------

    def _require_admin(self, caller: Principal) -> None:
        if not self.is_admin(caller):
            raise ForbiddenError("this route is for gateway administrators", code="admin_required")

    async def admin_list(self, caller: Principal) -> list[Connection]:
        self._require_admin(caller)
        items = await self._store.list_connections(caller.tenant_id)
        return [c for c in items if _visible_status(c)]

    async def admin_set_disabled(
        self, caller: Principal, connection_id: str, disabled: bool
    ) -> Connection:
        self._require_admin(caller)
        connection, _ = await self._load(caller, connection_id)
        if disabled:
            connection.status = ConnectionStatus.DISABLED
        elif connection.status == ConnectionStatus.DISABLED:
            # Back to what its credentials allow: tokens present or not is the
            # invoke path's business; plain credentials are simply connected.
            connection.status = ConnectionStatus.CONNECTED
        connection = await self._store.replace_connection(connection)
        self._resolved.evict((caller.tenant_id, connection_id))
        self._record(caller, "admin.disable" if disabled else "admin.enable", 200, connection)
        self.events.emit(events.DISABLED if disabled else events.RECOVERED, connection, reason="admin")
        return connection

    async def offboard(
        self, caller: Principal, object_id: str, action: str, new_owner: str | None
    ) -> dict[str, int]:
        """A principal leaves: their connections are transferred to `new_owner` or
        disabled, so they never silently keep working for grantees; their connectors
        are transferred (with `transfer`) or left for an admin to reassign."""
        self._require_admin(caller)
        connections = await self._store.list_connections(caller.tenant_id, owner_id=object_id)
        changed = 0
        for connection in connections:
            if not _visible_status(connection):
                continue
            if action == "transfer":
                assert new_owner is not None
                connection.owner_id = new_owner
            else:
                connection.status = ConnectionStatus.DISABLED
            await self._store.replace_connection(connection)
            self._resolved.evict((caller.tenant_id, connection.id))
            self._record(
                caller, f"admin.offboard.{action}", 200, connection, detail=f"user:{object_id}"
            )
            if action != "transfer":
                self.events.emit(events.DISABLED, connection, reason="owner_offboarded")
            changed += 1
        moved = 0
        if action == "transfer":
            assert new_owner is not None
            moved = await self._connectors.transfer_all(caller.tenant_id, object_id, new_owner)
        return {"connections": changed, "connectors": moved}

    async def delete_my_data(self, caller: Principal) -> dict[str, int]:
        """The caller removes their data: their connections (credentials purged, so
        grants on them stop working) and the grants they hold."""
        owned = await self._store.list_connections(caller.tenant_id, owner_id=caller.object_id)
        for connection in owned:
            await self._delete(connection)
            await self._shares.delete_for_resource(caller.tenant_id, "connection", connection.id)
            self._resolved.evict((caller.tenant_id, connection.id))
            self._record(
                caller, "connection.delete", 204, connection, detail="account data deleted"
            )
            self.events.emit(events.DELETED, connection, status="deleted", reason="account_deleted")
        held = 0
        for resource_type in ("connection", "connector"):
            for share in await self._shares.for_subjects(
                caller.tenant_id, resource_type, frozenset({principal_subject(caller)})
            ):
                await self._shares.delete(
                    caller.tenant_id,
                    resource_type,
                    share.resource_id,
                    share.principal_type,
                    share.principal_id,
                )
                held += 1
        return {"connections": len(owned), "grants": held}

    async def _finish_delete(self, connection: Connection) -> None:
        await self._secrets.delete_secret(connection.secret_name)
        await self._store.delete_connection(connection.tenant_id, connection.id)
        await self._shares.delete_for_resource(connection.tenant_id, "connection", connection.id)
        log.info("connection deleted", extra={"connection_id": connection.id})

    async def _discard(self, connection: Connection) -> None:
        try:
            await self._secrets.delete_secret(connection.secret_name)
            await self._store.delete_connection(connection.tenant_id, connection.id)
        except GatewayError:
            log.warning(
                "could not undo a failed connection create; cleanup will remove it",
                extra={"connection_id": connection.id},
            )

    async def cleanup(self, *, now: datetime | None = None) -> int:
        """Finish interrupted creates and deletes. Returns how many rows were removed."""
        now = now or datetime.now(UTC)
        removed = 0
        leftovers = await self._store.list_connections_in_status(
            (ConnectionStatus.PENDING, ConnectionStatus.DELETING)
        )
        for connection in leftovers:
            stale_pending = connection.status == ConnectionStatus.PENDING and (
                connection.updated_at is None or now - connection.updated_at > PENDING_GRACE
            )
            if connection.status == ConnectionStatus.DELETING or stale_pending:
                await self._finish_delete(connection)
                removed += 1
        return removed

    # -- credential binding (issue 12) ------------------------------------------------

    async def _check_binding(self, connection: Connection, connector: Connector) -> Connection:
        """Refuse to use credentials anywhere but where they were entered for.

        Compares the connection's stored binding with the connector this call would
        use (both from the same load, so no cache or race can pair a credential with
        an origin it was not confirmed for). A row written before bindings were
        stored takes the connector's binding at its first read, persisted under the
        row's ETag: if a connector change pinned the row meanwhile, the write fails
        and the pinned binding is what is checked.
        """
        current = CredentialBinding.of(connector)
        if connection.binding is None:
            connection = await self._adopt_binding(connection, current)
            _check_usable(connection)
        if connection.binding != current or connection.status == ConnectionStatus.ORIGIN_CHANGED:
            raise _origin_changed(connection, connection.binding, current)
        return connection

    async def _adopt_binding(
        self, connection: Connection, binding: CredentialBinding
    ) -> Connection:
        for _ in range(5):
            if connection.binding is not None:
                return connection
            connection.binding = binding
            try:
                return await self._store.replace_connection(connection)
            except EntityChangedError:
                current = await self._store.get_connection(connection.tenant_id, connection.id)
                if current is None or not _visible_status(current):
                    raise connection_not_found(connection.id) from None
                connection = current
        raise ConflictError(
            f"connection {connection.id} keeps changing; retry", code="concurrent_modification"
        )

    async def _save_with_retry(
        self, connection: Connection, change: Callable[[Connection], bool]
    ) -> Connection | None:
        """Apply `change` (returns False when nothing is to be done) and write under the
        ETag, re-reading and re-applying when the row changed meanwhile."""
        for _ in range(5):
            if not change(connection):
                return connection
            try:
                return await self._store.replace_connection(connection)
            except EntityChangedError:
                current = await self._store.get_connection(connection.tenant_id, connection.id)
                if current is None:
                    return None
                connection = current
        raise ConflictError(
            f"connection {connection.id} keeps changing; retry", code="concurrent_modification"
        )

    async def pin_bindings(self, connector: Connector) -> None:
        """Before a connector's origin or injection changes: rows without a stored
        binding (written before bindings existed) get the current one, which is what
        their credentials were entered for."""
        binding = CredentialBinding.of(connector)

        def pin(connection: Connection) -> bool:
            if connection.binding is not None:
                return False
            connection.binding = binding
            return True

        for connection in await self._store.list_connections(
            connector.tenant_id, connector_id=connector.id
        ):
            if connection.binding is None:
                await self._save_with_retry(connection, pin)

    async def connector_rebound(self, caller: Principal, connector: Connector) -> None:
        """After a connector's origin or injection changed: the caller's own
        connections (and credential-less ones) follow; every other connection waits
        for its owner (status origin_changed, POST .../confirm-origin). The check at
        invoke enforces the binding whatever the status says."""
        binding = CredentialBinding.of(connector)
        carries_credentials = not (connector.source == "native" and connector.auth.type == "none")

        def follow(connection: Connection) -> bool:
            if connection.binding == binding:
                return False
            connection.binding = binding
            if connection.status == ConnectionStatus.ORIGIN_CHANGED:
                connection.status = ConnectionStatus.CONNECTED
            return True

        def hold(connection: Connection) -> bool:
            if connection.binding == binding or connection.status != ConnectionStatus.CONNECTED:
                return False
            connection.status = ConnectionStatus.ORIGIN_CHANGED
            return True

        self._resolved.evict_where(lambda entry: entry.connector.id == connector.id)
        for connection in await self._store.list_connections(
            connector.tenant_id, connector_id=connector.id
        ):
            if not _visible_status(connection):
                continue
            mine = connection.owner_id == caller.object_id
            previous = connection.status
            saved = await self._save_with_retry(
                connection, follow if mine or not carries_credentials else hold
            )
            self._resolved.evict((connector.tenant_id, connection.id))
            if saved is not None and saved.status != previous:
                self._record(
                    caller,
                    "connection.origin_changed",
                    200,
                    saved,
                    detail=f"{binding.origin}: waits for its owner's confirmation",
                )

    async def confirm_origin(
        self, caller: Principal, connection_id: str, expected_origin: str | None
    ) -> Connection:
        """The owner confirms that their credentials may go where the connector points
        now (owner only). With `expected_origin`, only if that is still where it points."""
        connection = await self._owned(caller, connection_id)
        connector = await self._store.get_connector(connection.tenant_id, connection.connector_id)
        if connector is None:
            raise connection_not_found(connection_id)
        binding = CredentialBinding.of(connector)
        if expected_origin is not None:
            try:
                expected = origin_of(validate_base_url(expected_origin, field="origin"))
            except ValueError:
                message = "not a valid origin (scheme://host[:port])"
                raise ValidationFailedError(
                    message, errors=[{"field": "origin", "message": message}]
                ) from None
            if expected != binding.origin:
                raise _origin_changed(connection, connection.binding, binding)

        def confirm(current: Connection) -> bool:
            if current.owner_id != caller.object_id:
                raise connection_not_found(connection_id)
            current.binding = binding
            if current.status == ConnectionStatus.ORIGIN_CHANGED:
                current.status = ConnectionStatus.CONNECTED
            return True

        saved = await self._save_with_retry(connection, confirm)
        if saved is None:
            raise connection_not_found(connection_id)
        self._resolved.evict((caller.tenant_id, connection_id))
        self._record(caller, "connection.confirm_origin", 200, saved, detail=binding.origin)
        return saved

    async def reconcile_secrets(self, *, now: datetime | None = None) -> int:
        """Delete connection secrets whose row does not exist: what a crash between
        the secret write and the row's removal leaves behind. Only secrets untouched
        for SECRET_GRACE (a create in progress writes the row first and the secret
        second) and tagged with a connector of this install. Connector OAuth-client
        secrets (`connector-*`) are not reconciled: nothing tells them apart from
        another install's. Returns how many secrets were deleted."""
        now = now or datetime.now(UTC)
        # Secrets first, rows second: a row created after this listing cannot make a
        # secret in it look orphaned, and a secret written after it is not in it.
        listing = await self._secrets.list_secrets()
        connector_ids, connection_ids = await self._store.all_ids()
        removed = 0
        for item in listing:
            name = item.name.lower()
            connection_id = name[len("conn-") :] if name.startswith("conn-") else ""
            if not is_valid_id(connection_id) or connection_id in connection_ids:
                continue
            # Ours only: a connection secret is tagged with its connector, which must be
            # one of this install's (a vault shared with another install, e.g. another
            # GATEWAY_TABLE_PREFIX, holds secrets whose rows are not in our tables).
            if item.tags.get("connector") not in connector_ids:
                continue
            if item.updated is None or now - item.updated < SECRET_GRACE:
                continue
            await self._secrets.delete_secret(item.name)
            log.info("orphaned secret deleted", extra={"secret_name": item.name})
            removed += 1
        return removed

    async def _grants(self, caller: Principal, connection: Connection) -> tuple[Share, ...]:
        return tuple(await self._shares.for_resource(caller.tenant_id, "connection", connection.id))

    async def _load_once(self, caller: Principal, connection_id: str) -> _InvokeEntry:
        """Load (and cache) a connection for the invoke path; concurrent calls of the
        same caller for the same connection share one load. Without this, every call
        in flight when an entry expires read the same rows at once (32 at a time in
        the benchmark), queueing behind each other for the storage threads."""
        flight = (caller.tenant_id, connection_id, caller.object_id)
        task = self._loading.get(flight)
        if task is None:
            task = asyncio.ensure_future(self._load_entry(caller, connection_id))
            self._loading[flight] = task
            task.add_done_callback(lambda done: self._loaded(flight, done))
        # shield: one caller going away must not cancel the load the others wait for.
        return await asyncio.shield(task)

    def _loaded(self, flight: tuple[str, str, str], task: asyncio.Task[_InvokeEntry]) -> None:
        self._loading.pop(flight, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so it is never reported as unhandled

    async def _load_entry(self, caller: Principal, connection_id: str) -> _InvokeEntry:
        key = (caller.tenant_id, connection_id)
        connection = None
        if is_valid_id(connection_id):
            connection = await self._store.get_connection(caller.tenant_id, connection_id)
        if connection is None or not _visible_status(connection):
            raise connection_not_found(connection_id)
        shares: tuple[Share, ...] | None = None
        if connection_role(caller, connection, ()) is None:
            # Not the owner: a grantee or nobody, decided before anything else is read
            # or its state reported.
            shares = await self._grants(caller, connection)
            if connection_role(caller, connection, shares) is None:
                raise connection_not_found(connection_id)
        connector = await self._connectors.get_for_invoke(
            connection.tenant_id, connection.connector_id
        )
        if connector is None:
            raise connection_not_found(connection_id)
        try:
            _check_usable(connection)
            connection = await self._check_binding(connection, connector)
        except GatewayError as exc:
            # The caller may use this connection, but it cannot be used now (disabled,
            # origin changed, consent missing): its owner sees the refusal in its
            # activity. (Probes by strangers were answered 404 above, recorded nowhere
            # but the caller's own activity.)
            self._audit.record(
                AuditEvent(
                    tenant_id=caller.tenant_id,
                    principal=principal_subject(caller),
                    action="invoke",
                    status=exc.status,
                    connection_id=connection.id,
                    connector_id=connection.connector_id,
                    correlation_id=correlation_id.get(),
                    detail=f"refused: {exc.code}",
                    connection_only=True,
                )
            )
            raise
        auth_type = await self._auth_type(connector, connection.parameter_set)
        binding = await self._binding(connector, connection) if auth_type == "oauth2" else None
        cached = _InvokeEntry(connection, connector, binding, shares)
        # Only usable connections are cached: a consent completed elsewhere must
        # show at once, not after the TTL.
        self._resolved.put(key, cached)
        return cached

    async def resolve_for_invoke(self, caller: Principal, connection_id: str) -> ResolvedConnection:
        """The connection, its connector and credentials, from caches when warm.

        Metadata is cached for GATEWAY_METADATA_CACHE_SECONDS; the secret by version
        (immutable), so a warm call reads neither Table Storage nor Key Vault.
        """
        key = (caller.tenant_id, connection_id)
        cached = self._resolved.get(key)
        if cached is None:
            cached = await self._load_once(caller, connection_id)
        connection, connector = cached.connection, cached.connector
        # Owner or grantee, checked on every call (the cache holds the grants too).
        role = connection_role(caller, connection, ())
        if role is None:
            if cached.shares is None:
                cached.shares = await self._grants(caller, connection)
            role = connection_role(caller, connection, cached.shares)
        if role is None:
            if self.is_admin(caller):
                raise ForbiddenError(
                    f"you may see connection {connection_id} but not invoke it",
                    code="not_a_grantee",
                )
            raise connection_not_found(connection_id)
        assert connection.secret_version is not None
        secret = await self._secrets.get_secret(connection.secret_name, connection.secret_version)
        payload = json.loads(secret.value)
        values: dict[str, str] = payload.get("parameters", {})
        for value in values.values():
            # Individual values too: an API key can show up alone, e.g. in a URL.
            register_secret(value)
        oauth = None
        if cached.binding is not None:
            stored = StoredTokens(
                TokenSet.from_secret(secret.value),
                connection.secret_version,
                connection.status.value,
            )
            oauth = OAuthCall(cached.binding, stored)
        if "envelope" in payload:
            scheme = (
                connector.auth
                if connector.source == "native"
                else AuthScheme("windows", windows_protocol="negotiate")
            )
            parameters = {**connection.plain_parameters}
            loaded_definition = (
                await self._connectors.definition(connector)
                if connector.source == "powerplatform"
                else None
            )
            return ResolvedConnection(
                connection,
                connector,
                scheme,
                {"envelope": payload["envelope"]},
                parameters,
                loaded_definition,
            )
        if connector.source == "native":
            return ResolvedConnection(
                connection, connector, connector.auth, values, dict(values), oauth=oauth
            )
        loaded = await self._connectors.definition(connector)
        scheme, credentials = _credentials_for(
            loaded.parsed, connection.parameter_set, values, connection.plain_parameters
        )
        parameters = {**connection.plain_parameters, **values}
        return ResolvedConnection(
            connection, connector, scheme, credentials, parameters, loaded, oauth
        )

    def forget(self, tenant_id: str, connection_id: str) -> None:
        """Drop this instance's cached view of a connection (after a change)."""
        self._resolved.evict((tenant_id, connection_id))


def _origin_changed(
    connection: Connection, bound: CredentialBinding | None, current: CredentialBinding
) -> ConnectionOriginChangedError:
    confirm = f"/api/connections/{connection.id}/confirm-origin"
    extra: dict[str, Any] = {"connectionId": connection.id, "confirm": confirm}
    if bound is not None:
        extra["boundOrigin"] = bound.origin
    extra["currentOrigin"] = current.origin
    return ConnectionOriginChangedError(
        f"the connector of connection {connection.id} now sends credentials to "
        f"{current.origin}"
        + (f" (entered for {bound.origin})" if bound and bound.origin != current.origin else "")
        + f" or injects them differently; nothing is sent until its owner confirms: POST {confirm}",
        extra=extra,
    )


def _check_usable(connection: Connection) -> None:
    if connection.status == ConnectionStatus.DISABLED:
        raise ForbiddenError(
            f"connection {connection.id} is disabled by an administrator",
            code="connection_disabled",
            extra={"connectionId": connection.id},
        )
    if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
        raise ReauthorizationRequiredError(
            f"connection {connection.id} needs reauthorization: POST /api/connections/{connection.id}/reauthorize",
            extra={
                "connectionId": connection.id,
                "reauthorize": f"/api/connections/{connection.id}/reauthorize",
            },
        )
    if connection.status == ConnectionStatus.CONSENT_REQUIRED:
        raise ConnectionNotUsableError(
            f"connection {connection.id} is waiting for consent: open its consent URL, or "
            f"POST /api/connections/{connection.id}/reauthorize for a new one",
            code="connection_consent_required",
            extra={
                "connectionId": connection.id,
                "reauthorize": f"/api/connections/{connection.id}/reauthorize",
            },
        )


def _credentials_for(
    definition: ConnectorDefinition,
    parameter_set: str | None,
    secret: dict[str, str],
    plain: dict[str, Any],
) -> tuple[AuthScheme, dict[str, str]]:
    """The injection scheme of an imported connector's parameter set, with its values."""
    option = definition.auth_option(parameter_set)
    values = {**{k: str(v) for k, v in plain.items()}, **secret}
    if option is None or option.type == "none":
        return AuthScheme("none"), {}
    if option.type == "basic":
        return AuthScheme("basic"), {
            "username": values.get("username", ""),
            "password": values.get("password", ""),
        }
    if option.type == "oauth2":
        return AuthScheme("oauth2"), {}
    if option.type == "apiKey" and option.api_key is not None:
        key = values.get(option.api_key.parameter, "")
        if not key:  # an optional key left empty: send nothing rather than an empty credential
            return AuthScheme("none"), {}
        scheme = AuthScheme(
            "apiKey", api_key_in=option.api_key.location, api_key_name=option.api_key.name
        )
        return scheme, {"api_key": key}
    raise AuthTypeNotSupportedError(f"{option.type} authentication is not supported yet")
