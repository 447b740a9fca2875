"""`SecretStore` on the local disk, encrypted with AES-256-GCM. Development only.

Layout: one JSON file per secret name in `directory` (mode 0700), holding every version:

    {"key_id": "<hex>", "versions": [{"version": "<32 hex>", "nonce": "<b64>",
                                       "ciphertext": "<b64>", "created": "<iso 8601>"}]}

The AES-GCM associated data is `name|version` (name lower-cased, as Key Vault names are
case-insensitive), so a ciphertext moved to another secret or version fails to decrypt.
`key_id` is an HMAC of a constant under the key: it tells "wrong key" apart from "file
tampered with" without revealing anything about the key.

Writes take an exclusive `fcntl.flock` on a per-name lock file, then replace the JSON
file atomically (temp file in the same directory + `os.replace`), so concurrent writers
in threads or processes never lose a version; readers need no lock. Lock files are kept
after a delete: unlinking a lock file another process is waiting on would let two
writers hold "the" lock at once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from functions.errors import ConfigurationError, GatewayError, SecretNotFoundError
from functions.stores.secrets.base import SecretListing, SecretValue
from functions.stores.secrets.keyvault import validate_secret_name, validate_secret_version

_KEY_ID_LABEL = b"connector-gateway local secret store key id v1"


class LocalSecretCorruptedError(GatewayError):
    """A secret file that cannot be read back: tampered with, truncated or not JSON."""

    code = "secret_store_corrupted"
    title = "Local secret store corrupted"


def generate_local_key() -> str:
    """Return a fresh random AES-256 key, standard base64 (for GATEWAY_LOCAL_SECRET_KEY)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_key(key_b64: str) -> bytes:
    # Accept standard or URL-safe base64, padded or not: people paste keys from many tools.
    text = "".join((key_b64 or "").split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            "GATEWAY_LOCAL_SECRET_KEY is not valid base64; generate a key with "
            "functions.stores.secrets.local.generate_local_key()"
        ) from None
    if len(key) != 32:
        raise ConfigurationError(
            f"GATEWAY_LOCAL_SECRET_KEY must be base64 of exactly 32 bytes (AES-256), "
            f"got {len(key)} bytes"
        )
    return key


class LocalSecretStore:
    """`SecretStore` in encrypted files under `directory`. Thread- and process-safe.

    Raises `ConfigurationError` for a malformed key, or when a file was written with a
    different key; `LocalSecretCorruptedError` when a file fails authentication or
    parsing; `SecretNotFoundError` for a missing name or version.
    """

    def __init__(self, directory: str, key_b64: str) -> None:
        key = _decode_key(key_b64)
        self._aead = AESGCM(key)
        self._key_id = hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        # makedirs honours the umask and leaves an existing directory alone; secrets
        # must not be listable by other users either way.
        if stat.S_IMODE(os.stat(self.directory).st_mode) != 0o700:
            os.chmod(self.directory, 0o700)

    # -- SecretStore ---------------------------------------------------------------------

    def set_secret(self, name: str, value: str, *, tags: dict[str, str] | None = None) -> str:
        """Append a new version of `name` and return its id."""
        validate_secret_name(name)
        if not isinstance(value, str):
            raise TypeError("secret value must be a str")
        version = secrets.token_hex(16)
        nonce = secrets.token_bytes(12)
        ciphertext = self._aead.encrypt(nonce, value.encode("utf-8"), _aad(name, version))
        entry: dict[str, Any] = {
            "version": version,
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            "created": datetime.now(UTC).isoformat(),
        }
        if tags:
            entry["tags"] = dict(tags)
        with self._locked(name):
            document = self._read(name) or {"key_id": self._key_id, "versions": []}
            self._check_key(name, document)
            document["versions"].append(entry)
            self._write(name, document)
        return version

    def get_secret(self, name: str, version: str | None = None) -> SecretValue:
        """Decrypt one version of `name` (the latest when `version` is None)."""
        validate_secret_name(name)
        if version is not None:
            validate_secret_version(version)
        document = self._read(name)
        if document is None or not document["versions"]:
            raise SecretNotFoundError(f"secret {name!r} not found")
        self._check_key(name, document)
        if version is None:
            entry = document["versions"][-1]
        else:
            matches = [e for e in document["versions"] if e.get("version") == version.lower()]
            if not matches:
                raise SecretNotFoundError(f"version {version!r} of secret {name!r} not found")
            entry = matches[0]
        found = str(entry.get("version", "?"))
        try:
            nonce = base64.b64decode(entry["nonce"], validate=True)
            ciphertext = base64.b64decode(entry["ciphertext"], validate=True)
            plaintext = self._aead.decrypt(nonce, ciphertext, _aad(name, found))
        except (InvalidTag, KeyError, TypeError, ValueError, binascii.Error):
            raise LocalSecretCorruptedError(
                f"version {found!r} of local secret {name!r} "
                "failed authentication: the file was modified"
            ) from None
        return SecretValue(name=name, version=found, value=plaintext.decode("utf-8"))

    def delete_secret(self, name: str) -> None:
        """Remove every version of `name`. Idempotent."""
        validate_secret_name(name)
        with self._locked(name), contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))

    def list_secrets(self) -> list[SecretListing]:
        """Names (lower-cased, as stored) and write times of every secret file."""
        found: list[SecretListing] = []
        for entry in os.scandir(self.directory):
            if not entry.name.endswith(".json") or entry.name.startswith(".tmp-"):
                continue
            name = entry.name[: -len(".json")]
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                written = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
                document = self._read(name)
                versions = document["versions"] if document else []
                tags = versions[-1].get("tags") if versions else None
                found.append(SecretListing(name, written, dict(tags or {})))
        return found

    # -- files ---------------------------------------------------------------------------

    def _path(self, name: str, suffix: str = ".json") -> str:
        # Names are validated ([0-9a-zA-Z-]), so they are safe as file names; lower-cased
        # because Key Vault treats names case-insensitively.
        return os.path.join(self.directory, name.lower() + suffix)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        fd = os.open(self._path(name, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # flock locks belong to the open file description, so this excludes other
            # threads of this process (each opens its own) as well as other processes.
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            with open(self._path(name), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        try:
            document: Any = json.loads(raw)
        except ValueError:
            raise LocalSecretCorruptedError(
                f"local secret file for {name!r} is not valid JSON"
            ) from None
        versions = document.get("versions") if isinstance(document, dict) else None
        if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions):
            raise LocalSecretCorruptedError(f"local secret file for {name!r} has no version list")
        return cast(dict[str, Any], document)

    def _check_key(self, name: str, document: dict[str, Any]) -> None:
        key_id = document.get("key_id")
        if key_id is not None and not hmac.compare_digest(str(key_id), self._key_id):
            raise ConfigurationError(
                f"local secret {name!r} was written with a different GATEWAY_LOCAL_SECRET_KEY; "
                f"restore that key or delete {self.directory} to start over"
            )

    def _write(self, name: str, document: dict[str, Any]) -> None:
        # mkstemp creates the file with mode 0600 in the target directory, so os.replace
        # is an atomic rename on the same file system.
        fd, temp_path = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(document, separators=(",", ":")).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_path, self._path(name))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)
            raise


def _aad(name: str, version: str) -> bytes:
    return f"{name.lower()}|{version}".encode()
