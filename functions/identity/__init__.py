"""Who is calling: bearer-token validation (Entra ID and the local dev issuer)."""

from __future__ import annotations

from functions.identity.principal import Principal, PrincipalKind
from functions.identity.tokens import TokenValidator

__all__ = ["Principal", "PrincipalKind", "TokenValidator"]
