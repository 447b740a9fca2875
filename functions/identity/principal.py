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

    @property
    def share_keys(self) -> frozenset[str]:
        """The grant subjects that match this caller: `user:<oid>` or `app:<oid>` and
        `app:<client id>` (Logic Apps and other clients are granted by either), and
        `group:<id>` for each group in the token."""
        if self.kind == "app":
            keys = {f"app:{self.object_id}"}
            if self.app_id:
                keys.add(f"app:{self.app_id}")
        else:
            keys = {f"user:{self.object_id}"}
        keys.update(f"group:{group}" for group in self.groups)
        return frozenset(keys)
