"""Bearer-token validation: the dev issuer, hand-crafted attacks, and Entra ID issuers
verified against a JWKS served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from functions.errors import UnauthenticatedError
from functions.identity import Principal, TokenValidator
from functions.identity.dev_issuer import (
    DEV_CLIENT_APP_NAME,
    app_id,
    generate_private_key_pem,
    mint_token,
    object_id,
    public_jwk,
    public_jwks,
)
from functions.identity.jwks import (
    JwksCache,
    JwksUnavailableError,
    StaticJwks,
    UnknownSigningKeyError,
    parse_jwks,
)
from functions.identity.tokens import (
    ENTRA_V1_ISSUER_TEMPLATE,
    ENTRA_V2_ISSUER_TEMPLATE,
    TrustedIssuer,
)
from functions.settings import DEV_AUDIENCE, DEV_ISSUER_TEMPLATE, DEV_TENANT_ID, Settings

OTHER_TENANT = "11111111-1111-4111-8111-111111111111"
FOREIGN_TENANT = "99999999-9999-4999-8999-999999999999"
ENTRA_AUDIENCE = "api://connector-gateway"
ENTRA_CLIENT_ID = "22222222-2222-4222-8222-222222222222"


@pytest.fixture(scope="module")
def dev_key() -> str:
    return generate_private_key_pem()


@pytest.fixture(scope="module")
def entra_key() -> str:
    return generate_private_key_pem()


@pytest.fixture(scope="module")
def stranger_key() -> str:
    return generate_private_key_pem()


def dev_settings(dev_key: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "development",
        "tenant_ids": (DEV_TENANT_ID, OTHER_TENANT),
        "audiences": (DEV_AUDIENCE, ENTRA_AUDIENCE),
        "dev_issuer_private_key": dev_key,
        # Unreachable: a dev-issuer test that touched the network would fail loudly.
        "jwks_url": "http://127.0.0.1:9/keys",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def validator(dev_key: str) -> TokenValidator:
    return TokenValidator.from_settings(dev_settings(dev_key))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims_for(
    tenant: str = DEV_TENANT_ID,
    issuer_template: str = DEV_ISSUER_TEMPLATE,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid user token's claims; `None` overrides remove a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer_template.format(tenant=tenant),
        "aud": DEV_AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "tid": tenant,
        "oid": str(uuid.uuid4()),
        "sub": "pairwise-subject",
        "preferred_username": "carol@dev.invalid",
        "scp": "user_impersonation",
        "azp": ENTRA_CLIENT_ID,
        "ver": "2.0",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


@functools.cache
def loaded(private_key_pem: str) -> tuple[Any, str]:
    """The parsed key and its kid (parsing a private key is slow)."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), None)
    return key, public_jwk(private_key_pem)["kid"]


def sign(claims: dict[str, Any], private_key_pem: str, kid: str | None = None) -> str:
    key, own_kid = loaded(private_key_pem)
    return jwt.encode(
        claims, key, algorithm="RS256", headers={"kid": own_kid if kid is None else kid}
    )


async def rejected(validator: TokenValidator, token: str) -> UnauthenticatedError:
    with pytest.raises(UnauthenticatedError) as caught:
        await validator.authenticate(f"Bearer {token}")
    error = caught.value
    assert error.status == 401
    assert error.code == "invalid_token"
    assert error.headers["WWW-Authenticate"].startswith("Bearer ")
    # Never echo the token, or any part of it, back to the caller.
    for part in token.split("."):
        if len(part) > 3:
            assert part not in error.detail
    return error


# --- the dev issuer: valid tokens --------------------------------------------------


async def test_valid_v2_user_token(dev_key: str, validator: TokenValidator) -> None:
    token = mint_token(dev_key, user="alice", groups=["g1", "g2"], roles=["Reader"])

    principal = await validator.authenticate(f"Bearer {token}")

    assert principal == Principal(
        tenant_id=DEV_TENANT_ID,
        object_id=object_id(DEV_TENANT_ID, "user", "alice"),
        kind="user",
        name="alice@dev.invalid",
        app_id=app_id(DEV_CLIENT_APP_NAME),
        groups=("g1", "g2"),
        roles=("Reader",),
    )


async def test_valid_v1_user_token(dev_key: str, validator: TokenValidator) -> None:
    token = mint_token(dev_key, user="alice", version=1)
    assert jwt.decode(token, options={"verify_signature": False})["ver"] == "1.0"

    principal = await validator.authenticate(f"Bearer {token}")

    assert principal.kind == "user"
    assert principal.name == "alice@dev.invalid"
    assert principal.object_id == object_id(DEV_TENANT_ID, "user", "alice")
    assert principal.groups == () and principal.roles == ()


@pytest.mark.parametrize("version", [1, 2])
async def test_valid_app_token(dev_key: str, validator: TokenValidator, version: int) -> None:
    token = mint_token(dev_key, app="nightly-sync", roles=["Connections.Invoke"], version=version)
    claims = jwt.decode(token, options={"verify_signature": False})

    principal = await validator.authenticate(f"Bearer {token}")

    assert principal.kind == "app"
    assert principal.object_id == object_id(DEV_TENANT_ID, "app", "nightly-sync")
    assert principal.app_id == claims.get("azp", claims.get("appid"))
    assert principal.app_id and principal.app_id != principal.object_id
    assert principal.roles == ("Connections.Invoke",)


async def test_same_name_is_same_principal_per_tenant(
    dev_key: str, validator: TokenValidator
) -> None:
    first = await validator.authenticate(f"Bearer {mint_token(dev_key, user='alice')}")
    again = await validator.authenticate(f"Bearer {mint_token(dev_key, user='alice')}")
    other_tenant = await validator.authenticate(
        f"Bearer {mint_token(dev_key, user='alice', tenant=OTHER_TENANT)}"
    )
    bob = await validator.authenticate(f"Bearer {mint_token(dev_key, user='bob')}")

    assert first.key == again.key
    assert other_tenant.tenant_id == OTHER_TENANT and other_tenant.object_id != first.object_id
    assert bob.object_id != first.object_id


async def test_app_shape_without_idtyp_is_an_app(dev_key: str, validator: TokenValidator) -> None:
    oid = str(uuid.uuid4())
    claims = claims_for(
        oid=oid, sub=oid, preferred_username=None, scp=None, azp=None, appid=ENTRA_CLIENT_ID
    )

    principal = await validator.authenticate(f"Bearer {sign(claims, dev_key)}")

    assert principal.kind == "app"
    assert principal.app_id == ENTRA_CLIENT_ID


async def test_lowercase_scheme_and_extra_spaces_accepted(
    dev_key: str, validator: TokenValidator
) -> None:
    token = mint_token(dev_key, user="alice")
    principal = await validator.authenticate(f"  bearer   {token} ")
    assert principal.name == "alice@dev.invalid"


def test_mint_token_needs_exactly_one_subject(dev_key: str) -> None:
    with pytest.raises(ValueError):
        mint_token(dev_key)
    with pytest.raises(ValueError):
        mint_token(dev_key, user="a", app="b")


def test_public_jwks_kid_is_rfc7638_thumbprint(dev_key: str) -> None:
    public = serialization.load_pem_private_key(dev_key.encode(), None).public_key()
    numbers = public.public_numbers()  # type: ignore[union-attr]

    def uint(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    canonical = f'{{"e":"{uint(numbers.e)}","kty":"RSA","n":"{uint(numbers.n)}"}}'
    (jwk,) = public_jwks(dev_key)["keys"]

    assert jwk["kid"] == b64url(hashlib.sha256(canonical.encode()).digest())
    assert jwt.get_unverified_header(mint_token(dev_key, user="a"))["kid"] == jwk["kid"]
    assert "d" not in jwk  # public half only


# --- the dev issuer: rejected tokens -----------------------------------------------


async def test_expired(dev_key: str, validator: TokenValidator) -> None:
    now = int(time.time())
    token = sign(claims_for(iat=now - 3600, nbf=now - 3600, exp=now - 120), dev_key)
    assert (await rejected(validator, token)).detail.endswith("expired")


async def test_expired_within_clock_skew_is_accepted(
    dev_key: str, validator: TokenValidator
) -> None:
    now = int(time.time())
    token = sign(claims_for(iat=now - 3600, nbf=now - 3600, exp=now - 30), dev_key)
    await validator.authenticate(f"Bearer {token}")


async def test_not_yet_valid(dev_key: str, validator: TokenValidator) -> None:
    now = int(time.time())
    token = sign(claims_for(nbf=now + 300, exp=now + 900), dev_key)
    assert (await rejected(validator, token)).detail.endswith("not yet valid")


async def test_nbf_within_clock_skew_is_accepted(dev_key: str, validator: TokenValidator) -> None:
    token = sign(claims_for(nbf=int(time.time()) + 30), dev_key)
    await validator.authenticate(f"Bearer {token}")


async def test_wrong_audience(dev_key: str, validator: TokenValidator) -> None:
    token = mint_token(dev_key, user="alice", audience="api://someone-else")
    assert (await rejected(validator, token)).detail.endswith("wrong audience")


async def test_wrong_issuer(dev_key: str, validator: TokenValidator) -> None:
    token = sign(claims_for(iss="https://evil.example/issuer"), dev_key)
    assert (await rejected(validator, token)).detail.endswith("wrong issuer")


async def test_issuer_names_another_tenant_than_tid(
    dev_key: str, validator: TokenValidator
) -> None:
    # Both tenants are allowed; the token's `iss` must still be the one for its `tid`.
    token = sign(claims_for(iss=DEV_ISSUER_TEMPLATE.format(tenant=OTHER_TENANT)), dev_key)
    assert (await rejected(validator, token)).detail.endswith("wrong issuer")


async def test_tenant_not_allowed(dev_key: str, validator: TokenValidator) -> None:
    token = mint_token(dev_key, user="alice", tenant=FOREIGN_TENANT)
    assert (await rejected(validator, token)).detail.endswith("tenant not allowed")


@pytest.mark.parametrize("claim", ["exp", "iat", "aud"])
async def test_missing_required_claim(dev_key: str, validator: TokenValidator, claim: str) -> None:
    token = sign(claims_for(**{claim: None}), dev_key)
    assert (await rejected(validator, token)).detail.endswith(f"missing claim {claim}")


async def test_missing_tid(dev_key: str, validator: TokenValidator) -> None:
    token = sign(claims_for(tid=None), dev_key)
    assert (await rejected(validator, token)).detail.endswith("missing claim tid")


async def test_user_token_without_oid(dev_key: str, validator: TokenValidator) -> None:
    token = sign(claims_for(oid=None), dev_key)
    assert (await rejected(validator, token)).detail.endswith("missing claim oid")


async def test_malformed_roles_claim(dev_key: str, validator: TokenValidator) -> None:
    token = sign(claims_for(roles="Admin"), dev_key)
    assert (await rejected(validator, token)).detail.endswith("malformed claim roles")


class CountingKeys:
    """A KeySource that records lookups, to prove some tokens never reach one."""

    def __init__(self, inner: StaticJwks) -> None:
        self.inner = inner
        self.lookups = 0

    async def get_key(self, kid: str) -> jwt.PyJWK:
        self.lookups += 1
        return await self.inner.get_key(kid)


@pytest.fixture
def counting(dev_key: str) -> tuple[TokenValidator, CountingKeys]:
    keys = CountingKeys(StaticJwks(public_jwks(dev_key)))
    validator = TokenValidator(
        tenant_ids=[DEV_TENANT_ID],
        audiences=[DEV_AUDIENCE],
        issuers=[TrustedIssuer(DEV_ISSUER_TEMPLATE, keys)],
    )
    return validator, keys


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_unsigned_token_rejected_before_key_lookup(
    dev_key: str, counting: tuple[TokenValidator, CountingKeys], alg: str
) -> None:
    validator, keys = counting
    header = {"alg": alg, "typ": "JWT", "kid": public_jwk(dev_key)["kid"]}
    token = ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(claims_for()).encode()), ""]
    )

    assert (await rejected(validator, token)).detail.endswith("unsupported algorithm")
    assert keys.lookups == 0


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_with_public_key_as_secret_rejected_before_key_lookup(
    dev_key: str, counting: tuple[TokenValidator, CountingKeys], alg: str
) -> None:
    """The classic key-confusion attack: HMAC keyed with the (public) RSA key."""
    validator, keys = counting
    public_pem = (
        serialization.load_pem_private_key(dev_key.encode(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": alg, "typ": "JWT", "kid": public_jwk(dev_key)["kid"]}
    signing_input = (
        f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims_for()).encode())}"
    )
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(public_pem, signing_input.encode(), digest).digest()
    token = f"{signing_input}.{b64url(signature)}"

    assert (await rejected(validator, token)).detail.endswith("unsupported algorithm")
    assert keys.lookups == 0


async def test_other_asymmetric_algorithm_rejected(dev_key: str, validator: TokenValidator) -> None:
    token = jwt.encode(
        claims_for(), dev_key, algorithm="PS256", headers={"kid": public_jwk(dev_key)["kid"]}
    )
    assert (await rejected(validator, token)).detail.endswith("unsupported algorithm")


async def test_unknown_kid(dev_key: str, validator: TokenValidator) -> None:
    token = sign(claims_for(), dev_key, kid="no-such-key")
    assert (await rejected(validator, token)).detail.endswith("unknown signing key")


async def test_missing_kid(dev_key: str, validator: TokenValidator) -> None:
    token = jwt.encode(claims_for(), dev_key, algorithm="RS256")
    assert (await rejected(validator, token)).detail.endswith("unknown signing key")


async def test_signed_by_another_key_with_our_kid(
    dev_key: str, stranger_key: str, validator: TokenValidator
) -> None:
    token = sign(claims_for(), stranger_key, kid=public_jwk(dev_key)["kid"])
    assert (await rejected(validator, token)).detail.endswith("bad signature")


async def test_tampered_payload(dev_key: str, validator: TokenValidator) -> None:
    header, _, signature = mint_token(dev_key, user="alice").split(".")
    forged = claims_for(oid=object_id(DEV_TENANT_ID, "user", "admin"))
    token = f"{header}.{b64url(json.dumps(forged).encode())}.{signature}"
    assert (await rejected(validator, token)).detail.endswith("bad signature")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "only.two",
        "a.b.c.d",
        "!!!.@@@.###",
        f"{b64url(b'not json')}.{b64url(b'{}')}.c2ln",
        f"{b64url(b'[1, 2]')}.{b64url(b'{}')}.c2ln",
        f"{b64url(json.dumps({'alg': 'RS256', 'kid': 'k'}).encode())}.{b64url(b'not json')}.c2ln",
        "x" * 40_000 + ".a.b",
    ],
    ids=[
        "one-part",
        "two-parts",
        "four-parts",
        "bad-base64",
        "header-not-json",
        "header-not-object",
        "payload-not-json",
        "oversized",
    ],
)
async def test_malformed(validator: TokenValidator, token: str) -> None:
    assert (await rejected(validator, token)).detail.endswith("malformed")


@pytest.mark.parametrize(
    "header", [None, "", "   ", "Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer   ", "Token abc"]
)
async def test_missing_or_non_bearer_authorization(
    validator: TokenValidator, header: str | None
) -> None:
    with pytest.raises(UnauthenticatedError) as caught:
        await validator.authenticate(header)
    assert caught.value.code == "unauthenticated"
    assert caught.value.status == 401
    assert "WWW-Authenticate" in caught.value.headers


async def test_dev_issuer_not_trusted_in_production(dev_key: str) -> None:
    settings = dev_settings(dev_key, environment="production")
    validator = TokenValidator.from_settings(settings)
    token = mint_token(dev_key, user="alice")
    assert (await rejected(validator, token)).detail.endswith("wrong issuer")


async def test_dev_issuer_not_trusted_without_key(dev_key: str) -> None:
    validator = TokenValidator.from_settings(dev_settings(dev_key, dev_issuer_private_key=None))
    token = mint_token(dev_key, user="alice")
    assert (await rejected(validator, token)).detail.endswith("wrong issuer")


async def test_dev_key_cannot_sign_for_entra(dev_key: str, validator: TokenValidator) -> None:
    # An Entra issuer is verified only with Entra's keys, never with the dev key.
    token = sign(claims_for(issuer_template=ENTRA_V2_ISSUER_TEMPLATE), dev_key)
    with pytest.raises(JwksUnavailableError):  # the unreachable JWKS URL, not dev keys
        await validator.authenticate(f"Bearer {token}")


def test_unusable_dev_key_is_a_configuration_error() -> None:
    from functions.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        TokenValidator.from_settings(dev_settings("-----BEGIN PRIVATE KEY-----\nnope"))
    assert "nope" not in caught.value.detail


def test_escaped_newlines_in_dev_key_are_accepted(dev_key: str) -> None:
    escaped = dev_key.strip().replace("\n", "\\n")
    assert public_jwks(escaped) == public_jwks(dev_key)


# --- JWKS parsing ------------------------------------------------------------------


def test_parse_jwks_keeps_only_rsa_signing_keys(dev_key: str) -> None:
    good = public_jwk(dev_key)
    document = {
        "keys": [
            good,
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "ps", "alg": "PS256"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {key: value for key, value in good.items() if key != "kid"},
            "not a key",
        ]
    }
    assert list(parse_jwks(document)) == [good["kid"]]
    with pytest.raises(ValueError):
        parse_jwks({"nokeys": []})


async def test_static_jwks_unknown_kid(dev_key: str) -> None:
    keys = StaticJwks(public_jwks(dev_key))
    with pytest.raises(UnknownSigningKeyError):
        await keys.get_key("nope")


# --- Entra ID issuers, JWKS over real HTTP -----------------------------------------


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts the requests it serves."""

    url: str
    document: dict[str, Any]
    requests: int = 0
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def jwks_server(entra_key: str) -> Iterator[JwksServer]:
    state = JwksServer(url="", document=public_jwks(entra_key))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib hook name
            with state.lock:
                state.requests += 1
            body = json.dumps(state.document).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/common/discovery/v2.0/keys"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def entra_settings(jwks_url: str) -> Settings:
    return Settings(
        environment="production",
        tenant_ids=(OTHER_TENANT,),
        audiences=(ENTRA_AUDIENCE, ENTRA_CLIENT_ID),
        jwks_url=jwks_url,
        secret_backend="keyvault",
    )


def entra_v1_claims(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "aud": ENTRA_AUDIENCE,
        "ver": "1.0",
        "preferred_username": None,
        "azp": None,
        "appid": ENTRA_CLIENT_ID,
        "upn": "dana@contoso.example",
        "unique_name": "dana@contoso.example",
    }
    values.update(overrides)
    return claims_for(tenant=OTHER_TENANT, issuer_template=ENTRA_V1_ISSUER_TEMPLATE, **values)


def entra_v2_claims(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"aud": ENTRA_CLIENT_ID, "preferred_username": "dana@contoso.example"}
    values.update(overrides)
    return claims_for(tenant=OTHER_TENANT, issuer_template=ENTRA_V2_ISSUER_TEMPLATE, **values)


async def test_entra_v1_and_v2_tokens(entra_key: str, jwks_server: JwksServer) -> None:
    async with httpx.AsyncClient() as http:
        validator = TokenValidator.from_settings(entra_settings(jwks_server.url), http=http)

        v1 = await validator.authenticate(f"Bearer {sign(entra_v1_claims(), entra_key)}")
        v2 = await validator.authenticate(f"Bearer {sign(entra_v2_claims(), entra_key)}")

    assert (v1.kind, v1.name, v1.app_id, v1.tenant_id) == (
        "user",
        "dana@contoso.example",
        ENTRA_CLIENT_ID,
        OTHER_TENANT,
    )
    assert (v2.kind, v2.name, v2.app_id) == ("user", "dana@contoso.example", ENTRA_CLIENT_ID)


async def test_entra_app_token(entra_key: str, jwks_server: JwksServer) -> None:
    oid = str(uuid.uuid4())
    claims = entra_v2_claims(
        idtyp="app", oid=oid, sub=oid, scp=None, preferred_username=None, roles=["Invoke"]
    )
    validator = TokenValidator.from_settings(entra_settings(jwks_server.url))

    principal = await validator.authenticate(f"Bearer {sign(claims, entra_key)}")

    assert (principal.kind, principal.object_id, principal.roles) == ("app", oid, ("Invoke",))


async def test_entra_rejections(
    entra_key: str, stranger_key: str, dev_key: str, jwks_server: JwksServer
) -> None:
    validator = TokenValidator.from_settings(entra_settings(jwks_server.url))
    cases = {
        "tenant not allowed": sign(
            claims_for(
                tenant=FOREIGN_TENANT, issuer_template=ENTRA_V2_ISSUER_TEMPLATE, aud=ENTRA_CLIENT_ID
            ),
            entra_key,
        ),
        "wrong issuer": sign(
            entra_v2_claims(iss=ENTRA_V1_ISSUER_TEMPLATE.format(tenant=FOREIGN_TENANT)), entra_key
        ),
        "wrong audience": sign(entra_v1_claims(aud="api://other"), entra_key),
        "bad signature": sign(entra_v2_claims(), stranger_key, kid=public_jwk(entra_key)["kid"]),
        "unknown signing key": sign(entra_v2_claims(), stranger_key),
    }
    for reason, token in cases.items():
        assert (await rejected(validator, token)).detail.endswith(reason), reason
    # The dev issuer is not trusted in production, signed by its own key or not.
    assert (await rejected(validator, mint_token(dev_key, user="a"))).detail.endswith(
        "wrong issuer"
    )


async def test_jwks_fetched_once_for_many_validations(
    entra_key: str, jwks_server: JwksServer
) -> None:
    async with httpx.AsyncClient() as http:
        validator = TokenValidator.from_settings(entra_settings(jwks_server.url), http=http)
        for _ in range(25):
            await validator.authenticate(f"Bearer {sign(entra_v2_claims(), entra_key)}")
    assert jwks_server.requests == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entra_validator(cache: JwksCache) -> TokenValidator:
    return TokenValidator(
        tenant_ids=[OTHER_TENANT],
        audiences=[ENTRA_CLIENT_ID, ENTRA_AUDIENCE],
        issuers=[
            TrustedIssuer(ENTRA_V1_ISSUER_TEMPLATE, cache),
            TrustedIssuer(ENTRA_V2_ISSUER_TEMPLATE, cache),
        ],
    )


async def test_unknown_kids_refetch_at_most_once_per_interval(
    entra_key: str, jwks_server: JwksServer
) -> None:
    clock = FakeClock()
    validator = entra_validator(
        JwksCache(jwks_server.url, min_refresh_interval_seconds=300, clock=clock)
    )
    await validator.authenticate(f"Bearer {sign(entra_v2_claims(), entra_key)}")
    assert jwks_server.requests == 1
    # Within the interval since that first fetch, an unknown kid does not refetch.
    await rejected(validator, sign(entra_v2_claims(), entra_key, kid="too-soon"))
    assert jwks_server.requests == 1

    clock.now += 301
    for n in range(20):
        token = sign(entra_v2_claims(), entra_key, kid=f"random-{n}")
        assert (await rejected(validator, token)).detail.endswith("unknown signing key")
    assert jwks_server.requests == 2  # one refetch for the first unknown kid, then none

    clock.now += 301
    for n in range(5):
        await rejected(validator, sign(entra_v2_claims(), entra_key, kid=f"again-{n}"))
    assert jwks_server.requests == 3
    # Known keys kept working throughout, from memory.
    await validator.authenticate(f"Bearer {sign(entra_v2_claims(), entra_key)}")
    assert jwks_server.requests == 3


async def test_rotated_key_is_picked_up(
    entra_key: str, stranger_key: str, jwks_server: JwksServer
) -> None:
    clock = FakeClock()
    validator = entra_validator(JwksCache(jwks_server.url, clock=clock))
    await validator.authenticate(f"Bearer {sign(entra_v2_claims(), entra_key)}")

    jwks_server.document = {"keys": [public_jwk(entra_key), public_jwk(stranger_key)]}
    clock.now += 300  # the refetch interval since the last fetch
    principal = await validator.authenticate(f"Bearer {sign(entra_v2_claims(), stranger_key)}")

    assert principal.tenant_id == OTHER_TENANT
    assert jwks_server.requests == 2


async def test_keys_refetched_after_ttl_and_stale_keys_survive_outage(
    entra_key: str, jwks_server: JwksServer
) -> None:
    clock = FakeClock()
    validator = entra_validator(JwksCache(jwks_server.url, ttl_seconds=3600, clock=clock))
    token = sign(entra_v2_claims(), entra_key)
    await validator.validate(token)

    clock.now += 3601
    await validator.validate(token)
    assert jwks_server.requests == 2

    jwks_server.status = 500
    clock.now += 3601
    await validator.validate(token)  # stale keys, not an outage for callers
    await validator.validate(token)  # and no retry within the interval
    assert jwks_server.requests == 3


async def test_jwks_unavailable_is_a_503(entra_key: str, jwks_server: JwksServer) -> None:
    jwks_server.status = 500
    validator = entra_validator(JwksCache(jwks_server.url))
    with pytest.raises(JwksUnavailableError) as caught:
        await validator.authenticate(f"Bearer {sign(entra_v2_claims(), entra_key)}")
    assert caught.value.status == 503
    assert "HTTP 500" in caught.value.detail


async def test_jwks_connection_refused_is_a_503(entra_key: str) -> None:
    validator = entra_validator(JwksCache("http://127.0.0.1:9/keys"))
    with pytest.raises(JwksUnavailableError) as caught:
        await validator.authenticate(f"Bearer {sign(entra_v2_claims(), entra_key)}")
    assert caught.value.code == "identity_provider_unavailable"


async def test_jwks_not_a_key_set_is_a_503(entra_key: str, jwks_server: JwksServer) -> None:
    jwks_server.document = {"hello": "world"}
    with pytest.raises(JwksUnavailableError, match="not a valid JWKS"):
        await JwksCache(jwks_server.url).get_key("any")


async def test_validated_tokens_are_remembered_until_expiry(
    entra_key: str, jwks_server: JwksServer
) -> None:
    """A reused token skips the signature check; the cache never outlives `exp`."""
    import time as _time

    validator = entra_validator(JwksCache(jwks_server.url))
    claims = entra_v2_claims()
    claims["exp"] = int(_time.time()) + 2
    token = sign(claims, entra_key)
    first = await validator.authenticate(f"Bearer {token}")
    assert await validator.authenticate(f"Bearer {token}") == first
    assert len(validator._validated) == 1
    ((_, remember_until),) = validator._validated.values()
    assert remember_until <= claims["exp"]
    # A token past exp plus the clock-skew leeway is re-validated, and refused.
    claims["exp"] = int(_time.time()) - 120
    with pytest.raises(UnauthenticatedError) as caught:
        await validator.authenticate(f"Bearer {sign(claims, entra_key)}")
    assert "expired" in caught.value.detail
