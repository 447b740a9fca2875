"""Connect links (issue 16): an app or admin asks for a link for one connector; the
person who opens it signs in, creates their own connection, and goes back to the app.

- A link is a random 256-bit token; the store keeps its SHA-256 only.
- Single use: completing a link first claims it (an ETag-conditioned write), then
  creates the connection; if creation fails the claim is released, so a mistyped key
  can be corrected. A completed link answers `connect_session_used` afterwards.
- The return URL's origin must be in `GATEWAY_CONNECT_RETURN_ORIGINS`; the new
  connection id is added to its query (`connectionId`).
- A link widens nobody's access: the creator and the person opening it must both be
  able to see the connector (own it, or have it shared with them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from functions.errors import (
    ConnectSessionError,
    ConnectSessionExpiredError,
    ConnectSessionUsedError,
    ForbiddenError,
    ValidationFailedError,
)
from functions.identity.principal import Principal
from functions.services.access import is_admin
from functions.services.connection_forms import connection_form
from functions.services.connections import ConnectionInput, ConnectionService, CreatedConnection
from functions.services.connectors import ConnectorService
from functions.stores.connect_sessions import ConnectSession, ConnectSessionStore, token_hash

DEFAULT_LIFETIME = timedelta(minutes=30)
# The link's path in the portal; the token travels in the fragment, which browsers
# never send to a server or put in a Referer.
LINK_PATH = "/portal/connect.html#session="
TOKEN_BYTES = 32


@dataclass(frozen=True)
class NewConnectSession:
    session: ConnectSession
    token: str
    link: str


@dataclass(frozen=True)
class CompletedConnectSession:
    created: CreatedConnection
    redirect_url: str


class ConnectSessionService:
    def __init__(
        self,
        store: ConnectSessionStore,
        connectors: ConnectorService,
        connections: ConnectionService,
        *,
        return_origins: tuple[str, ...],
        public_base_url: str | None,
        admin_role: str,
        admin_groups: tuple[str, ...],
    ) -> None:
        self._store = store
        self._connectors = connectors
        self._connections = connections
        self._origins = frozenset(o.lower() for o in return_origins)
        self._base_url = (public_base_url or "").rstrip("/")
        self._admin_role = admin_role
        self._admin_groups = admin_groups

    async def create(
        self,
        caller: Principal,
        connector_id: str,
        return_url: str,
        display_name: str | None = None,
        lifetime: timedelta = DEFAULT_LIFETIME,
        base_url: str | None = None,
    ) -> NewConnectSession:
        """A single-use link (apps and admins only). `base_url` is where the gateway was
        reached, used when no public base URL is configured."""
        if caller.kind != "app" and not is_admin(caller, self._admin_role, self._admin_groups):
            raise ForbiddenError(
                "connect sessions are created by applications and gateway administrators",
                code="connect_session_forbidden",
            )
        self._check_return_url(return_url)
        connector = await self._connectors.get_visible(caller, connector_id)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = datetime.now(UTC)
        session = ConnectSession(
            token_hash=token_hash(token),
            tenant_id=caller.tenant_id,
            connector_id=connector.id,
            return_url=return_url,
            created_by=caller.key,
            created_at=now,
            expires_at=now + lifetime,
            display_name=display_name,
        )
        await self._store.insert(session)
        link = f"{self._base_url or (base_url or '').rstrip('/')}{LINK_PATH}{token}"
        return NewConnectSession(session, token, link)

    async def open(self, caller: Principal, token: str) -> dict[str, Any]:
        """What the connect page shows: the connector's form. Does not use the link."""
        session = await self._usable(caller, token)
        connector = await self._connectors.get_visible(caller, session.connector_id)
        definition = (
            (await self._connectors.definition(connector)).parsed
            if connector.source == "powerplatform"
            else None
        )
        return {
            "displayName": session.display_name,
            "expiresAt": session.expires_at.isoformat(),
            "returnOrigin": _origin(session.return_url),
            "form": connection_form(connector, definition),
        }

    async def complete(
        self, caller: Principal, token: str, data: ConnectionInput
    ) -> CompletedConnectSession:
        session = await self._usable(caller, token)
        claimed = await self._store.replace_if_unchanged(
            replace(session, used_at=datetime.now(UTC), used_by=caller.key)
        )
        if claimed is None:
            raise ConnectSessionUsedError("this connect link has already been used")
        try:
            created = await self._connections.create(caller, session.connector_id, data)
        except BaseException:
            # Nothing was created: give the link back so the person can correct and retry.
            await self._store.replace_if_unchanged(replace(claimed, used_at=None, used_by=None))
            raise
        await self._store.replace_if_unchanged(
            replace(claimed, connection_id=created.connection.id)
        )
        return CompletedConnectSession(
            created, _with_query(session.return_url, connectionId=created.connection.id)
        )

    async def _usable(self, caller: Principal, token: str) -> ConnectSession:
        session = await self._store.get(token_hash(token)) if token else None
        if session is None or session.tenant_id != caller.tenant_id:
            raise ConnectSessionError(
                "this connect link is not valid: check that it was copied whole, "
                "or ask the application for a new one"
            )
        if session.used_at is not None:
            raise ConnectSessionUsedError(
                "this connect link has already been used; ask the application for a new one"
            )
        if session.expires_at <= datetime.now(UTC):
            raise ConnectSessionExpiredError(
                "this connect link has expired; ask the application for a new one"
            )
        return session

    def _check_return_url(self, return_url: str) -> None:
        origin = _origin(return_url)
        if origin is None or origin.lower() not in self._origins:
            message = (
                "returnUrl must be an http(s) URL whose origin is listed in "
                "GATEWAY_CONNECT_RETURN_ORIGINS"
            )
            raise ValidationFailedError(
                message, errors=[{"field": "returnUrl", "message": message}]
            )


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return f"{parts.scheme}://{netloc}"


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
