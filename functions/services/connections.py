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

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.domain.models import AuthScheme, Connection, ConnectionStatus, Connector
from functions.powerplatform import ConnectorDefinition, validate_connection_parameters
from functions.errors import (
    ConflictError,
    ConnectionNotUsableError,
    GatewayError,
    NotFoundError,
    ValidationFailedError,
)
from functions.oauth import ReauthorizationRequiredError, StoredTokens, TokenSet
from functions.identity.principal import Principal
from functions.logging_redaction import register_secret
from functions.services.connectors import ConnectorService, LoadedDefinition
from functions.services.ids import is_valid_id, new_id
from functions.services.oauth import OAuthBinding, OAuthService
from functions.services.ttl_cache import TtlCache
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.tables import EntityChangedError, MetadataStore

log = logging.getLogger(__name__)

PENDING_GRACE = timedelta(minutes=10)
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


@dataclass(frozen=True)
class _InvokeEntry:
    connection: Connection
    connector: Connector
    binding: OAuthBinding | None


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
                {"field": f"parameters.{name}", "message": f"unknown parameter (expected: {expected})"}
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
            "invalid connection parameters: " + "; ".join(e["field"] + " " + e["message"] for e in errors),
            errors=errors,
        )
    return {name: str(value) for name, value in parameters.items()}


class ConnectionService:
    def __init__(
        self,
        store: MetadataStore,
        secrets: CachedSecretStore,
        connectors: ConnectorService,
        oauth: OAuthService,
        *,
        cache_seconds: float,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._connectors = connectors
        self._oauth = oauth
        self._resolved: TtlCache[_InvokeEntry] = TtlCache(cache_seconds)

    async def _auth_type(self, connector: Connector, parameter_set: str | None) -> str:
        if connector.source == "native":
            return connector.auth.type
        option = (await self._connectors.definition(connector)).parsed.auth_option(parameter_set)
        return option.type if option is not None else "none"

    async def _binding(self, connector: Connector, connection: Connection) -> OAuthBinding:
        definition = await self._connectors.definition(connector) if connector.source == "powerplatform" else None
        return await self._oauth.binding_for(connector, definition, connection.parameter_set, connection.plain_parameters)

    async def _validate(self, connector: Connector, data: ConnectionInput) -> tuple[dict[str, str], dict[str, Any], str | None]:
        """(secret values, plain values, parameter set) for a new connection."""
        if connector.source == "native":
            if data.parameter_set is not None:
                message = "native connectors have no parameter sets"
                raise ValidationFailedError(message, errors=[{"field": "parameterSet", "message": message}])
            return validate_parameters(connector.auth, data.parameters), {}, None
        definition = (await self._connectors.definition(connector)).parsed
        secret, plain = validate_connection_parameters(definition, data.parameter_set, data.parameters)
        option = definition.auth_option(data.parameter_set)
        if option is not None and option.type == "windows":
            raise AuthTypeNotSupportedError(
                f"connections using {option.type} authentication are not supported yet "
                f"(connector {connector.id}, parameter set {option.name or '(default)'})"
            )
        if option is not None and option.type == "basic":
            # Both halves of a basic credential are secret, whatever the type says.
            for name in ("username", "password"):
                if name in plain:
                    secret[name] = str(plain.pop(name))
        return secret, plain, data.parameter_set

    async def create(self, caller: Principal, connector_id: str, data: ConnectionInput) -> CreatedConnection:
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
        )
        binding = await self._binding(connector, connection) if auth_type == "oauth2" else None
        connection = await self._store.insert_connection(connection)
        try:
            payload = json.dumps({"format": SECRET_FORMAT_VERSION, "parameters": values})
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
                return CreatedConnection(refreshed, None)
            else:
                connection.status = ConnectionStatus.CONSENT_REQUIRED
                consent_url = await self._oauth.consent_url(caller, connection, binding)
            return CreatedConnection(await self._store.replace_connection(connection), consent_url)
        except BaseException:
            # Undo what we can; whatever remains stays pending (never usable) and is
            # removed by cleanup.
            await self._discard(connection)
            raise

    async def list_visible(self, caller: Principal) -> list[Connection]:
        items = await self._store.list_connections(caller.tenant_id, owner_id=caller.object_id)
        return [c for c in items if c.status not in (ConnectionStatus.PENDING, ConnectionStatus.DELETING)]

    async def reauthorize(self, caller: Principal, connection_id: str) -> str:
        """A fresh consent URL for an existing OAuth connection (keeps its id)."""
        connection = await self.get_visible(caller, connection_id)
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

    async def get_visible(self, caller: Principal, connection_id: str) -> Connection:
        connection = None
        if is_valid_id(connection_id):
            connection = await self._store.get_connection(caller.tenant_id, connection_id)
        if (
            connection is None
            or connection.owner_id != caller.object_id
            or connection.status in (ConnectionStatus.PENDING, ConnectionStatus.DELETING)
        ):
            raise connection_not_found(connection_id)
        return connection

    async def delete(self, caller: Principal, connection_id: str) -> None:
        """Delete a connection and its secret. Deleting a missing connection succeeds."""
        connection = None
        if is_valid_id(connection_id):
            connection = await self._store.get_connection(caller.tenant_id, connection_id)
        if connection is None or connection.owner_id != caller.object_id:
            return
        self._resolved.evict((caller.tenant_id, connection_id))
        if connection.status != ConnectionStatus.DELETING:
            connection.status = ConnectionStatus.DELETING
            try:
                connection = await self._store.replace_connection(connection)
            except EntityChangedError:
                # Changed concurrently (e.g. another delete): re-read and carry on.
                current = await self._store.get_connection(caller.tenant_id, connection_id)
                if current is None:
                    return
                connection = current
        await self._finish_delete(connection)

    async def _finish_delete(self, connection: Connection) -> None:
        await self._secrets.delete_secret(connection.secret_name)
        await self._store.delete_connection(connection.tenant_id, connection.id)
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

    async def resolve_for_invoke(self, caller: Principal, connection_id: str) -> ResolvedConnection:
        """The connection, its connector and credentials, from caches when warm.

        Metadata is cached for GATEWAY_METADATA_CACHE_SECONDS; the secret by version
        (immutable), so a warm call reads neither Table Storage nor Key Vault.
        """
        key = (caller.tenant_id, connection_id)
        cached = self._resolved.get(key)
        if cached is None:
            connection = await self.get_visible(caller, connection_id)
            connector = await self._store.get_connector(connection.tenant_id, connection.connector_id)
            if connector is None:
                raise connection_not_found(connection_id)
            _check_usable(connection)
            auth_type = await self._auth_type(connector, connection.parameter_set)
            binding = await self._binding(connector, connection) if auth_type == "oauth2" else None
            cached = _InvokeEntry(connection, connector, binding)
            # Only usable connections are cached: a consent completed elsewhere must
            # show at once, not after the TTL.
            self._resolved.put(key, cached)
        connection, connector = cached.connection, cached.connector
        if connection.owner_id != caller.object_id:
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
            stored = StoredTokens(TokenSet.from_secret(secret.value), connection.secret_version, connection.status.value)
            oauth = OAuthCall(cached.binding, stored)
        if connector.source == "native":
            return ResolvedConnection(connection, connector, connector.auth, values, dict(values), oauth=oauth)
        loaded = await self._connectors.definition(connector)
        scheme, credentials = _credentials_for(loaded.parsed, connection.parameter_set, values, connection.plain_parameters)
        parameters = {**connection.plain_parameters, **values}
        return ResolvedConnection(connection, connector, scheme, credentials, parameters, loaded, oauth)

    def forget(self, tenant_id: str, connection_id: str) -> None:
        """Drop this instance's cached view of a connection (after a change)."""
        self._resolved.evict((tenant_id, connection_id))


def _check_usable(connection: Connection) -> None:
    if connection.status == ConnectionStatus.REAUTHORIZATION_REQUIRED:
        raise ReauthorizationRequiredError(
            f"connection {connection.id} needs reauthorization: POST /api/connections/{connection.id}/reauthorize",
            extra={"connectionId": connection.id, "reauthorize": f"/api/connections/{connection.id}/reauthorize"},
        )
    if connection.status == ConnectionStatus.CONSENT_REQUIRED:
        raise ConnectionNotUsableError(
            f"connection {connection.id} is waiting for consent: open its consent URL, or "
            f"POST /api/connections/{connection.id}/reauthorize for a new one",
            code="connection_consent_required",
            extra={"connectionId": connection.id, "reauthorize": f"/api/connections/{connection.id}/reauthorize"},
        )


def _credentials_for(
    definition: ConnectorDefinition, parameter_set: str | None, secret: dict[str, str], plain: dict[str, Any]
) -> tuple[AuthScheme, dict[str, str]]:
    """The injection scheme of an imported connector's parameter set, with its values."""
    option = definition.auth_option(parameter_set)
    values = {**{k: str(v) for k, v in plain.items()}, **secret}
    if option is None or option.type == "none":
        return AuthScheme("none"), {}
    if option.type == "basic":
        return AuthScheme("basic"), {"username": values.get("username", ""), "password": values.get("password", "")}
    if option.type == "oauth2":
        return AuthScheme("oauth2"), {}
    if option.type == "apiKey" and option.api_key is not None:
        key = values.get(option.api_key.parameter, "")
        if not key:  # an optional key left empty: send nothing rather than an empty credential
            return AuthScheme("none"), {}
        scheme = AuthScheme("apiKey", api_key_in=option.api_key.location, api_key_name=option.api_key.name)
        return scheme, {"api_key": key}
    raise AuthTypeNotSupportedError(f"{option.type} authentication is not supported yet")
