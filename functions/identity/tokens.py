"""Caller authentication: validate a bearer JWT and turn it into a `Principal`.

Trusted issuers are Microsoft Entra ID v1 (`https://sts.windows.net/{tid}/`) and v2
(`https://login.microsoftonline.com/{tid}/v2.0`), verified with keys from the JWKS at
`settings.jwks_url`, and, in development only, the local dev issuer (see
`dev_issuer.py`), verified with a key set derived from its private key. Both go through
the same checks.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.api_jwt import decode_complete

from functions.errors import UnauthenticatedError
from functions.identity.dev_issuer import public_jwks
from functions.identity.jwks import JwksCache, KeySource, StaticJwks, UnknownSigningKeyError
from functions.identity.principal import Principal, PrincipalKind
from functions.settings import DEV_ISSUER_TEMPLATE, Settings

# Validated tokens are remembered for at most this long (and never past `exp`), so a
# signing key withdrawn from the JWKS stops being honoured within this bound too.
VALIDATED_CACHE_SECONDS = 300.0
VALIDATED_CACHE_SIZE = 10_000

logger = logging.getLogger(__name__)

ENTRA_V1_ISSUER_TEMPLATE = "https://sts.windows.net/{tenant}/"
ENTRA_V2_ISSUER_TEMPLATE = "https://login.microsoftonline.com/{tenant}/v2.0"
# Fixed, never taken from the token (RFC 8725 section 2.1): asymmetric only, so a
# public key can never double as an HMAC secret.
ALGORITHMS: tuple[str, ...] = ("RS256",)
CLOCK_SKEW_SECONDS = 60
REQUIRED_CLAIMS: tuple[str, ...] = ("exp", "iat", "iss", "aud", "tid")
# Entra tokens carrying many groups are a few kilobytes; anything far larger is not a
# token we issued and is refused before any parsing.
MAX_TOKEN_LENGTH = 32 * 1024

_INVALID_CHALLENGE = 'Bearer realm="connector-gateway", error="invalid_token"'


@dataclass(frozen=True)
class TrustedIssuer:
    """An issuer URL template (with `{tenant}`) and the keys that sign its tokens."""

    template: str
    keys: KeySource

    def issuer_for(self, tenant_id: str) -> str:
        return self.template.format(tenant=tenant_id)


def invalid_token(reason: str) -> UnauthenticatedError:
    """The 401 for a token that was presented but is not acceptable.

    `reason` names the failed check; it must never contain the token or its claims.
    """
    return UnauthenticatedError(
        f"invalid bearer token: {reason}",
        code="invalid_token",
        headers={"WWW-Authenticate": _INVALID_CHALLENGE},
    )


class TokenValidator:
    """Validates `Authorization: Bearer <jwt>` headers.

    Order of checks, cheapest and least trusting first: header syntax; token shape and
    size; `alg` (RS256 only, before any key lookup, so `none` and HS* never reach a
    key); issuer, selected by the unverified `iss` and `tid` (`iss` must equal a trusted
    template filled with `tid`, which also pins the key set: dev keys never verify an
    Entra issuer); signature with the `kid`'s key; then `jwt.decode` checks exp, nbf,
    iat (60 s skew), aud and iss; finally the now-authentic `tid` must be an allowed
    tenant. Unverified claims only choose which keys to try; every accepted value is
    re-checked on the verified payload.

    Failures raise `UnauthenticatedError`: code `unauthenticated` when no bearer token
    was sent, `invalid_token` with a short reason otherwise. An unreachable JWKS raises
    `JwksUnavailableError` (503), not 401: the caller is not at fault. A warm path makes
    no network calls (keys are cached; validated tokens are not).
    """

    def __init__(
        self,
        *,
        tenant_ids: Iterable[str],
        audiences: Iterable[str],
        issuers: Sequence[TrustedIssuer],
        leeway_seconds: float = CLOCK_SKEW_SECONDS,
    ) -> None:
        self.tenant_ids = frozenset(tenant_ids)
        self.audiences = tuple(audiences)
        self.issuers = tuple(issuers)
        self.leeway_seconds = leeway_seconds
        # sha256(token) -> (principal, remember until): see `authenticate`.
        self._validated: dict[bytes, tuple[Principal, float]] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, http: httpx.AsyncClient | None = None
    ) -> TokenValidator:
        """Entra v1 and v2 issuers, plus the dev issuer when it is enabled.

        The dev issuer is trusted only when `settings.is_development` and a dev issuer
        private key is configured. Raises ConfigurationError if that key is unusable.
        """
        entra_keys = JwksCache(settings.jwks_url, http=http)
        issuers = [
            TrustedIssuer(ENTRA_V1_ISSUER_TEMPLATE, entra_keys),
            TrustedIssuer(ENTRA_V2_ISSUER_TEMPLATE, entra_keys),
        ]
        if settings.is_development and settings.dev_issuer_private_key:
            dev_keys = StaticJwks(public_jwks(settings.dev_issuer_private_key))
            issuers.append(TrustedIssuer(DEV_ISSUER_TEMPLATE, dev_keys))
        return cls(tenant_ids=settings.tenant_ids, audiences=settings.audiences, issuers=issuers)

    async def authenticate(self, authorization_header: str | None) -> Principal:
        """The caller named by a valid bearer token in `authorization_header`.

        Tokens that validated are remembered (by their SHA-256) until they expire, at
        most VALIDATED_CACHE_SECONDS: a client reusing its token (the usual case) skips
        the signature check. Bounded, so it cannot grow without limit.
        """
        token = _bearer_token(authorization_header)
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        cached = self._validated.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            principal = await self.validate(token)
        except UnauthenticatedError as exc:
            logger.info("rejected bearer token: %s", exc.detail)
            raise
        expires = _expiry(token)
        if len(self._validated) >= VALIDATED_CACHE_SIZE:
            self._validated.clear()
        self._validated[digest] = (principal, min(expires, now + VALIDATED_CACHE_SECONDS))
        return principal

    async def validate(self, token: str) -> Principal:
        """The caller named by `token` (a compact JWS). Raises as `authenticate` does."""
        header, unverified = _unverified_parts(token)
        if header.get("alg") not in ALGORITHMS:
            raise invalid_token("unsupported algorithm")
        issuer = self._issuer_for(unverified)
        key = await _signing_key(issuer.keys, header.get("kid"))
        claims = self._decode(token, key, issuer.issuer_for(unverified["tid"]))
        if claims["tid"] not in self.tenant_ids:
            raise invalid_token("tenant not allowed")
        return principal_from_claims(claims)

    def _issuer_for(self, claims: dict[str, Any]) -> TrustedIssuer:
        iss, tid = claims.get("iss"), claims.get("tid")
        if not isinstance(tid, str) or not tid:
            raise invalid_token("missing claim tid")
        if not isinstance(iss, str):
            raise invalid_token("missing claim iss")
        for issuer in self.issuers:
            if issuer.issuer_for(tid) == iss:
                return issuer
        # Covers foreign issuers, the dev issuer outside development, and an `iss`
        # naming a different tenant than `tid`.
        raise invalid_token("wrong issuer")

    def _decode(self, token: str, key: jwt.PyJWK, issuer: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=list(self.audiences),
                issuer=issuer,
                leeway=self.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise invalid_token(_reason(exc)) from None
        return claims


def _bearer_token(authorization_header: str | None) -> str:
    if authorization_header is None or not authorization_header.strip():
        raise UnauthenticatedError("missing Authorization header; send 'Bearer <token>'")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise UnauthenticatedError("the Authorization header must use the Bearer scheme")
    token = token.strip()
    if not token:
        raise UnauthenticatedError("the Authorization header has no bearer token")
    return token


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified: used only to choose the algorithm and keys."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise invalid_token("malformed")
    try:
        decoded = decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid_token("malformed") from None
    header, payload = decoded["header"], decoded["payload"]
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise invalid_token("malformed")
    return header, payload


async def _signing_key(keys: KeySource, kid: object) -> jwt.PyJWK:
    if not isinstance(kid, str) or not kid:
        raise invalid_token("unknown signing key")
    try:
        return await keys.get_key(kid)
    except UnknownSigningKeyError:
        raise invalid_token("unknown signing key") from None


def _reason(exc: jwt.PyJWTError) -> str:
    """A short, token-free description of why PyJWT refused a token."""
    # Subclasses before their bases (InvalidSignatureError is a DecodeError).
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not yet valid"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "unsupported algorithm"
    if isinstance(exc, jwt.InvalidKeyError):
        return "unsupported signing key"
    return "malformed"


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Map verified claims to a Principal.

    - `object_id` is `oid`; app tokens without `oid` fall back to `sub` (for apps Entra
      sets `sub == oid`; a user's `sub` is pairwise per client, so never used).
    - `kind` is "app" when `idtyp == "app"` (Entra's optional claim), or when the token
      has no delegated scope (`scp`), no user name (`preferred_username`/`upn`), names
      a client (`azp`/`appid`) and has `oid == sub`: the shape of an app-only token.
    - `app_id` is the client: `azp` (v2) or `appid` (v1).
    - `name` is the first of preferred_username, upn, name, unique_name.
    - `groups` and `roles` come from their claims. With too many groups Entra sends a
      `_claim_names` overage marker instead; those groups are then not visible here.
    """
    app_id = _optional_str(claims, "azp") or _optional_str(claims, "appid")
    oid = _optional_str(claims, "oid")
    kind = _kind(claims, app_id, oid)
    object_id = oid or (_optional_str(claims, "sub") if kind == "app" else None)
    if not object_id:
        raise invalid_token("missing claim oid")
    name = next(
        (
            value
            for claim in ("preferred_username", "upn", "name", "unique_name")
            if (value := _optional_str(claims, claim))
        ),
        None,
    )
    return Principal(
        tenant_id=claims["tid"],
        object_id=object_id,
        kind=kind,
        name=name,
        app_id=app_id,
        groups=_string_list(claims, "groups"),
        roles=_string_list(claims, "roles"),
    )


def _kind(claims: dict[str, Any], app_id: str | None, oid: str | None) -> PrincipalKind:
    if claims.get("idtyp") == "app":
        return "app"
    has_user = any(_optional_str(claims, c) for c in ("preferred_username", "upn"))
    if "scp" not in claims and not has_user and app_id and oid and oid == claims.get("sub"):
        return "app"
    return "user"


def _optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def _string_list(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_token(f"malformed claim {name}")
    return tuple(value)


def _expiry(token: str) -> float:
    """`exp` of a token that has just been validated (so it is present and numeric)."""
    return float(_unverified_parts(token)[1]["exp"])
