"""Who may do what: the gateway's access rules in one place, as pure functions.

Connector: its owner, and principals granted role `owner`, may edit, delete and share
it; principals granted `user` may see it and create their own connections (with their
own credentials). Connection: its owner may invoke, reauthorize, change credentials,
share and delete it; grantees (users, groups, apps) may see its metadata and invoke it,
acting with the owner's credentials; nothing else. Admins (an app role or group from
settings) may list, read metadata and activity of, and disable any connection in their
tenant; never read credentials, never invoke. Everything else is "not found".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from functions.domain.models import Connection, Connector, Share
from functions.identity.principal import Principal

ConnectorRole = Literal["owner", "user"]
ConnectionRole = Literal["owner", "grantee"]


def is_admin(caller: Principal, admin_role: str, admin_groups: Iterable[str]) -> bool:
    return admin_role in caller.roles or bool(set(caller.groups) & set(admin_groups))


def connector_role(
    caller: Principal, connector: Connector, shares: Iterable[Share]
) -> ConnectorRole | None:
    if caller.tenant_id != connector.tenant_id:
        return None
    if connector.owner_id == caller.object_id:
        return "owner"
    keys = caller.share_keys
    roles = {s.role for s in shares if s.resource_id == connector.id and s.subject in keys}
    if "owner" in roles:
        return "owner"
    if "user" in roles:
        return "user"
    return None


def connection_role(
    caller: Principal, connection: Connection, shares: Iterable[Share]
) -> ConnectionRole | None:
    if caller.tenant_id != connection.tenant_id:
        return None
    if connection.owner_id == caller.object_id:
        return "owner"
    keys = caller.share_keys
    if any(s.resource_id == connection.id and s.subject in keys for s in shares):
        return "grantee"
    return None
