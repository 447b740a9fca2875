"""OAuth 2.0 connections: consent, callback, bearer tokens on invoke, and the refresh job.

The protocol work is in `functions.oauth` (framework-free); this service binds it to
connectors and connections:

- which provider and client a connection uses (`binding_for`): a native connector's
  `auth.oauth` names a catalog provider; an imported Power Platform connector's
  `oauthSetting` parameter names an identity provider, mapped onto the catalog below;
- consent start / reauthorize (a URL with PKCE, state, nonce), client credentials;
- the callback (single-use state bound to the connection and the user who asked);
- the access token for an invocation (`access_token`), refreshed through the shared
  `TokenRefresher` (one refresh per expiry across instances);
- the timer job (`refresh_due`).

The OAuth client secret lives in the secret store (`connector-{connector id}`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from functions.domain.models import Connection, ConnectionStatus, Connector
from functions.errors import ConflictError, GatewayError, OnBehalfOfAssertionRejectedError
from functions.identity.principal import Principal
from functions.oauth import (
    OAuthClient,
    OAuthStateError,
    OAuthStateExpiredError,
    ProviderCatalog,
    ProviderError,
    ReauthorizationRequiredError,
    ResolvedProvider,
    StoredTokens,
    TableStateStore,
    TokenEndpointClient,
    TokenRefresher,
    TokenSet,
    finish_consent,
    start_consent,
)
from functions.oauth.certificates import is_certificate_bundle
from functions.oauth.errors import CatalogError
from functions.oauth.obo import OnBehalfOfExchanger
from functions.oauth.obo import user_key as obo_user_key
from functions.oauth.state_store import OAuthStateRecord
from functions.oauth.table_store import TableConnectionTokenStore
from functions.observability import correlation_id
from functions.powerplatform import OAuth2Settings
from functions.powerplatform.auth import is_placeholder_client_id
from functions.services.connectors import ConnectorService, LoadedDefinition, connector_secret_name
from functions.stores.audit import AuditEvent, AuditLog
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.tables import MetadataStore
from functions.webhooks import events
from functions.webhooks.events import NO_EVENTS, EventSink

log = logging.getLogger(__name__)

CALLBACK_PATH = "/api/oauth/callback"

# Power Platform identity providers -> catalog providers, and where each catalog
# setting comes from in the definition's oAuthSettings (data, not code paths).
# "settings" are URLs: their `{connection parameter}` placeholders are filled here.
# "templates" are request templates (catalog `requestTemplates`), passed verbatim: the
# OAuth engine renders them per request, with the connection's parameters as
# `param:<name>` values (plain ones, and secret ones when the caller supplies them).
POWER_PLATFORM_PROVIDERS: dict[str, dict[str, Any]] = {
    "oauth2": {
        "provider": "generic-oauth2",
        "settings": {
            "authorization_url": "authorizationUrl",
            "token_url": "tokenUrl",
            "refresh_url": "refreshUrl",
        },
    },
    "oauth2generic": {
        "provider": "generic-oauth2-templates",
        "settings": {
            "authorization_url": "authorizationUrl",
            "token_url": "tokenUrl",
            "refresh_url": "refreshUrl",
        },
        "templates": {
            "authorization_query_template": "custom:authorizationUrlQueryStringTemplate",
            "token_query_template": "custom:tokenUrlQueryStringTemplate",
            "token_body_template": "custom:tokenBodyTemplate",
            "refresh_query_template": "custom:refreshUrlQueryStringTemplate",
            "refresh_body_template": "custom:refreshBodyTemplate",
            "scope_delimiter": "custom:scopeListDelimiter",
        },
    },
    "aad": {"provider": "entra-id", "settings": {"tenant": "custom:tenantId"}},
    # The same Entra ID endpoints; the app authenticates with a certificate (the
    # connector's client credential is a PEM bundle: `functions.oauth.certificates`).
    "aadcertificate": {
        "provider": "entra-id",
        "settings": {"tenant": "custom:tenantId"},
        "clientCertificate": True,
    },
    "github": {"provider": "github", "settings": {}},
}


class OAuthNotConfiguredError(ConflictError):
    code = "oauth_client_not_configured"
    title = "The connector's OAuth client is not configured"


class OAuthNotSupportedError(GatewayError):
    status = 501
    code = "auth_type_not_supported"
    title = "Authentication type not supported"


@dataclass(frozen=True)
class OAuthBinding:
    """Everything needed to talk to the provider for one connection."""

    provider: ResolvedProvider
    client: OAuthClient
    redirect_uri: str
    # "on_behalf_of": Entra ID on-behalf-of (`aad` with `enableOnbehalfOfLogin`): the
    # caller's own token is exchanged per call (`on_behalf_of_token`); no consent.
    grant: Literal["authorization_code", "client_credentials", "on_behalf_of"] = (
        "authorization_code"
    )


@dataclass(frozen=True)
class CallbackResult:
    outcome: Literal[
        "connected", "denied", "invalid_state", "expired_state", "provider_error", "error"
    ]
    message: str
    connection_id: str | None = None


class OAuthService:
    events: EventSink = NO_EVENTS  # connection-health webhooks (issue 19)

    def __init__(
        self,
        metadata: MetadataStore,
        secrets: CachedSecretStore,
        connectors: ConnectorService,
        states: TableStateStore,
        tokens: TokenEndpointClient,
        refresher: TokenRefresher,
        catalog: ProviderCatalog,
        http: httpx.AsyncClient,
        audit: AuditLog,
        *,
        public_base_url: str | None,
        on_behalf_of: OnBehalfOfExchanger | None = None,
    ) -> None:
        self._audit = audit
        self._obo = on_behalf_of or OnBehalfOfExchanger(tokens)
        self._metadata = metadata
        self._secrets = secrets
        self._connectors = connectors
        self._states = states
        self._tokens = tokens
        self._refresher = refresher
        self._catalog = catalog
        self._http = http
        self._public_base_url = public_base_url
        # The newest tokens this instance has seen per connection, so a refresh done
        # here is used at once instead of after the metadata cache expires.
        self._latest: dict[tuple[str, str], StoredTokens] = {}

    # -- configuration ---------------------------------------------------------------

    async def binding_for_connection(
        self,
        connector: Connector,
        definition: LoadedDefinition | None,
        connection: Connection,
        secret_parameters: dict[str, Any] | None = None,
    ) -> OAuthBinding:
        """The binding of an existing connection; its secret parameters (template values
        such as a client secret given at connection creation) are read when not given."""
        if secret_parameters is None:
            secret_parameters = {}
            if definition is not None and connection.secret_version:
                secret = await self._secrets.get_secret(
                    connection.secret_name, connection.secret_version
                )
                secret_parameters = json.loads(secret.value).get("parameters", {})
        return await self.binding_for(
            connector,
            definition,
            connection.parameter_set,
            connection.plain_parameters,
            secret_parameters,
        )

    async def binding_for(
        self,
        connector: Connector,
        definition: LoadedDefinition | None,
        parameter_set: str | None,
        plain_parameters: dict[str, Any],
        secret_parameters: dict[str, Any] | None = None,
    ) -> OAuthBinding:
        grant: Literal["authorization_code", "client_credentials", "on_behalf_of"]
        needs_certificate = False
        if definition is None:
            assert connector.auth.oauth is not None
            scheme = connector.auth.oauth
            provider_id, values, scopes, grant = (
                scheme.provider,
                dict(scheme.settings),
                scheme.scopes,
                scheme.grant,
            )
            client_id = connector.oauth_client.client_id if connector.oauth_client else None
        else:
            option = definition.parsed.auth_option(parameter_set)
            if option is None or option.oauth2 is None:
                raise OAuthNotSupportedError(
                    "this connection's parameter set does not use OAuth 2.0"
                )
            provider_id, values, scopes = _power_platform_provider(
                option.oauth2, plain_parameters, secret_parameters
            )
            grant = "on_behalf_of" if on_behalf_of_enabled(option.oauth2) else "authorization_code"
            needs_certificate = _needs_certificate(option.oauth2)
            # A client configured on the gateway (PUT .../oauth-client, or the import's
            # client secret) wins; otherwise a custom connector's own client id is used.
            # Certified connectors ship placeholders ("[[CLIENT ID]]", "PLACEHOLDER_...").
            client_id = connector.oauth_client.client_id if connector.oauth_client else None
            if client_id is None and not is_placeholder_client_id(option.oauth2.client_id):
                client_id = option.oauth2.client_id
        # A configured id is the maker's choice; only a copied-over placeholder is refused.
        if not client_id or (definition is not None and is_placeholder_client_id(client_id)):
            raise OAuthNotConfiguredError(
                f"connector {connector.id} has no OAuth client id (its definition ships a "
                f"placeholder); PUT /api/connectors/{connector.id}/oauth-client first"
            )
        secret = await self._client_secret(connector)
        if needs_certificate and not is_certificate_bundle(secret):
            raise OAuthNotConfiguredError(
                f"connector {connector.id} authenticates its OAuth client with a certificate "
                f"(aadcertificate): PUT /api/connectors/{connector.id}/oauth-client with "
                "clientCertificate (PEM private key + certificate) first"
            )
        try:
            provider = await self._catalog.resolve(provider_id, values, http=self._http)
        except CatalogError as exc:
            raise OAuthNotConfiguredError(f"connector {connector.id}: {exc}") from None
        redirect = (
            connector.oauth_client.redirect_uri if connector.oauth_client else None
        ) or self._fixed_redirect()
        return OAuthBinding(
            provider, OAuthClient(client_id, secret, tuple(scopes)), redirect, grant
        )

    def _fixed_redirect(self) -> str:
        if not self._public_base_url:
            raise OAuthNotConfiguredError(
                "GATEWAY_PUBLIC_BASE_URL is not set: the OAuth redirect URI needs the gateway's external URL"
            )
        return self._public_base_url.rstrip("/") + CALLBACK_PATH

    async def _client_secret(self, connector: Connector) -> str | None:
        if connector.oauth_client is None or connector.oauth_client.secret_version is None:
            return None
        secret = await self._secrets.get_secret(
            connector_secret_name(connector.id), connector.oauth_client.secret_version
        )
        return secret.value

    # -- consent ---------------------------------------------------------------------

    async def consent_url(
        self, caller: Principal, connection: Connection, binding: OAuthBinding
    ) -> str:
        request = await start_consent(
            binding.provider,
            binding.client,
            self._states,
            tenant_id=connection.tenant_id,
            connection_id=connection.id,
            user_id=caller.object_id,
            redirect_uri=binding.redirect_uri,
        )
        return request.url

    async def connect_client_credentials(
        self, connection: Connection, binding: OAuthBinding
    ) -> None:
        """Service connections: no user, tokens from the client-credentials grant."""
        tokens = await self._tokens.client_credentials(binding.provider, binding.client)
        await self._token_store(connection).store_consent(tokens, connection.secret_name)

    async def handle_callback(self, params: dict[str, str]) -> CallbackResult:
        """Complete a consent; every outcome tied to a state record is audited."""
        result, record, connection = await self._callback(params)
        if result.outcome == "connected" and connection is not None:
            self.events.emit(events.CONSENT_COMPLETED, connection, status="connected")
        if record is not None:
            self._audit.record(
                AuditEvent(
                    tenant_id=record.tenant_id,
                    principal=f"user:{record.user_id}",
                    action="consent",
                    status=200 if result.outcome == "connected" else 400,
                    connection_id=record.connection_id,
                    connector_id=connection.connector_id if connection else None,
                    correlation_id=correlation_id.get(),
                    detail=result.outcome,
                )
            )
        return result

    async def _callback(
        self, params: dict[str, str]
    ) -> tuple[CallbackResult, OAuthStateRecord | None, Connection | None]:
        state = params.get("state", "")
        if not state:
            return (
                CallbackResult(
                    "invalid_state",
                    "The sign-in response had no state. Start again from the gateway.",
                ),
                None,
                None,
            )
        try:
            record = await self._states.consume(state)
        except OAuthStateExpiredError:
            return (
                CallbackResult(
                    "expired_state", "This sign-in link has expired. Start again from the gateway."
                ),
                None,
                None,
            )
        except OAuthStateError:
            return (
                CallbackResult(
                    "invalid_state",
                    "This sign-in response is not valid or was already used. Start again from the gateway.",
                ),
                None,
                None,
            )
        if params.get("error"):
            denied = params["error"] == "access_denied"
            return (
                CallbackResult(
                    "denied" if denied else "provider_error",
                    "Access was not granted; the connection was not changed."
                    if denied
                    else f"The provider reported an error ({_safe_code(params['error'])}); the connection was not changed.",
                    record.connection_id,
                ),
                record,
                None,
            )
        connection = await self._metadata.get_connection(record.tenant_id, record.connection_id)
        if (
            connection is None
            or connection.owner_id != record.user_id
            or connection.status
            in (
                ConnectionStatus.PENDING,
                ConnectionStatus.DELETING,
            )
        ):
            return (
                CallbackResult(
                    "invalid_state", "The connection for this sign-in no longer exists."
                ),
                record,
                None,
            )
        connector = await self._metadata.get_connector(
            connection.tenant_id, connection.connector_id
        )
        if connector is None:
            return (
                CallbackResult("invalid_state", "The connector for this sign-in no longer exists."),
                record,
                connection,
            )
        definition = (
            await self._connectors.definition(connector)
            if connector.source == "powerplatform"
            else None
        )
        try:
            binding = await self.binding_for_connection(connector, definition, connection)
            issuer = params.get("iss")
            if issuer and binding.provider.issuer and issuer != binding.provider.issuer:
                # RFC 9207: the response names another authorization server (mix-up
                # attack); never send it our code verifier.
                log.warning("OAuth callback issuer mismatch for connection %s", connection.id)
                return (
                    CallbackResult(
                        "provider_error",
                        "The sign-in response came from an unexpected issuer.",
                        connection.id,
                    ),
                    record,
                    connection,
                )
            tokens = await finish_consent(
                record, binding.provider, binding.client, self._tokens, code=params.get("code", "")
            )
            await self._token_store(connection).store_consent(tokens, connection.secret_name)
        except ProviderError as exc:
            log.warning("OAuth code exchange failed for connection %s: %s", connection.id, exc.code)
            return (
                CallbackResult(
                    "provider_error", "The provider refused the sign-in; try again.", connection.id
                ),
                record,
                connection,
            )
        except GatewayError as exc:
            log.warning("OAuth callback failed for connection %s: %s", connection.id, exc.code)
            return (
                CallbackResult(
                    "error", "The gateway could not complete the sign-in; try again.", connection.id
                ),
                record,
                connection,
            )
        self._latest.pop((connection.tenant_id, connection.id), None)
        return (
            CallbackResult(
                "connected", "The connection is ready. You can close this window.", connection.id
            ),
            record,
            connection,
        )

    # -- invoke ----------------------------------------------------------------------

    async def access_token(
        self,
        connection: Connection,
        binding: OAuthBinding,
        stored: StoredTokens,
        *,
        force: bool = False,
    ) -> str:
        key = (connection.tenant_id, connection.id)
        latest = self._latest.get(key)
        current = stored
        if (
            latest is not None
            and latest.tokens is not None
            and (stored.tokens is None or _expiry(latest.tokens) > _expiry(stored.tokens))
        ):
            current = latest
        try:
            tokens = await self._refresher.ensure_fresh(
                self._token_store(connection),
                binding.provider,
                binding.client,
                current=current,
                force=force,
            )
        except ReauthorizationRequiredError as exc:
            exc.extra.setdefault("reauthorize", f"/api/connections/{connection.id}/reauthorize")
            exc.extra.setdefault("connectionId", connection.id)
            self._record_refresh_failure(connection, exc)
            raise
        except GatewayError as exc:
            self._record_refresh_failure(connection, exc)
            raise
        if current.tokens is None or tokens.access_token != current.tokens.access_token:
            self._latest[key] = StoredTokens(tokens=tokens, version=None)
            self.events.emit(events.TOKEN_REFRESHED, connection, status="connected")
        return tokens.access_token

    async def on_behalf_of_token(
        self, caller: Principal, assertion: str, binding: OAuthBinding
    ) -> str:
        """The downstream token for `caller` on an on-behalf-of connector: `assertion`
        is the caller's own (validated) bearer token. Cached per user and scope, never
        beyond the caller's token (see `functions.oauth.obo`)."""
        if binding.grant != "on_behalf_of":
            raise OAuthNotSupportedError("this connector does not use on-behalf-of sign-in")
        if caller.kind != "user":
            raise OnBehalfOfAssertionRejectedError(
                "on-behalf-of needs a user's token; an application has no user to act for"
            )
        tokens = await self._obo.token_for(
            binding.provider,
            binding.client,
            assertion,
            user_key=obo_user_key(caller.tenant_id, caller.object_id),
            scopes=binding.client.scopes,
        )
        return tokens.access_token

    async def revoke(self, connector: Connector, connection: Connection) -> bool:
        """Best effort, when a connection is deleted: revoke its grant at the provider
        (RFC 7009), so deleting a connection also ends the third party's consent. Never
        raises: a provider without revocation, or one that is down, does not block the
        delete (the tokens are purged from the vault either way)."""
        try:
            if not connection.secret_version:
                return False
            secret = await self._secrets.get_secret(
                connection.secret_name, connection.secret_version
            )
            tokens = TokenSet.from_secret(secret.value)
            if tokens is None:
                return False
            definition = (
                await self._connectors.definition(connector)
                if connector.source == "powerplatform"
                else None
            )
            binding = await self.binding_for_connection(connector, definition, connection)
            return await self._tokens.revoke(binding.provider, binding.client, tokens)
        except GatewayError as exc:
            log.warning("could not revoke the grant of connection %s: %s", connection.id, exc.code)
            return False

    def _record_refresh_failure(self, connection: Connection, exc: GatewayError) -> None:
        events.emit_refresh_failure(self.events, connection, exc)
        self._audit.record(
            AuditEvent(
                tenant_id=connection.tenant_id,
                principal=f"user:{connection.owner_id}",
                action="refresh.failure",
                status=exc.status,
                connection_id=connection.id,
                connector_id=connection.connector_id,
                correlation_id=correlation_id.get(),
                detail=exc.code,
            )
        )

    def _token_store(self, connection: Connection) -> TableConnectionTokenStore:
        return TableConnectionTokenStore(
            self._metadata.connections_client,
            self._secrets,
            connection.tenant_id,
            connection.id,
            secret_tags={"connection": connection.id, "connector": connection.connector_id},
        )

    # -- timer -----------------------------------------------------------------------

    async def refresh_due(
        self, *, horizon: timedelta = timedelta(minutes=10), limit: int = 200
    ) -> dict[str, int]:
        """Refresh connected OAuth connections whose access token expires within
        `horizon` (plus the provider margin), a bounded batch per run, a few at a
        time. Regular refreshes also keep refresh tokens from expiring idle. The lease
        keeps this from racing the request path."""
        now = datetime.now(UTC)
        due = await self._metadata.list_connections_expiring(now + horizon)
        summary = {"due": len(due), "refreshed": 0, "failed": 0}
        gate = asyncio.Semaphore(4)

        async def refresh(connection: Connection) -> None:
            async with gate:
                try:
                    connector = await self._metadata.get_connector(
                        connection.tenant_id, connection.connector_id
                    )
                    if connector is None:
                        return
                    definition = (
                        await self._connectors.definition(connector)
                        if connector.source == "powerplatform"
                        else None
                    )
                    binding = await self.binding_for_connection(connector, definition, connection)
                    store = self._token_store(connection)
                    current = await store.read_current()
                    margin = binding.provider.spec.refresh_margin_seconds
                    if current.tokens is not None and not current.tokens.expires_within(
                        horizon.total_seconds() + current.tokens.refresh_margin(margin)
                    ):
                        return
                    await self._refresher.ensure_fresh(
                        store, binding.provider, binding.client, current=current, force=True
                    )
                    summary["refreshed"] += 1
                    self.events.emit(events.TOKEN_REFRESHED, connection, status="connected")
                except GatewayError as exc:
                    summary["failed"] += 1
                    self._record_refresh_failure(connection, exc)
                    log.warning(
                        "scheduled refresh failed for connection %s: %s", connection.id, exc.code
                    )

        await asyncio.gather(*(refresh(c) for c in due[:limit]))
        return summary


def _expiry(tokens: TokenSet) -> datetime:
    return tokens.expires_at or datetime.max.replace(tzinfo=UTC)


def _safe_code(value: str) -> str:
    """An OAuth error code for display: RFC 6749 codes are [\\x20-\\x7E] without quotes;
    keep it short and plain."""
    return re.sub(r"[^A-Za-z0-9_.-]", "", value)[:64] or "unknown"


_TEMPLATE = re.compile(r"\{([A-Za-z0-9_:.-]+)\}")


def _power_platform_provider(
    settings: OAuth2Settings,
    plain_parameters: dict[str, Any],
    secret_parameters: dict[str, Any] | None = None,
) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """(catalog provider, its settings, scopes) for a definition's oAuthSettings.

    `secret_parameters` (the connection's secret values) only ever feed request
    templates (token / refresh bodies, `{BigEvalClientSecret}`), never URLs.
    """
    mapping = POWER_PLATFORM_PROVIDERS.get(settings.identity_provider)
    if mapping is None:
        mapping = POWER_PLATFORM_PROVIDERS.get(settings.identity_provider.lower())
    if mapping is None:
        raise OAuthNotSupportedError(
            f"the {settings.identity_provider!r} identity provider is not supported "
            f"(supported: {', '.join(sorted(POWER_PLATFORM_PROVIDERS))})"
        )
    sources = {
        "authorizationUrl": settings.authorization_url,
        "tokenUrl": settings.token_url,
        "refreshUrl": settings.refresh_url,
    }

    def lookup(source: str) -> Any:
        if source.startswith("custom:"):
            raw = settings.custom_parameters.get(source[7:])
            return raw.get("value") if isinstance(raw, dict) else raw
        return sources.get(source)

    values: dict[str, str] = {}
    for name, source in mapping["settings"].items():
        value = lookup(source)
        if value:
            values[name] = _render_connection_template(str(value), plain_parameters)
    templates = mapping.get("templates") or {}
    for name, source in templates.items():
        value = lookup(source)
        if isinstance(value, str) and value:
            values[name] = value
    if templates:
        for parameter, value in {**plain_parameters, **(secret_parameters or {})}.items():
            if value is not None:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                values[f"param:{parameter}"] = text
    scopes = settings.scopes
    resource = settings.custom_parameters.get("resourceUri")
    resource_uri = resource.get("value") if isinstance(resource, dict) else resource
    if not scopes and resource_uri:
        # Power Platform's aad provider names a v1 resource; v2 endpoints take a scope.
        scopes = (f"{str(resource_uri).rstrip('/')}/.default",)
    return mapping["provider"], values, tuple(scopes)


def _render_connection_template(value: str, parameters: dict[str, Any]) -> str:
    """oauth2generic URLs name connection parameters in braces: `{instanceUrl}/token`.

    Values go in as given (a whole base URL is the usual value; the catalog then checks
    the result is an https URL), without a trailing slash. Names are matched exactly,
    then with the `token:` prefix Power Platform gives oauth parameters, then ignoring
    case."""
    lowered = {str(key).lower(): value for key, value in parameters.items()}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        for candidate in (name, f"token:{name}"):
            if candidate in parameters:
                return str(parameters[candidate]).rstrip("/")
        for candidate in (name.lower(), f"token:{name.lower()}"):
            if candidate in lowered:
                return str(lowered[candidate]).rstrip("/")
        raise OAuthNotConfiguredError(
            f"the OAuth URL template needs the connection parameter {name!r}"
        )

    return _TEMPLATE.sub(substitute, value)


def on_behalf_of_enabled(settings: OAuth2Settings) -> bool:
    """Power Platform's `aad` provider with `enableOnbehalfOfLogin` set to true (the
    custom parameter is a string "true"/"false" in definitions, sometimes a boolean)."""
    if settings.identity_provider.lower() != "aad":
        return False
    raw = settings.custom_parameters.get("enableOnbehalfOfLogin")
    value = raw.get("value") if isinstance(raw, dict) else raw
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _needs_certificate(settings: OAuth2Settings | None) -> bool:
    if settings is None:
        return False
    mapping = POWER_PLATFORM_PROVIDERS.get(settings.identity_provider.lower()) or {}
    return bool(mapping.get("clientCertificate"))
