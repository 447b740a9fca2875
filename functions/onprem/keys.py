"""The agent's RSA key pair: created and kept on the agent machine only.

The private key is written as PKCS#8 PEM with file mode 0600 (created with that mode,
never widened), optionally encrypted with a recovery passphrase. The public key is
registered with the gateway; its fingerprint (SHA-256 of the SubjectPublicKeyInfo DER,
hex) is the `kid` of every envelope encrypted for it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AGENT_KEY_BITS = 3072
MIN_KEY_BITS = 2048
KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """A key file that is missing, unreadable, of the wrong kind, or needs a passphrase."""


def generate_private_key(bits: int = AGENT_KEY_BITS) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def save_private_key(key: rsa.RSAPrivateKey, path: Path, passphrase: str | None = None) -> None:
    """Write `key` to a new file with mode 0600. Refuses to overwrite an existing file:
    replacing an agent's key makes every credential encrypted for it unreadable."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL + mode at creation: the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # the umask may have removed bits, never added any
        os.write(fd, pem)
    finally:
        os.close(fd)


def load_private_key(path: Path, passphrase: str | None = None) -> rsa.RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the agent key {path}: {exc.strerror or exc}") from None
    password = passphrase.encode("utf-8") if passphrase else None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        if password is None:
            raise KeyFileError(f"the agent key {path} is encrypted; give its passphrase") from None
        raise KeyFileError(f"the agent key {path} is not encrypted; give no passphrase") from None
    except ValueError:
        raise KeyFileError(
            f"cannot load the agent key {path}: wrong passphrase or not a PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"the agent key {path} is not an RSA key")
    return key


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SHA-256 of the public key's SubjectPublicKeyInfo DER, lowercase hex."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Parse a registered public key. Raises ValueError unless it is RSA >= 2048 bits."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits; at least {MIN_KEY_BITS} required")
    return key
