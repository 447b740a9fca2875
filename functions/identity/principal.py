"""Who is calling: the identity taken from a validated bearer token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PrincipalKind = Literal["user", "app"]


@dataclass(frozen=True)
class Principal:
    """A validated caller. `object_id` is stable per tenant and is what ownership records.

    Users carry `oid` from the token; applications (service principals, managed
    identities: `idtyp: app`) carry their service principal `oid` and their `app_id`.
    """

    tenant_id: str
    object_id: str
    kind: PrincipalKind = "user"
    name: str | None = None
    app_id: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)
    roles: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        """Tenant-qualified id, safe to store as an owner reference."""
        return f"{self.tenant_id}/{self.object_id}"
