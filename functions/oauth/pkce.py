"""PKCE (RFC 7636), `state` and `nonce` values.

* The code verifier is 43 to 128 characters from the unreserved set (RFC 7636 §4.1); 32
  random bytes in base64url give 43, the recommended minimum entropy of 256 bits.
* The challenge is BASE64URL(SHA256(ASCII(verifier))) without padding (§4.2, method S256;
  `plain` is never used).
* `state` (RFC 6749 §10.12) and `nonce` (OpenID Connect Core §3.1.2.1) are 256-bit random
  values. Only the SHA-256 of a state is stored, so a leaked table cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_code_verifier() -> str:
    """A fresh high-entropy PKCE code verifier (RFC 7636 §4.1)."""
    return _b64url(secrets.token_bytes(32))


def code_challenge_s256(verifier: str) -> str:
    """The S256 code challenge for `verifier` (RFC 7636 §4.2)."""
    if not _VERIFIER.match(verifier):
        raise ValueError("a PKCE code verifier is 43-128 characters of [A-Za-z0-9-._~]")
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def new_state() -> str:
    """A fresh random, unguessable `state` (RFC 6749 §10.12)."""
    return _b64url(secrets.token_bytes(32))


def new_nonce() -> str:
    """A fresh random OpenID Connect `nonce`."""
    return _b64url(secrets.token_bytes(32))


def state_hash(state: str) -> str:
    """SHA-256 hex of a state: what storage keys on (the state itself is never stored)."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()
