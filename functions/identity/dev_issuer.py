"""The local development issuer: an RSA key pair that mints Entra-shaped tokens.

The gateway validates these exactly like Entra ID tokens (same code, same checks); only
the issuer (`DEV_ISSUER_TEMPLATE`, under the reserved `.invalid` domain) and the key set
(derived from `GATEWAY_DEV_ISSUER_PRIVATE_KEY`, no network) differ. The validator trusts
this issuer only in development.

Object ids are derived from names (`uuid5`), so `--user alice` is the same principal in
every token and every run, and owns the same connections.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from functions.errors import ConfigurationError
from functions.settings import DEV_AUDIENCE, DEV_ISSUER_TEMPLATE, DEV_TENANT_ID

# Fixed namespace for deterministic dev object and application ids. Never change it:
# ownership records written in development refer to the ids derived from it.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://dev-issuer.connector-gateway.invalid/")
# The client application user tokens claim to come from (`azp`/`appid`), standing in
# for the app a real user would sign in to.
DEV_CLIENT_APP_NAME = "connector-gateway-cli"
USER_DOMAIN = "dev.invalid"
ALGORITHM = "RS256"


def generate_private_key_pem() -> str:
    """A new RSA-2048 private key as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_key(private_key_pem: str) -> rsa.RSAPrivateKey:
    """Parse the dev issuer key. Raises ConfigurationError (without the key) if unusable.

    Accepts PEM whose newlines were escaped as `\\n`, as happens when the key is
    pasted into a single-line environment variable.
    """
    pem = private_key_pem.strip()
    if "\n" not in pem and "\\n" in pem:
        pem = pem.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigurationError(
            "GATEWAY_DEV_ISSUER_PRIVATE_KEY is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ConfigurationError("GATEWAY_DEV_ISSUER_PRIVATE_KEY must be an RSA key of 2048+ bits")
    return key


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk(private_key_pem: str) -> dict[str, str]:
    """The public half as a JWK whose `kid` is its RFC 7638 thumbprint."""
    return _public_jwk(load_private_key(private_key_pem))


def _public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    # RFC 7638 section 3: required members only, sorted, no whitespace.
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("ascii")
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return {**members, "kid": kid, "use": "sig", "alg": ALGORITHM}


def public_jwks(private_key_pem: str) -> dict[str, Any]:
    """The JWKS (`{"keys": [jwk]}`) the gateway verifies dev tokens with."""
    return {"keys": [public_jwk(private_key_pem)]}


def object_id(tenant: str, kind: Literal["user", "app"], name: str) -> str:
    """The deterministic object id of a dev user or app in a tenant."""
    return str(uuid.uuid5(NAMESPACE, f"{tenant}:{kind}:{name}"))


def app_id(name: str) -> str:
    """The deterministic application (client) id of a dev app; like Entra's, not per tenant."""
    return str(uuid.uuid5(NAMESPACE, f"app:{name}"))


def mint_token(
    private_key_pem: str,
    *,
    user: str | None = None,
    app: str | None = None,
    tenant: str = DEV_TENANT_ID,
    audience: str = DEV_AUDIENCE,
    groups: Sequence[str] = (),
    roles: Sequence[str] = (),
    version: Literal[1, 2] = 2,
    lifetime_seconds: int = 3600,
) -> str:
    """An RS256 access token for `user` or `app` (exactly one), shaped like Entra's.

    User tokens carry `scp`, `name` and `preferred_username` (v2) or `upn` and
    `unique_name` (v1); app tokens carry `idtyp: app`, `sub == oid` and no `scp`.
    `groups` and `roles` are omitted when empty, as Entra does. `iss` is the dev issuer
    for the tenant in both versions.
    """
    if (user is None) == (app is None):
        raise ValueError("give exactly one of user or app")
    if version not in (1, 2):
        raise ValueError("version must be 1 or 2")
    if lifetime_seconds <= 0:
        raise ValueError("lifetime_seconds must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": DEV_ISSUER_TEMPLATE.format(tenant=tenant),
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "tid": tenant,
        "ver": "2.0" if version == 2 else "1.0",
    }
    if user is not None:
        claims.update(_user_claims(tenant, user, version))
    else:
        assert app is not None  # narrowed by the exactly-one check above
        claims.update(_app_claims(tenant, app, version))
    if groups:
        claims["groups"] = list(groups)
    if roles:
        claims["roles"] = list(roles)
    # Parsing a private key is slow (it is checked for consistency): do it once.
    key = load_private_key(private_key_pem)
    return jwt.encode(
        claims, key, algorithm=ALGORITHM, headers={"kid": _public_jwk(key)["kid"], "typ": "JWT"}
    )


def _client_claim(version: int, client_id: str) -> dict[str, str]:
    return {"azp": client_id} if version == 2 else {"appid": client_id}


def _user_claims(tenant: str, name: str, version: int) -> dict[str, Any]:
    oid = object_id(tenant, "user", name)
    client_id = app_id(DEV_CLIENT_APP_NAME)
    claims: dict[str, Any] = {
        "oid": oid,
        # Entra's user `sub` is pairwise (per client app), unlike `oid`; modelling that
        # keeps anything from keying on `sub` by accident.
        "sub": str(uuid.uuid5(NAMESPACE, f"{oid}:sub:{client_id}")),
        "name": name,
        "scp": "user_impersonation",
        **_client_claim(version, client_id),
    }
    username = f"{name}@{USER_DOMAIN}"
    if version == 2:
        claims["preferred_username"] = username
    else:
        claims["upn"] = username
        claims["unique_name"] = username
    return claims


def _app_claims(tenant: str, name: str, version: int) -> dict[str, Any]:
    oid = object_id(tenant, "app", name)
    return {"idtyp": "app", "oid": oid, "sub": oid, **_client_claim(version, app_id(name))}
