"""Client authentication with a certificate (Power Platform `aadcertificate`, OpenID
Connect `private_key_jwt`, RFC 7523 §2.2).

The connector's client "secret" is then a PEM bundle: the private key and its
certificate, kept in the secret store like a client secret (`connector-{id}`, new version
on each change). It is parsed here, checked (the key must match the certificate; RSA or
EC), and turned into:

* msal's `client_credential` for `tokenClient: msal` providers (Entra ID): a callable
  client assertion, fresh for every request (PS256 for RSA keys, header `x5t#S256`, as
  msal signs them itself). msal's own certificate support reuses one assertion (same
  `jti`) for 10 minutes, which servers that refuse replayed assertions (RFC 7523 §3,
  oidc-provider) reject as `invalid_client`;
* a signed client assertion (RS256 / ES256, header `x5t#S256`, claims `iss` = `sub` =
  client id, `aud` = the token endpoint, `jti`, 5-minute lifetime) for `http` providers.

Rotation: register the new certificate on the app registration (Entra ID accepts several
at once), `PUT .../oauth-client` with the new bundle (a new secret version; the next token
request uses it), then remove the old certificate from the app registration.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from functions.oauth.errors import CatalogError

PEM_MARKER = "-----BEGIN "
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300


class CertificateError(CatalogError):
    """A client certificate bundle that cannot be used (never echoes its content)."""

    code = "oauth_client_certificate_invalid"
    title = "OAuth client certificate is invalid"


def is_certificate_bundle(value: str | None) -> bool:
    """True when a stored client credential is a PEM bundle, not a client secret."""
    return bool(value) and PEM_MARKER in (value or "")


@dataclass(frozen=True)
class ClientCertificate:
    private_key_pem: str = field(repr=False)
    certificate_pem: str
    sha256_thumbprint: str  # hex
    not_after: float  # POSIX time
    algorithm: str  # of our own assertions: RS256 or ES256

    def msal_credential(self, client_id: str, token_endpoint: str) -> dict[str, Any]:
        algorithm = "PS256" if self.algorithm == "RS256" else self.algorithm
        return {
            "client_assertion": lambda: self.client_assertion(
                client_id, token_endpoint, algorithm=algorithm
            )
        }

    def client_assertion(
        self,
        client_id: str,
        audience: str,
        now: float | None = None,
        *,
        algorithm: str | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        x5t = base64.urlsafe_b64encode(bytes.fromhex(self.sha256_thumbprint)).rstrip(b"=")
        return jwt.encode(
            {
                "iss": client_id,
                "sub": client_id,
                "aud": audience,
                "jti": uuid.uuid4().hex,
                "iat": issued,
                "nbf": issued,
                "exp": issued + ASSERTION_LIFETIME_SECONDS,
            },
            self.private_key_pem,
            algorithm=algorithm or self.algorithm,
            headers={"x5t#S256": x5t.decode()},
        )


@lru_cache(maxsize=64)
def load_certificate_bundle(bundle: str) -> ClientCertificate:
    """Parse and check a PEM bundle (private key + certificate, any order)."""
    data = bundle.encode("utf-8")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CertificateError(
            "the client certificate bundle needs an unencrypted PEM private key"
        ) from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(
            "the client certificate bundle needs a PEM certificate (-----BEGIN CERTIFICATE-----)"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = "ES256"
    else:
        raise CertificateError("the client certificate key must be RSA or EC")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    certified = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != certified:
        raise CertificateError("the private key does not belong to the certificate")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return ClientCertificate(
        private_key_pem=key_pem,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex(),
        not_after=certificate.not_valid_after_utc.timestamp(),
        algorithm=algorithm,
    )
