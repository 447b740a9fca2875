"""Envelope encryption of Windows credentials for one on-premises gateway.

A random AES-256-GCM key encrypts the credentials; RSA-OAEP (SHA-256, MGF1-SHA-256)
with the gateway's public key wraps that key. The result is a JSON string:

    {"v": 1, "kid": "<sha256 of the public key DER, hex>",
     "ek": "<b64 wrapped key>", "iv": "<b64 12-byte nonce>", "ct": "<b64 ciphertext+tag>"}

The GCM associated data binds the envelope to its version, key id, gateway id and
connection id, so an envelope copied to another connection or gateway does not open.
The cloud side only ever encrypts (it holds public keys only); only the agent, which
holds the private key, can decrypt.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from functions.onprem.errors import CredentialEnvelopeError
from functions.onprem.keys import fingerprint, load_public_key

VERSION = 1
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


def _aad(kid: str, gateway_id: str, connection_id: str) -> bytes:
    return json.dumps(
        ["connector-gateway/onprem-credentials", VERSION, kid, gateway_id, connection_id],
        separators=(",", ":"),
    ).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encrypt_for_gateway(
    public_key_pem: str, gateway_id: str, connection_id: str, plaintext: dict[str, Any]
) -> str:
    """Encrypt `plaintext` (a JSON object) so only the gateway's agent can read it.

    Raises ValueError if the public key is not RSA >= 2048 bits.
    """
    public_key = load_public_key(public_key_pem)
    kid = fingerprint(public_key)
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    body = json.dumps(plaintext, separators=(",", ":")).encode("utf-8")
    ciphertext = AESGCM(data_key).encrypt(nonce, body, _aad(kid, gateway_id, connection_id))
    wrapped = public_key.encrypt(data_key, _OAEP)
    return json.dumps(
        {"v": VERSION, "kid": kid, "ek": _b64(wrapped), "iv": _b64(nonce), "ct": _b64(ciphertext)},
        separators=(",", ":"),
    )


def envelope_kid(envelope: str) -> str | None:
    """The key id an envelope was encrypted for, or None if it is not an envelope."""
    try:
        kid = json.loads(envelope).get("kid")
    except (ValueError, AttributeError):
        return None
    return kid if isinstance(kid, str) else None


def decrypt(
    private_key: rsa.RSAPrivateKey, gateway_id: str, connection_id: str, envelope: str
) -> dict[str, Any]:
    """Open an envelope made by `encrypt_for_gateway` for this key, gateway and connection.

    Raises CredentialEnvelopeError (naming the reason, never any content) when the
    envelope is malformed, was made for another key, was tampered with, or is bound to
    another gateway or connection.
    """
    try:
        doc = json.loads(envelope)
        version, kid = doc["v"], doc["kid"]
        wrapped = base64.b64decode(doc["ek"], validate=True)
        nonce = base64.b64decode(doc["iv"], validate=True)
        ciphertext = base64.b64decode(doc["ct"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise CredentialEnvelopeError("the credential envelope is malformed") from None
    if version != VERSION:
        raise CredentialEnvelopeError(f"unsupported credential envelope version {version!r}")
    own_kid = fingerprint(private_key)
    if kid != own_kid:
        raise CredentialEnvelopeError(
            f"the credentials were encrypted for key {str(kid)[:16]}…, "
            f"not this agent's key {own_kid[:16]}…"
        )
    try:
        data_key = private_key.decrypt(wrapped, _OAEP)
        body = AESGCM(data_key).decrypt(nonce, ciphertext, _aad(kid, gateway_id, connection_id))
    except (ValueError, InvalidTag):
        raise CredentialEnvelopeError(
            "the credential envelope failed its integrity check (tampered, or bound to "
            "another gateway or connection)"
        ) from None
    plaintext = json.loads(body)
    if not isinstance(plaintext, dict):
        raise CredentialEnvelopeError("the credential envelope does not hold an object")
    return plaintext
